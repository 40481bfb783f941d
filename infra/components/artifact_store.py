"""S3 buckets of a stack: the artifact store (model files under models/<content digest>/) and,
in prod, the gateway's access logs. Both private, encrypted, versioned and TLS-only."""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_aws as aws

from infra.components.permissions import access_log_bucket_policy, tls_only_bucket_policy

# Old object versions are kept this long so a bad overwrite can be undone, then expire.
NONCURRENT_VERSION_DAYS = 30
# Load balancer access logs are kept this long (a quarter: long enough to look back at an
# incident or a traffic pattern, short enough not to grow without bound).
ACCESS_LOG_DAYS = 90
# Where the load balancer writes in the log bucket; ELB appends AWSLogs/<account>/… itself.
ACCESS_LOG_PREFIX = "alb"


def guarded_bucket(parent: pulumi.Resource, name: str, tags: dict[str, str], encryption: dict,
                   policy: Callable[[str], str], expiration: dict) -> tuple[aws.s3.Bucket, aws.s3.BucketPolicy]:
    """A bucket with public access blocked, default encryption, versioning, a lifecycle rule
    (`expiration`: its id and what expires) and a bucket policy (a function of its ARN): what
    every rule of the pack's S3 group asks."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=False, tags=tags, opts=child)
    public_access_block = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access-block",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": encryption, "bucket_key_enabled": True}], opts=child,
    )
    aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle",
        bucket=bucket.id,
        rules=[{"status": "Enabled", "filter": {"prefix": ""},
                "abort_incomplete_multipart_upload": {"days_after_initiation": 7}, **expiration}],
        opts=child,
    )
    bucket_policy = aws.s3.BucketPolicy(
        f"{name}-tls-only",
        bucket=bucket.id,
        policy=bucket.arn.apply(policy),
        # S3 rejects bucket policies while public access settings are still being applied.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[public_access_block]),
    )
    return bucket, bucket_policy


class ArtifactStore(pulumi.ComponentResource):
    """S3 bucket with public access blocked, KMS encryption, versioning and a TLS-only policy."""

    def __init__(self, name: str, tags: dict[str, str], kms_key_arn: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`kms_key_arn`: the stack's customer managed key; None, S3's AWS managed key (aws/s3)."""
        super().__init__("kiln:storage:ArtifactStore", name, None, opts)
        self.bucket, _ = guarded_bucket(
            self, name, tags,
            {"sse_algorithm": "aws:kms", **({"kms_master_key_id": kms_key_arn} if kms_key_arn else {})},
            tls_only_bucket_policy,
            {"id": "expire-old-versions", "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS}},
        )
        self.register_outputs({"bucketName": self.bucket.bucket})


class AccessLogStore(pulumi.ComponentResource):
    """The bucket the load balancer writes its access logs to, under ACCESS_LOG_PREFIX.

    Its own bucket, not a prefix of the artifact store's: ELB delivers access logs only to
    buckets encrypted with S3 managed keys (SSE-S3), and the artifact store uses KMS
    (docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html).
    """

    def __init__(self, name: str, region: str, tags: dict[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kiln:storage:AccessLogStore", name, None, opts)
        self.bucket, self.policy = guarded_bucket(
            self, name, tags, {"sse_algorithm": "AES256"},
            lambda arn: access_log_bucket_policy(arn, region, ACCESS_LOG_PREFIX),
            {"id": "expire-logs", "expiration": {"days": ACCESS_LOG_DAYS},
             "noncurrent_version_expiration": {"noncurrent_days": 1}},
        )
        self.register_outputs({"bucketName": self.bucket.bucket})

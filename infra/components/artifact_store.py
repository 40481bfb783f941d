"""The S3 artifact store: model files under models/<content digest>/, private and versioned."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.permissions import tls_only_bucket_policy

# Old object versions are kept this long so a bad overwrite can be undone, then expire.
NONCURRENT_VERSION_DAYS = 30


class ArtifactStore(pulumi.ComponentResource):
    """S3 bucket with public access blocked, KMS encryption, versioning and a TLS-only policy."""

    def __init__(self, name: str, tags: dict[str, str], kms_key_arn: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`kms_key_arn`: the stack's customer managed key; None, S3's AWS managed key (aws/s3)."""
        super().__init__("kiln:storage:ArtifactStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=False, tags=tags, opts=child)
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[{
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms", **({"kms_master_key_id": kms_key_arn} if kms_key_arn else {})},
                "bucket_key_enabled": True,
            }],
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=self.bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-old-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(tls_only_bucket_policy),
            # S3 rejects bucket policies while public access settings are still being applied.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )
        self.register_outputs({"bucketName": self.bucket.bucket})

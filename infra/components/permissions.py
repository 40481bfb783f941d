"""What each role and bucket Kiln creates may do, as IAM policy documents.

Pure functions of ARNs, so tests compare whole statements as data and a dropped action
is a failing test, not a first-deploy AccessDenied. Every role gets exactly what its
component needs and nothing else (least privilege).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from models.build_context import CONTEXT_PREFIX
from runtime.contract import METRIC_NAMESPACE
from runtime.secrets import parse_reference


def trust_policy(service: str) -> str:
    """Only `service` (e.g. ec2.amazonaws.com) may assume the role."""
    return _document([{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}])


def instance_policy(bucket_arn: str, repository_arn: str, log_group_arn: str, artifact_key: str, group_arn: str,
                    capture_prefix: str | None = None, secrets: Sequence[str] = (), kms_key_arn: str | None = None,
                    session_manager: bool = False) -> str:
    """Read this model's files, pull this stack's images, report the instance ready to its group,
    write its endpoint's inference-table rows when it captures, read exactly the secrets its
    served model references (`secrets`: references, placed in the log group's account and
    region); with `session_manager`, answer Session Manager; nothing else."""
    return _document(
        [
            {"Sid": "ReadModelArtifact", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket_arn}/{artifact_key}*"},
            {
                # The runtime lists the model's prefix to download it (ListObjectsV2 is
                # s3:ListBucket on the bucket); the condition keeps the listing to that prefix
                # (docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html).
                "Sid": "ListModelArtifact",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [f"{artifact_key}*"]}},
            },
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {
                "Sid": "PullImages",
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                "Resource": repository_arn,
            },
            _write_logs("WriteLogs", log_group_arn),
            in_flight_metric_statement(),
            {
                # The instance completes its own launch lifecycle action once its runtime
                # answers /ping (infra/plan/scaling.py, LAUNCH_HOOK_NAME).
                "Sid": "CompleteOwnLaunch",
                "Effect": "Allow",
                "Action": ["autoscaling:CompleteLifecycleAction"],
                "Resource": group_arn,
            },
            *([capture_statement(bucket_arn, capture_prefix)] if capture_prefix else []),
            *secret_statements(log_group_arn, secrets, kms_key_arn, writes_objects=capture_prefix is not None),
            *([session_manager_statement()] if session_manager else []),
        ]
    )


def capture_statement(bucket_arn: str, capture_prefix: str) -> dict[str, Any]:
    """Put objects under its endpoint's inference-table prefix only: no read, no list, no
    delete, and no other endpoint's rows. With the bucket's default AWS managed key aws/s3, whose
    key policy lets every principal of the account use it through S3, no kms: grant is needed
    (docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html); with the stack's
    customer key, secret_statements grants kms:GenerateDataKey through S3."""
    return {"Sid": "WriteInferenceTable", "Effect": "Allow", "Action": ["s3:PutObject"],
            "Resource": f"{bucket_arn}/{capture_prefix}*"}


def secret_statements(same_account_arn: str, secrets: Sequence[str], kms_key_arn: str | None,
                      writes_objects: bool = False) -> list[dict[str, Any]]:
    """Read these secrets and no other: GetSecretValue and GetParameter on exactly their ARNs
    (docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html,
    docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html).

    Values encrypted with an AWS managed key (aws/secretsmanager, aws/ssm, aws/s3) need no KMS
    grant; with the stack's customer managed key, kms:Decrypt on it, only through S3 (the model's
    files) and the services holding the secrets (the kms:ViaService condition,
    docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service),
    and kms:GenerateDataKey when it `writes_objects` (inference-table rows) under that key.
    """
    _, partition, _, region, account, *_ = same_account_arn.split(":")
    references = [parse_reference(secret) for secret in secrets]
    statements: list[dict[str, Any]] = []
    for sid, service, action in (("ReadOwnSecrets", "secretsmanager", "secretsmanager:GetSecretValue"),
                                 ("ReadOwnParameters", "ssm", "ssm:GetParameter")):
        arns = sorted({ref.iam_resource(partition, region, account) for ref in references if ref.service == service})
        if arns:
            statements.append({"Sid": sid, "Effect": "Allow", "Action": [action], "Resource": arns})
    if kms_key_arn:
        services = ["s3", *sorted({ref.service for ref in references})]
        statements.append({
            "Sid": "DecryptWithStackKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", *(["kms:GenerateDataKey"] if writes_objects else [])],
            "Resource": kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": [f"{service}.{region}.amazonaws.com" for service in services]}},
        })
    return statements


def session_manager_statement() -> dict[str, Any]:
    """What the SSM agent needs for Session Manager shells, instead of the managed policy
    AmazonSSMManagedInstanceCore, which also allows ssm:GetParameter(s) on every parameter of
    the account and so would let an instance read SecureStrings that are not its own
    (docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html).
    These actions take no resource ARN."""
    return {
        "Sid": "SessionManager",
        "Effect": "Allow",
        "Action": [
            "ssm:UpdateInstanceInformation",
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
        ],
        "Resource": "*",
    }


def group_arn(same_account_arn: str, group_name: str) -> str:
    """The ARN of the autoscaling group `group_name` in the partition, region and account of
    `same_account_arn` (any ARN of the same stack).

    The group id in the ARN is '*': AWS assigns it when the group is created, and the policy
    naming the group must exist before then, since the group's first instances use it
    (arn:${Partition}:autoscaling:${Region}:${Account}:autoScalingGroup:${GroupId}:autoScalingGroupName/${GroupFriendlyName},
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html).
    """
    _, partition, _, region, account, *_ = same_account_arn.split(":")
    return f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{group_name}"


def in_flight_metric_statement() -> dict[str, Any]:
    """The instance role's only CloudWatch right: put metrics in Kiln's namespace.

    PutMetricData has no resource ARN to scope it by, so the namespace condition is the
    boundary (docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
    """
    return {
        "Sid": "PublishInFlightMetric",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
    }


def ready_parameter_arn(same_account_arn: str, parameter_name: str) -> str:
    """The ARN of the SSM parameter `parameter_name` (a path starting with '/') in the partition,
    region and account of `same_account_arn`
    (arn:${Partition}:ssm:${Region}:${Account}:parameter/${ParameterNameWithoutLeadingSlash},
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html)."""
    _, partition, _, region, account, *_ = same_account_arn.split(":")
    return f"arn:{partition}:ssm:{region}:{account}:parameter/{parameter_name.lstrip('/')}"


def activator_policy(group_arn: str, rule_arn: str, log_group_arn: str, ready_parameter_arn: str) -> str:
    """Scale its own group, rewrite its own endpoint's listener rule, find ready instances, share
    readiness through its own parameter, write its logs.

    ModifyRule takes the listener-rule ARN as its resource, so the grant names the one rule
    that routes to this served model, not every rule of the shared listener; DescribeRules
    takes no resource type, so it stays "*" below
    (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html).
    """
    return _document(
        [
            {"Sid": "ScaleOwnGroup", "Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"], "Resource": group_arn},
            {"Sid": "RouteOwnRule", "Effect": "Allow", "Action": ["elasticloadbalancing:ModifyRule"], "Resource": rule_arn},
            {
                # The readiness signal the held requests of one cold start share (handler.py).
                "Sid": "ShareReadiness",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"],
                "Resource": ready_parameter_arn,
            },
            {
                # Describe calls cannot be scoped to a resource (IAM service authorization reference).
                "Sid": "FindReadyInstances",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "elasticloadbalancing:DescribeTargetHealth",
                    "elasticloadbalancing:DescribeRules",
                    "ec2:DescribeInstances",
                ],
                "Resource": "*",
            },
            {
                # A VPC Lambda manages its own network interfaces; these actions take no resource ARN.
                "Sid": "VpcNetworkInterfaces",
                "Effect": "Allow",
                "Action": [
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "Resource": "*",
            },
            _write_logs("WriteLogs", log_group_arn),
        ]
    )


def build_policy(bucket_arn: str, repository_arn: str, log_group_arn: str) -> str:
    """Read build contexts, push to this stack's repository, write build logs; nothing else."""
    return _document(
        [
            {
                "Sid": "ReadBuildContexts",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": f"{bucket_arn}/{CONTEXT_PREFIX}*",
            },
            {
                # CodeBuild checks the bucket of an S3 source (the context, given as a source
                # override) before it reads the object; AWS's service-role policy grants these
                # on the bucket (docs.aws.amazon.com/codebuild/latest/userguide/setting-up-service-role.html).
                "Sid": "ContextBucketIdentity",
                "Effect": "Allow",
                "Action": ["s3:GetBucketAcl", "s3:GetBucketLocation"],
                "Resource": bucket_arn,
            },
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {
                "Sid": "PushImages",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:CompleteLayerUpload",
                    "ecr:DescribeImages",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:InitiateLayerUpload",
                    "ecr:PutImage",
                    "ecr:UploadLayerPart",
                ],
                "Resource": repository_arn,
            },
            _write_logs("WriteBuildLogs", log_group_arn),
        ]
    )


def tls_only_bucket_policy(bucket_arn: str) -> str:
    """Refuse every request to the bucket that does not arrive over TLS."""
    return _document([_deny_insecure_transport(bucket_arn)])


# The account Elastic Load Balancing writes access logs from, in each region opened before
# August 2022; regions opened since take the service principal LOG_DELIVERY_PRINCIPAL instead
# (docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html#attach-bucket-policy).
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580", "ap-south-1": "718504428378", "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887", "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864", "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-south-1": "635631232127",
    "eu-west-3": "009996457667", "eu-north-1": "897822967062", "me-south-1": "076674570225",
    "sa-east-1": "507241528517", "us-gov-west-1": "048591011584", "us-gov-east-1": "190560391635",
}
LOG_DELIVERY_PRINCIPAL = "logdelivery.elasticloadbalancing.amazonaws.com"


def access_log_bucket_policy(bucket_arn: str, region: str, prefix: str) -> str:
    """TLS only, and the region's load balancer log delivery may put objects under `prefix`."""
    account = ELB_LOG_ACCOUNTS.get(region)
    principal = {"AWS": f"arn:aws:iam::{account}:root"} if account else {"Service": LOG_DELIVERY_PRINCIPAL}
    return _document([
        _deny_insecure_transport(bucket_arn),
        {"Sid": "LoadBalancerAccessLogs", "Effect": "Allow", "Principal": principal, "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/{prefix}/AWSLogs/*"},
    ])


def _deny_insecure_transport(bucket_arn: str) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _write_logs(sid: str, log_group_arn: str) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{log_group_arn}:*",
    }


def _document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})

"""Every IAM document Kiln writes, compared whole: a dropped action, a widened resource or a
lost condition is a failing test here, not an AccessDenied (or an over-broad role) on AWS."""

from __future__ import annotations

import json

from infra.components.permissions import (
    access_log_bucket_policy,
    activator_policy,
    build_policy,
    group_arn,
    instance_policy,
    ready_parameter_arn,
    tls_only_bucket_policy,
    trust_policy,
)

BUCKET = "arn:aws:s3:::kiln-artifacts-1a2b3c4"
REPOSITORY = "arn:aws:ecr:us-east-1:123456789012:repository/kiln-images"
LOG_GROUP = "arn:aws:logs:us-east-1:123456789012:log-group:/kiln/dev/fraud-scorer"
PARAMETER = "arn:aws:ssm:us-east-1:123456789012:parameter/kiln/activator/kiln-dev-fraud"
GROUP = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:uuid-1:autoScalingGroupName/kiln-dev-fraud"
RULE = ("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/kiln-dev/50dc6c495c0c9188/"
        "f2f7dc8efc522ab2/9683b2d02a6cabee")


def test_only_the_named_service_may_assume_a_role() -> None:
    assert json.loads(trust_policy("ec2.amazonaws.com")) == {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }


def test_instance_reads_its_model_pulls_images_writes_logs_and_publishes_only_kilns_metric() -> None:
    document = json.loads(instance_policy(BUCKET, REPOSITORY, LOG_GROUP, artifact_key="models/ab12/", group_arn=GROUP))

    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadModelArtifact", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": "arn:aws:s3:::kiln-artifacts-1a2b3c4/models/ab12/*"},
            {"Sid": "ListModelArtifact", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": BUCKET,
             "Condition": {"StringLike": {"s3:prefix": ["models/ab12/*"]}}},
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {"Sid": "PullImages", "Effect": "Allow",
             "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
             "Resource": REPOSITORY},
            {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": f"{LOG_GROUP}:*"},
            {"Sid": "PublishInFlightMetric", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
             "Condition": {"StringEquals": {"cloudwatch:namespace": "Kiln/Serving"}}},
            {"Sid": "CompleteOwnLaunch", "Effect": "Allow", "Action": ["autoscaling:CompleteLifecycleAction"],
             "Resource": GROUP},
        ],
    }


def test_a_group_arn_is_named_before_aws_assigns_its_id() -> None:
    assert group_arn(LOG_GROUP, "kiln-dev-fraud-scorer-champion") == (
        "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/kiln-dev-fraud-scorer-champion"
    )
    assert group_arn("arn:aws-cn:logs:cn-north-1:210987654321:log-group:/kiln/x", "g") == (
        "arn:aws-cn:autoscaling:cn-north-1:210987654321:autoScalingGroup:*:autoScalingGroupName/g"
    )


def test_the_readiness_parameter_arn_is_in_the_stacks_partition_region_and_account() -> None:
    assert ready_parameter_arn(LOG_GROUP, "/kiln/activator/kiln-dev-fraud") == PARAMETER
    assert ready_parameter_arn("arn:aws-cn:logs:cn-north-1:210987654321:log-group:/kiln/x", "/kiln/activator/g") == (
        "arn:aws-cn:ssm:cn-north-1:210987654321:parameter/kiln/activator/g"
    )


def test_activator_scales_only_its_group_and_rewrites_only_its_endpoints_rule() -> None:
    document = json.loads(activator_policy(GROUP, RULE, LOG_GROUP, PARAMETER))

    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ScaleOwnGroup", "Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"], "Resource": GROUP},
            # The one rule, not listener-rule/app/<lb>/<id>/<listener-id>/* (every endpoint's rule).
            {"Sid": "RouteOwnRule", "Effect": "Allow", "Action": ["elasticloadbalancing:ModifyRule"], "Resource": RULE},
            # Its own readiness parameter only: the held requests of one cold start share it.
            {"Sid": "ShareReadiness", "Effect": "Allow",
             "Action": ["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter"], "Resource": PARAMETER},
            {"Sid": "FindReadyInstances", "Effect": "Allow",
             "Action": ["autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth",
                        "elasticloadbalancing:DescribeRules", "ec2:DescribeInstances"],
             "Resource": "*"},
            {"Sid": "VpcNetworkInterfaces", "Effect": "Allow",
             "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
             "Resource": "*"},
            {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": f"{LOG_GROUP}:*"},
        ],
    }


def test_build_reads_only_build_contexts_pushes_to_its_repository_and_writes_logs() -> None:
    document = json.loads(build_policy(BUCKET, REPOSITORY, LOG_GROUP))

    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadBuildContexts", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "Resource": "arn:aws:s3:::kiln-artifacts-1a2b3c4/build-contexts/*"},
            {"Sid": "ContextBucketIdentity", "Effect": "Allow", "Action": ["s3:GetBucketAcl", "s3:GetBucketLocation"],
             "Resource": BUCKET},
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {"Sid": "PushImages", "Effect": "Allow",
             "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
                        "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload",
                        "ecr:PutImage", "ecr:UploadLayerPart"],
             "Resource": REPOSITORY},
            {"Sid": "WriteBuildLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": f"{LOG_GROUP}:*"},
        ],
    }


def test_artifact_bucket_refuses_every_request_without_tls() -> None:
    assert json.loads(tls_only_bucket_policy(BUCKET)) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                # The bucket itself (ListBucket, policy calls) and every object in it.
                "Resource": ["arn:aws:s3:::kiln-artifacts-1a2b3c4", "arn:aws:s3:::kiln-artifacts-1a2b3c4/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def test_access_logs_are_delivered_by_the_regions_elb_account_or_its_service_principal() -> None:
    old = json.loads(access_log_bucket_policy("arn:aws:s3:::logs", "eu-west-1", "alb"))["Statement"]
    new = json.loads(access_log_bucket_policy("arn:aws:s3:::logs", "ap-southeast-5", "alb"))["Statement"]

    assert old[1]["Principal"] == {"AWS": "arn:aws:iam::156460612806:root"}
    assert new[1]["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert old[0]["Sid"] == new[0]["Sid"] == "DenyInsecureTransport"

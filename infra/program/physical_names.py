"""Every physical name the program gives AWS, checked against what the AWS API accepts,
before anything is created.

A physical name is either given (a `name` or `bucket` input), made from a `name_prefix`,
or made by pulumi-aws's autonaming: the logical name, '-', and 7 random lowercase hex
characters, with nothing cleaned or cut. A logical name AWS cannot take (a '.' in a Lambda
function name, a role name past 64 characters) would fail in the middle of a `pulumi up`;
here it fails as the resource is declared, so `pulumi preview` (which `pulumi up` runs
first), `kiln plan` and `kiln check` stop before anything exists, naming the resource, the
value, the limit and where the limit is written down.

Limits are read from botocore's service models (the min, max and pattern the AWS SDKs
validate with) where botocore has them, and otherwise from the AWS API reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session
import pulumi

from infra.plan.config import ConfigError

# pulumi-aws autonaming: `<logical name>-<7 random hex>` (its default autonaming config,
# https://www.pulumi.com/docs/iac/concepts/resources/names/#autonaming). The sample has
# the suffix's length and characters.
AUTONAME_SUFFIX = "-" + "0" * 7
# Terraform's `name_prefix`: the prefix, then a 26-character unique suffix.
NAME_PREFIX_SUFFIX_LENGTH = 26


@dataclass(frozen=True)
class NameLimit:
    what: str
    min_length: int
    max_length: int
    pattern: str
    source: str
    field: str = "name"


def _botocore(what: str, service: str, operation: str, member: str, field: str = "name") -> NameLimit:
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    metadata = shape.members[member].metadata
    # Smithy patterns spell characters past U+FFFF as UTF-16 surrogate pairs; Python's re
    # reads code points.
    pattern = metadata.get("pattern", ".+").replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
    return NameLimit(what, metadata.get("min", 1), metadata["max"], pattern, f"botocore {service} {operation}.{member}",
                     field)


@cache
def limits() -> dict[str, NameLimit]:
    """Resource type → how AWS limits its name (botocore's models load once, on first use).
    Lambda's botocore pattern also admits ARNs of up to 140 characters; a function's own name
    is at most 64 of [a-zA-Z0-9-_]."""
    elb = "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference"
    ec2 = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference"
    return {
        "aws:lambda/function:Function": NameLimit(
            "Lambda function name", 1, 64, r"[a-zA-Z0-9_-]+",
            "https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html"),
        "aws:lambda/permission:Permission": _botocore(
            "Lambda permission statement id", "lambda", "AddPermission", "StatementId", field="statement_id"),
        "aws:iam/role:Role": _botocore("IAM role name", "iam", "CreateRole", "RoleName"),
        "aws:iam/rolePolicy:RolePolicy": _botocore("IAM inline policy name", "iam", "PutRolePolicy", "PolicyName"),
        "aws:iam/instanceProfile:InstanceProfile": _botocore(
            "instance profile name", "iam", "CreateInstanceProfile", "InstanceProfileName"),
        "aws:ec2/launchTemplate:LaunchTemplate": NameLimit(
            "launch template name", 3, 128, r"[a-zA-Z0-9().\-/_]+", f"{ec2}/API_CreateLaunchTemplate.html"),
        "aws:ec2/securityGroup:SecurityGroup": NameLimit(
            "security group name", 1, 255, r"(?!sg-)[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]+",
            f"{ec2}/API_CreateSecurityGroup.html"),
        "aws:lb/loadBalancer:LoadBalancer": NameLimit(
            "load balancer name", 1, 32, r"(?!internal-)[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?",
            f"{elb}/API_CreateLoadBalancer.html"),
        "aws:lb/targetGroup:TargetGroup": NameLimit(
            "target group name", 1, 32, r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?", f"{elb}/API_CreateTargetGroup.html"),
        "aws:cloudwatch/logGroup:LogGroup": _botocore("log group name", "logs", "CreateLogGroup", "logGroupName"),
        "aws:cloudwatch/metricAlarm:MetricAlarm": _botocore("alarm name", "cloudwatch", "PutMetricAlarm", "AlarmName"),
        "aws:autoscaling/group:Group": _botocore(
            "Auto Scaling group name", "autoscaling", "CreateAutoScalingGroup", "AutoScalingGroupName"),
        "aws:autoscaling/policy:Policy": _botocore("scaling policy name", "autoscaling", "PutScalingPolicy", "PolicyName"),
        "aws:ecr/repository:Repository": _botocore("ECR repository name", "ecr", "CreateRepository", "repositoryName"),
        "aws:codebuild/project:Project": _botocore("CodeBuild project name", "codebuild", "CreateProject", "name"),
        "aws:s3/bucket:Bucket": NameLimit(
            "S3 bucket name", 3, 63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]",
            "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html", field="bucket"),
    }


def name_problem(type_: str, logical_name: str, props: Mapping[str, Any]) -> str | None:
    """What AWS would refuse about this resource's physical name, or None. An Output (a name
    known only once other resources exist) is left to AWS."""
    limit = limits().get(type_)
    if limit is None:
        return None
    given, prefix = props.get(limit.field), props.get(f"{limit.field}_prefix")
    if isinstance(given, str):
        name, how, extra = given, "", 0
    elif given is None and isinstance(prefix, str):
        name, how, extra = prefix, f" (the name_prefix, before its {NAME_PREFIX_SUFFIX_LENGTH} unique characters)", \
            NAME_PREFIX_SUFFIX_LENGTH
    elif given is None and prefix is None:
        name, how, extra = logical_name + AUTONAME_SUFFIX, " (pulumi-aws autonames it <logical name>-<7 random characters>)", 0
    else:
        return None
    length = len(name) + extra
    if length > limit.max_length or length < limit.min_length:
        return (f"{limit.what} {name!r}{how} is {length} characters; AWS takes {limit.min_length}-{limit.max_length} "
                f"({limit.source})")
    if not re.fullmatch(limit.pattern, name):
        return f"{limit.what} {name!r}{how} does not match {limit.pattern} ({limit.source})"
    return None


class PhysicalNameError(ConfigError, pulumi.RunError):
    """A name AWS would refuse; the Pulumi language host reports it as its message alone
    (RunError), `kiln plan` as an invalid stack config (exit 2)."""


def refuse_names_aws_rejects(source: str) -> Callable[[pulumi.ResourceTransformationArgs], None]:
    """A stack transformation (pulumi.runtime.register_stack_transformation) that raises
    PhysicalNameError as a resource with such a name is declared."""

    def check(args: pulumi.ResourceTransformationArgs) -> None:
        problem = name_problem(args.type_, args.name, args.props)
        if problem:
            raise PhysicalNameError(source, [
                f"resource {args.name!r} ({args.type_}): {problem}; the name comes from the endpoint and served model "
                "names, so shorten those or drop the character"
            ])

    return check

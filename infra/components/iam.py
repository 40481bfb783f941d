"""IAM roles the way every Kiln component wants them: one service may assume the role, and
one inline policy grants exactly what that component needs."""

from __future__ import annotations

from typing import NamedTuple

import pulumi
import pulumi_aws as aws

from infra.components.permissions import trust_policy


class ServiceRole(NamedTuple):
    role: aws.iam.Role
    # What a resource that acts with the role as it is created (a Lambda in a VPC creates
    # its network interfaces, an instance fetches its model at boot, a build starts) must
    # depend on: the role alone can exist before its permissions do.
    policy: aws.iam.RolePolicy


def service_role(
    role_name: str,
    policy_name: str,
    service: str,
    policy: pulumi.Input[str],
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> ServiceRole:
    """A role only `service` (e.g. ec2.amazonaws.com) can assume, with its least-privilege policy."""
    role = aws.iam.Role(role_name, assume_role_policy=trust_policy(service), tags=tags, opts=opts)
    return ServiceRole(role, aws.iam.RolePolicy(policy_name, role=role.id, policy=policy, opts=opts))

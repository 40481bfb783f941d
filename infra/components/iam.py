"""IAM roles the way every Kiln component wants them: one service may assume the role, and
one inline policy grants exactly what that component needs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.permissions import trust_policy


def service_role(
    role_name: str,
    policy_name: str,
    service: str,
    policy: pulumi.Input[str],
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.iam.Role:
    """A role only `service` (e.g. ec2.amazonaws.com) can assume, with its least-privilege policy."""
    role = aws.iam.Role(role_name, assume_role_policy=trust_policy(service), tags=tags, opts=opts)
    aws.iam.RolePolicy(policy_name, role=role.id, policy=policy, opts=opts)
    return role

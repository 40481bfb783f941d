"""Security group rules the way Kiln writes them: one TCP port, one peer, one rule resource.

Separate rule resources (not inline rules) so the gateway and the activator can each add
their own rule to the instances' group without rewriting the other's.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def allow_tcp(
    rule: type[aws.vpc.SecurityGroupIngressRule] | type[aws.vpc.SecurityGroupEgressRule],
    resource_name: str,
    group: aws.ec2.SecurityGroup,
    port: int,
    opts: pulumi.ResourceOptions,
    **peer: pulumi.Input[str],
) -> None:
    """`rule` on `group` for TCP `port` with one peer (cidr_ipv4, cidr_ipv6 or referenced_security_group_id)."""
    rule(resource_name, security_group_id=group.id, ip_protocol="tcp", from_port=port, to_port=port, **peer, opts=opts)

"""Network: instances take traffic only from the gateway; SSH is open to no one."""

from __future__ import annotations

from collections.abc import Sequence

from policies.rules.resource_types import (
    INGRESS_RULE,
    LAMBDA_FUNCTION,
    LAUNCH_TEMPLATE,
    LOAD_BALANCER,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
)
from policies.rules.rule import MANDATORY, Config, Props, Resource, ResourceRule, StackRule, Violation, items, of_type

SSH_PORT = 22
# EC2 takes a protocol by name or by IANA number, in any case ("TCP", "tcp", "6", 6); "-1" (or
# pulumi-aws's "all") is every protocol, ports included
# (docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpPermission.html).
ALL_PROTOCOLS = ("-1", "all")
TCP = ("tcp", "6")


def _port(value: object) -> int | None:
    """A port as AWS reads it: a number (the engine sends 22.0) or its string; None (absent,
    unreadable, or -1) means every port."""
    if value is None or isinstance(value, bool):
        return None
    try:
        port = int(float(str(value).strip()))
    except ValueError:
        return None
    return None if port < 0 else port


def _covers_ssh(protocol: object, from_port: object, to_port: object) -> bool:
    spelled = str(protocol).strip().lower()
    if spelled in ALL_PROTOCOLS:
        return True
    if spelled not in TCP:
        return False
    low, high = _port(from_port), _port(to_port)
    if low is None:
        return True
    return low <= SSH_PORT <= (high if high is not None else low)


def _sources(props: Props, *keys: str) -> list[str]:
    found: list[str] = []
    for key in keys:
        value = props.get(key)
        if isinstance(value, str):
            found.append(value)
        else:
            found.extend(str(v) for v in items(value))
    return [source for source in found if source]


def no_ssh_ingress_rule(props: Props, config: Config) -> list[str]:
    if not _covers_ssh(props.get("ipProtocol"), props.get("fromPort"), props.get("toPort")):
        return []
    source = _sources(props, "cidrIpv4", "cidrIpv6", "prefixListId", "referencedSecurityGroupId") or ["anywhere"]
    return [(f"ingress {props.get('ipProtocol')} {props.get('fromPort')}-{props.get('toPort')} from {', '.join(source)} "
            "opens SSH; remove it and use Session Manager (the instance role already allows it)")]


def no_ssh_security_group_rule(props: Props, config: Config) -> list[str]:
    if props.get("type") != "ingress":
        return []
    if not _covers_ssh(props.get("protocol"), props.get("fromPort"), props.get("toPort")):
        return []
    return ["security group rule opens SSH (port 22); remove it and use Session Manager"]


def no_ssh_inline(props: Props, config: Config) -> list[str]:
    return [
        f"inline ingress #{index} opens SSH (port 22); remove it and use Session Manager"
        for index, rule in enumerate(items(props.get("ingress")))
        if _covers_ssh(rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"))
    ]


def instance_ingress_from_gateway(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """Instance security groups are the launch templates' groups; the gateway's are the ALB's,
    plus the scale-to-zero activators' (functions behind the same ALB that forward held requests)."""
    instance_groups = {urn for lt in of_type(resources, LAUNCH_TEMPLATE) for urn in lt.depends_through("vpcSecurityGroupIds")}
    gateway_groups = {urn for lb in of_type(resources, LOAD_BALANCER) for urn in lb.depends_through("securityGroups")}
    gateway_groups |= {urn for fn in of_type(resources, LAMBDA_FUNCTION) for urn in fn.depends_through("vpcConfig")}
    violations = []
    for rule in of_type(resources, INGRESS_RULE):
        if not instance_groups.intersection(rule.depends_through("securityGroupId")):
            continue
        cidrs = _sources(rule.props, "cidrIpv4", "cidrIpv6", "prefixListId")
        if cidrs:
            violations.append(Violation(
                f"instances accept traffic from {', '.join(cidrs)}; allow only the gateway's security group "
                "(referenced_security_group_id) so nothing bypasses the load balancer",
                rule.urn,
            ))
        elif not gateway_groups.intersection(rule.depends_through("referencedSecurityGroupId")):
            violations.append(Violation(
                "instances accept traffic from a security group that is neither the gateway's nor an activator's; "
                "reference the load balancer's security group instead",
                rule.urn,
            ))
    for group in of_type(resources, SECURITY_GROUP):
        if group.urn in instance_groups and items(group.props.get("ingress")):
            violations.append(Violation(
                "the instance security group has inline ingress rules; keep instance ingress to one "
                "SecurityGroupIngressRule from the gateway's security group",
                group.urn,
            ))
    return violations


NO_SSH = ResourceRule(
    id="no-ssh-ingress",
    description="No security group opens SSH (port 22), from anywhere.",
    levels=MANDATORY,
    checks={INGRESS_RULE: no_ssh_ingress_rule, SECURITY_GROUP_RULE: no_ssh_security_group_rule, SECURITY_GROUP: no_ssh_inline},
    fix="Delete the SSH rule; reach instances with AWS Systems Manager Session Manager.",
)

INSTANCE_INGRESS = StackRule(
    id="instance-ingress-from-gateway-only",
    description="Serving instances accept traffic only from the gateway's security group, never from a CIDR.",
    levels=MANDATORY,
    resource_types=(LAUNCH_TEMPLATE, LOAD_BALANCER, INGRESS_RULE, SECURITY_GROUP),
    run=instance_ingress_from_gateway,
    fix="Replace CIDR ingress on the instance security group with referenced_security_group_id = the ALB's group.",
)

RULES = [NO_SSH, INSTANCE_INGRESS]

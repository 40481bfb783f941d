"""Limits a platform team sets: how long an image build may run, what a stack may cost per hour."""

from __future__ import annotations

from collections.abc import Sequence

from infra.plan.catalog import (
    DEFAULT_BUILD_TIMEOUT_MINUTES,
    INSTANCES,
    INTERFACE_ENDPOINT_AZ_HOURLY_USD,
    gp3_hourly_usd,
)
from policies.rules.resource_types import AUTOSCALING_GROUP, CODEBUILD_PROJECT, LAUNCH_TEMPLATE, VPC_ENDPOINT
from policies.rules.rule import MANDATORY, Config, Props, Resource, ResourceRule, StackRule, Violation, of_type

# CodeBuild's own default, and Databricks' deployment window.
DEFAULT_MAX_HOURLY_COST_USD = 100.0


def build_within_limit(props: Props, config: Config) -> list[str]:
    limit = config.get("maxBuildTimeoutMinutes", DEFAULT_BUILD_TIMEOUT_MINUTES)
    timeout = props.get("buildTimeout", DEFAULT_BUILD_TIMEOUT_MINUTES)
    if timeout <= limit:
        return []
    return [(f"buildTimeout is {timeout:g} min, above the {limit:g} min limit; lower kiln:build.timeoutMinutes "
            "(a build that long usually means an unpinned or oversized dependency set)")]


def _interface_endpoints_cost(resources: Sequence[Resource]) -> tuple[float, list[str]]:
    """Interface VPC endpoints: each billed per hour in every Availability Zone (subnet) it is in."""
    zones = [len(endpoint.props.get("subnetIds") or []) for endpoint in of_type(resources, VPC_ENDPOINT)
             if endpoint.props.get("vpcEndpointType") == "Interface"]
    if not zones:
        return 0.0, []
    cost = sum(zones) * INTERFACE_ENDPOINT_AZ_HOURLY_USD
    return cost, [f"{len(zones)} interface VPC endpoints in {sum(zones)} AZ-hours × ${INTERFACE_ENDPOINT_AZ_HOURLY_USD:g}"]


def _warm_pool_cost(group: Resource, template: Resource) -> tuple[float, list[str]]:
    """At max scale a warm pool still holds minSize instances (AWS keeps max - desired, never fewer
    than minSize), billed for their root volumes."""
    pool = group.props.get("warmPool")
    if not isinstance(pool, dict):
        return 0.0, []
    stopped = pool.get("minSize") or 0
    volumes = [mapping.get("ebs") or {} for mapping in template.props.get("blockDeviceMappings") or []]
    hourly = sum(gp3_hourly_usd(ebs.get("volumeSize") or 0, ebs.get("throughput")) for ebs in volumes)
    if not stopped or not hourly:
        return 0.0, []
    return stopped * hourly, [f"{group.name} warm pool {stopped:g} stopped × volumes ${hourly:.4f}"]


def cost_within_budget(resources: Sequence[Resource], config: Config) -> list[Violation]:
    """What the stack costs at max scale: each group's maxSize × its instance type's hourly price
    and the volumes of the warm pool AWS keeps then, plus the interface VPC endpoints it keeps
    running.

    Priced from the resources actually declared (not the plan), so a hand-edited group counts too.
    """
    budget = config.get("maxHourlyCostUsd", DEFAULT_MAX_HOURLY_COST_USD)
    templates = {lt.urn: lt for lt in of_type(resources, LAUNCH_TEMPLATE)}
    total, parts, violations = 0.0, [], []
    for group in of_type(resources, AUTOSCALING_GROUP):
        template = next((templates[urn] for urn in group.depends_through("launchTemplate") if urn in templates), None)
        instance_type = template.props.get("instanceType") if template else None
        instance = INSTANCES.get(instance_type) if isinstance(instance_type, str) else None
        if instance is None:
            violations.append(Violation(
                f"cannot price this group: instance type {instance_type!r} has no price in infra/plan/catalog.py; "
                "use a catalogued instance type or add it there",
                group.urn,
            ))
            continue
        cost = group.props.get("maxSize", 0) * instance.hourly_usd
        total += cost
        parts.append(f"{group.name} {group.props.get('maxSize', 0):g} × {instance.name} ${instance.hourly_usd:g}")
        pool_cost, pool_parts = _warm_pool_cost(group, template)
        total += pool_cost
        parts += pool_parts
    endpoints_cost, endpoint_parts = _interface_endpoints_cost(resources)
    total += endpoints_cost
    parts += endpoint_parts
    if total > budget:
        violations.append(Violation(
            f"max hourly cost ${total:,.2f} is over the ${budget:,.2f} budget ({'; '.join(parts)}); lower "
            "maxProvisionedConcurrency / workload sizes or raise this policy's maxHourlyCostUsd",
        ))
    return violations


BUILD_TIMEOUT = ResourceRule(
    id="build-timeout-limit",
    description="Image builds are bounded by the configured build timeout.",
    levels=MANDATORY,
    checks={CODEBUILD_PROJECT: build_within_limit},
    fix="Lower kiln:build.timeoutMinutes or raise this policy's maxBuildTimeoutMinutes.",
    config={"maxBuildTimeoutMinutes": {"type": "integer", "minimum": 5, "maximum": 2160,
                                       "default": DEFAULT_BUILD_TIMEOUT_MINUTES}},
)

COST_BUDGET = StackRule(
    id="hourly-cost-budget",
    description="The stack's cost at max scale stays under the hourly budget.",
    levels=MANDATORY,
    resource_types=(AUTOSCALING_GROUP, LAUNCH_TEMPLATE, VPC_ENDPOINT),
    run=cost_within_budget,
    fix="Lower max concurrency or raise maxHourlyCostUsd in the policy pack config.",
    config={"maxHourlyCostUsd": {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_MAX_HOURLY_COST_USD,
                                 "description": "USD per hour for all served models at max scale and the stack's "
                                                "interface VPC endpoints"}},
)

RULES = [BUILD_TIMEOUT, COST_BUDGET]

"""Scaling and rollout: no scale to zero in prod, safe instance refresh, spread and headroom."""

from __future__ import annotations

from policies.rules.resource_types import AUTOSCALING_GROUP, SERVED_MODEL
from policies.rules.rule import ADVISORY, MANDATORY_IN_PROD, Config, Props, ResourceRule, items, prop, truthy


def keeps_an_instance(props: Props, config: Config) -> list[str]:
    """Cold starts take 10-20 s on a warm pool and minutes from nothing, with no latency SLA."""
    name = f"{props.get('endpoint')}/{props.get('servedModelName')}"
    if truthy(props.get("scaleToZeroEnabled")):
        return [(f"{name} scales to zero: the first request after idle waits for an instance to boot (minutes); "
                "set scaleToZeroEnabled: false")]
    if props.get("minInstances") == 0:
        return [f"{name} has minInstances 0; give it a minimum provisioned concurrency of at least 1"]
    return []


def refresh_rolls_back(props: Props, config: Config) -> list[str]:
    """A refresh that kills old instances first, or never rolls back, turns one bad model into an outage."""
    if prop(props, "instanceRefresh") is None:
        return [("no instanceRefresh: a launch template change only reaches new instances and never rolls back; "
                "add instance_refresh with min_healthy_percentage=100 and auto_rollback=True")]
    messages = []
    if not truthy(prop(props, "instanceRefresh.preferences.autoRollback")):
        messages.append("instanceRefresh.preferences.autoRollback is off; set auto_rollback=True so a model that "
                        "never turns ready is rolled back")
    healthy = prop(props, "instanceRefresh.preferences.minHealthyPercentage", 90)
    if healthy < 100:
        messages.append(f"instanceRefresh.preferences.minHealthyPercentage is {healthy:g} (%); set 100 so new "
                        "instances launch before old ones stop serving")
    return messages


def spans_zones(props: Props, config: Config) -> list[str]:
    subnets = {str(subnet) for subnet in items(props.get("vpcZoneIdentifiers"))}
    zones = {str(zone) for zone in items(props.get("availabilityZones"))}
    if len(subnets) >= 2 or len(zones) >= 2:
        return []
    return [(f"the group launches into {len(subnets) or len(zones)} subnet(s): one availability zone outage stops the "
            "served model; list private subnets in at least two zones in network.privateSubnetIds")]


def covers_peak(props: Props, config: Config) -> list[str]:
    peak = props.get("expectedPeakConcurrency")
    if peak is None:
        return []
    instances, workers = props.get("maxInstances", 0), props.get("workersPerInstance", 0)
    most = instances * workers
    if most >= peak:
        return []
    return [(f"max concurrency {most:g} (= {instances:g} instances × {workers:g} "
            f"workers) is below the expected peak {peak:g} (= QPS × latency); raise maxProvisionedConcurrency")]


NO_SCALE_TO_ZERO = ResourceRule(
    id="no-scale-to-zero",
    description="Served models keep warm instances (no scale to zero): cold starts carry no latency SLA.",
    levels=MANDATORY_IN_PROD,
    checks={SERVED_MODEL: keeps_an_instance},
    fix="Set scaleToZeroEnabled: false on the served model.",
)

INSTANCE_REFRESH = ResourceRule(
    id="instance-refresh-rollback",
    description="Instance refresh launches before it terminates (min healthy 100 %) and rolls back on failure.",
    levels=MANDATORY_IN_PROD,
    checks={AUTOSCALING_GROUP: refresh_rolls_back},
    fix="instance_refresh.preferences: min_healthy_percentage=100, auto_rollback=True.",
)

MULTI_AZ = ResourceRule(
    id="multi-az",
    description="Autoscaling groups span more than one availability zone.",
    levels=ADVISORY,
    checks={AUTOSCALING_GROUP: spans_zones},
    fix="List private subnets in two or more availability zones.",
)

CAPACITY_COVERS_PEAK = ResourceRule(
    id="capacity-covers-peak",
    description="Max provisioned concurrency covers the expected peak (QPS × latency).",
    levels=ADVISORY,
    checks={SERVED_MODEL: covers_peak},
    fix="Raise maxProvisionedConcurrency (or the workload size) to the expected peak.",
)

RULES = [NO_SCALE_TO_ZERO, INSTANCE_REFRESH, MULTI_AZ, CAPACITY_COVERS_PEAK]

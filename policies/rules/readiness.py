"""Health checks: traffic and replacement both follow the runtime's readiness path."""

from __future__ import annotations

from policies.rules.resource_types import AUTOSCALING_GROUP, TARGET_GROUP
from policies.rules.rule import MANDATORY, Config, Props, ResourceRule, prop

# The Kiln runtime answers 200 on /ping only after the model loaded and a warm-up prediction passed.
READINESS_PATH = "/ping"


def target_group_checks_readiness(props: Props, config: Config) -> list[str]:
    if props.get("targetType") == "lambda":
        return []  # the scale-to-zero activator: a function, not a runtime with a readiness path
    path = config.get("readinessPath", READINESS_PATH)
    if prop(props, "healthCheck.enabled", True) is False:
        return [f"the health check is disabled; enable it on {path} so instances that cannot answer get no traffic"]
    actual = prop(props, "healthCheck.path", "/ (the ALB default)")
    if actual != path:
        return [f"the health check probes {actual!r}, which answers before the model loads; set health_check.path={path!r}"]
    return []


def group_trusts_load_balancer(props: Props, config: Config) -> list[str]:
    kind = props.get("healthCheckType", "EC2")
    if kind == "ELB":
        return []
    return [(f"healthCheckType is {kind!r}: an instance whose model never loads stays in service; "
            "set health_check_type='ELB'")]


READINESS_HEALTH_CHECKS = ResourceRule(
    id="readiness-health-checks",
    description="Load balancer health checks probe the runtime's readiness path and the group acts on them.",
    levels=MANDATORY,
    checks={TARGET_GROUP: target_group_checks_readiness, AUTOSCALING_GROUP: group_trusts_load_balancer},
    fix="Target group health_check.path='/ping'; autoscaling group health_check_type='ELB'.",
    config={"readinessPath": {"type": "string", "pattern": "^/", "default": READINESS_PATH,
                              "description": "the path that answers 200 only when the model can predict"}},
)

RULES = [READINESS_HEALTH_CHECKS]

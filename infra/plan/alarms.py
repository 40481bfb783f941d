"""The alarms each served model carries, with their thresholds: decided here, read by the
components that create them, the review that lists them and `kiln status` that reports them.

Every alarm reads the served model's target group on the stack's ALB (dimensions TargetGroup
and LoadBalancer, 1-minute data:
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html),
and every name starts with the target group's name, which is unique per account and region, so
`kiln status` finds a served model's alarms from its target group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.plan.launch_timing import ready_seconds
from infra.plan.scaling import ROLLOUT_ALARM_MINUTES, ROLLOUT_ERROR_RATE
from infra.plan.stack import ServedModelPlan
from runtime.settings import admission_budget_seconds

# p99 latency above the budget for this many minutes in a row: a sustained queue, not one slow minute.
LATENCY_ALARM_MINUTES = 5
# No healthy target for this many minutes: longer than a health check flap (2 × 10 s checks).
NO_HEALTHY_HOSTS_MINUTES = 2

# EventBridge detail types of an instance refresh that did not complete as planned
# (https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-eventbridge-events.html).
REFRESH_FAILURE_EVENTS = (
    "EC2 Auto Scaling Instance Refresh Failed",
    "EC2 Auto Scaling Instance Refresh Rollback Started",
    "EC2 Auto Scaling Instance Refresh Rollback Succeeded",
    "EC2 Auto Scaling Instance Refresh Rollback Failed",
)


# The Pulumi type of the component that holds one served model's alarms (its inputs list them).
ALARMS_COMPONENT_TYPE = "kiln:operate:ServedModelAlarms"


@dataclass(frozen=True)
class AlarmPlan:
    """One alarm of one served model, in the words the review and the docs use."""

    key: str
    name: str
    threshold: float
    minutes: int
    summary: str


def dashboard_name(stack: str) -> str:
    """The stack's one CloudWatch dashboard (stack names are already DNS labels)."""
    return f"kiln-{stack}"


def rollout_alarm_name(plan: ServedModelPlan) -> str:
    return f"{plan.target_group_name}-rollout-5xx"


def refresh_rule_name(plan: ServedModelPlan) -> str:
    """The EventBridge rule that forwards this group's failed or rolled-back refreshes."""
    return f"{plan.target_group_name}-refresh-failed"


def latency_budget_seconds(plan: ServedModelPlan) -> float:
    """The planned latency (measured or stated, else the planner's default) plus the wait the
    runtime admits a request with (queueBudgetSeconds, else 1 s or half a shorter request
    timeout): a p99 above it means requests queue for as long as the plan allows."""
    planned = plan.capacity.latency_ms / 1000
    return round(planned + admission_budget_seconds(plan.queue_budget_seconds, plan.request_timeout_seconds), 3)


def no_healthy_hosts_minutes(plan: ServedModelPlan) -> int:
    """How long a served model may have no healthy host before it alarms. A scale-to-zero one
    has none while idle, by design, and none while it wakes: it alarms only once its group has
    wanted an instance for longer than the slowest planned launch to ready
    (infra/plan/launch_timing.py) and the usual two minutes on top."""
    if not plan.scale_to_zero:
        return NO_HEALTHY_HOSTS_MINUTES
    return math.ceil(ready_seconds(plan.profile, "high") / 60) + NO_HEALTHY_HOSTS_MINUTES


def served_model_alarms(plan: ServedModelPlan) -> list[AlarmPlan]:
    """The alarms of one served model. The 5xx one is the rollout alarm the instance refresh
    already watches. A woken scale-to-zero served model that never becomes healthy is answered
    by its activator, not its target group, so no 5xx alarm sees it: its no-healthy-hosts alarm
    is what does."""
    budget = latency_budget_seconds(plan)
    hosts_minutes = no_healthy_hosts_minutes(plan)
    alarms = [
        AlarmPlan("5xx-rate", rollout_alarm_name(plan), ROLLOUT_ERROR_RATE, ROLLOUT_ALARM_MINUTES,
                  f"more than {ROLLOUT_ERROR_RATE:.0%} of requests answered 5xx for {ROLLOUT_ALARM_MINUTES} minutes "
                  "(also fails a running instance refresh)"),
        AlarmPlan("p99-latency", f"{plan.target_group_name}-p99-latency", budget, LATENCY_ALARM_MINUTES,
                  f"p99 target response time above the latency budget ({budget:g} s) for {LATENCY_ALARM_MINUTES} minutes"),
    ]
    alarms.append(AlarmPlan(
        "no-healthy-hosts", f"{plan.target_group_name}-no-healthy-hosts", 1, hosts_minutes,
        f"no healthy instance behind the target group for {hosts_minutes} minutes"
        + (" while its group wants one (woken from zero and never ready)" if plan.scale_to_zero else "")))
    return alarms

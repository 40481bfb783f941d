"""Operability: a prod served model's alarms must reach someone. Dev and staging stacks are
not asked (the rule is disabled there); `kiln review` still says when nothing is notified."""

from __future__ import annotations

from policies.rules.resource_types import SERVED_MODEL_ALARMS
from policies.rules.rule import ONLY_IN_PROD, Config, Props, ResourceRule


def alarms_notify_someone(props: Props, config: Config) -> list[str]:
    """An alarm nobody hears is a dashboard line: prod's must notify a topic someone reads."""
    if props.get("alertTopicArn"):
        return []
    name = f"{props.get('endpoint')}/{props.get('servedModelName')}"
    return [(f"{name}'s alarms and failed instance refreshes notify no one; set kiln:alerts.snsTopicArn to an SNS "
             "topic in the stack's region that your on-call subscribes to")]


ALERT_DESTINATION = ResourceRule(
    id="alert-destination",
    description="Each served model's alarms and instance-refresh failures notify an alert topic (kiln:alerts).",
    levels=ONLY_IN_PROD,
    checks={SERVED_MODEL_ALARMS: alarms_notify_someone},
    fix="Set kiln:alerts.snsTopicArn in the stack file.",
)

RULES = [ALERT_DESTINATION]

"""What the model says about itself (the bake manifest): a contract and a reproducible environment."""

from __future__ import annotations

from infra.plan.packaging import PACKAGING_RULES, PackagingRule
from policies.rules.resource_types import LISTENER_RULE, SERVED_MODEL
from policies.rules.rule import MANDATORY, Config, Props, ResourceCheck, ResourceRule, items, prop


def _name(props: Props) -> str:
    return f"{props.get('endpoint')}/{props.get('servedModelName')} ({props.get('resolvedModelUri') or props.get('modelUri')})"


def weights_sum_to_100(props: Props, config: Config) -> list[str]:
    """An ALB weighted forward with weights not summing to 100 silently shifts the route percentages."""
    messages = []
    for action in items(props.get("actions")):
        groups = items(prop(action, "forward.targetGroups"))
        if len(groups) < 2:
            continue
        # An absent weight is the provider's default 1 (terraform-provider-aws, lb listener rule
        # forward.target_group.weight), not 0: 100 + (absent) sends ~1 % to the second group.
        weights = [prop(group, "weight", 1) for group in groups]
        if sum(weights) != 100:
            shown = " + ".join(f"{w:g}" for w in weights)
            messages.append(f"route weights {shown} = {sum(weights):g}, not 100; fix trafficConfig.routes")
    return messages


def _findings_of(rule_id: str) -> ResourceCheck:
    """The bake's findings of one id on a served model (its `packagingFindings` input)."""

    def check(props: Props, config: Config) -> list[str]:
        return [f"{_name(props)}: {prop(finding, 'message')}" for finding in items(props.get("packagingFindings"))
                if prop(finding, "id") == rule_id]

    return check


def _packaging_rule(rule: PackagingRule) -> ResourceRule:
    return ResourceRule(id=rule.id, description=rule.description, levels=rule.levels,
                        checks={SERVED_MODEL: _findings_of(rule.id)},
                        fix="Re-log the model (or change its compute type) as the message says; docs/bake.md lists each check.")


# The packaging checks as rules, at one set of levels (infra/plan/packaging.py), each reporting
# the bake's finding of its id: the pack and a program that stops on a finding say the same
# thing, because there is one check (models/checks.py) and one message.
PACKAGING = [_packaging_rule(rule) for rule in PACKAGING_RULES]

TRAFFIC_WEIGHTS = ResourceRule(
    id="traffic-weights-sum-to-100",
    description="Traffic weights of an endpoint's served models sum to 100.",
    levels=MANDATORY,
    checks={LISTENER_RULE: weights_sum_to_100},
    fix="Make trafficConfig.routes[].trafficPercentage add up to 100 for the endpoint.",
)

RULES = [*PACKAGING, TRAFFIC_WEIGHTS]

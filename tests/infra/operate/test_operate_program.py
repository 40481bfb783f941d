"""The prod stack's program carries its dashboard, its alarms with the plan's thresholds, and
the SNS wiring to the topic its stack file names (run in-process under mocks)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest

from infra.plan.alarms import ALARMS_COMPONENT_TYPE, latency_budget_seconds
from infra.plan.config import parse_stack_config, values_from_stack_config
from infra.plan.launch_timing import ready_seconds
from infra.plan.stack import plan_stack
from infra.preview.policy_pack import check_policies
from infra.preview.program import ProgramRun, run_program
from infra.review.render import render_markdown
from infra.review.report import build_review
from tests.conftest import stack_config

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "arn:aws:sns:us-east-1:123456789012:kiln-prod-alerts"


@pytest.fixture(scope="module")
def prod(example_store) -> tuple[ProgramRun, dict]:
    config = stack_config("prod", example_store)
    return run_program("prod", config, preview=False), config


def test_each_served_model_alarms_at_the_planned_thresholds_and_notifies_the_topic(prod) -> None:
    run, raw = prod
    plan = plan_stack("prod", parse_stack_config(values_from_stack_config(raw, "prod"), "prod"))
    alarms = {r.inputs["name"]: r.inputs for r in run.of_type(ALARM) if "name" in r.inputs}

    for served in plan.served_models:
        tg = served.target_group_name
        latency = alarms[f"{tg}-p99-latency"]
        # The planned latency plus the admission budget: queueBudgetSeconds unset, so 1 s.
        assert latency["threshold"] == round(served.capacity.latency_ms / 1000 + 1, 3)
        assert latency["extendedStatistic"] == "p99"
        assert latency["metricName"] == "TargetResponseTime"
        assert set(latency["dimensions"]) == {"LoadBalancer", "TargetGroup"}
        hosts = alarms[f"{tg}-no-healthy-hosts"]
        assert (hosts["metricName"], hosts["comparisonOperator"], hosts["threshold"]) == (
            "HealthyHostCount", "LessThanThreshold", 1)
        errors = alarms[f"{tg}-rollout-5xx"]
        assert errors["threshold"] == 0.05
        for alarm in (latency, hosts, errors):
            assert alarm["alarmActions"] == [TOPIC]
            assert alarm["okActions"] == [TOPIC]


def test_failed_or_rolled_back_refreshes_reach_the_topic_through_eventbridge(prod) -> None:
    run, _ = prod
    rules = {r.urn: r for r in run.of_type("aws:cloudwatch/eventRule:EventRule")}
    targets = run.of_type("aws:cloudwatch/eventTarget:EventTarget")

    assert len(rules) == 3 and len(targets) == 3
    for rule in rules.values():
        pattern = json.loads(rule.inputs["eventPattern"])
        assert pattern["source"] == ["aws.autoscaling"]
        assert "EC2 Auto Scaling Instance Refresh Failed" in pattern["detail-type"]
        assert pattern["detail"]["AutoScalingGroupName"][0].startswith("kiln-prod-")
    assert {t.inputs["arn"] for t in targets} == {TOPIC}
    assert {t.inputs["rule"] for t in targets} == {r.inputs["name"] for r in rules.values()}


def test_one_dashboard_has_a_row_per_served_model(prod) -> None:
    run, raw = prod
    first = plan_stack("prod", parse_stack_config(values_from_stack_config(raw, "prod"), "prod")).served_models[0]
    (dashboard,) = run.of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.inputs["dashboardBody"])
    headers = [w["properties"]["markdown"] for w in body["widgets"] if w["type"] == "text"]
    titles = [w["properties"]["title"] for w in body["widgets"] if w["type"] == "metric"]

    assert dashboard.inputs["dashboardName"] == "kiln-prod"
    assert [h.split()[1] for h in headers] == ["fraud-scorer.champion", "fraud-scorer.challenger", "ticket-router.champion"]
    assert titles[:6] == ["Requests", "4xx / 5xx", "Target response time", "In-flight concurrency",
                          "Healthy hosts / instances", "Refresh failed / rolled back"]
    latency = next(w for w in body["widgets"] if w["type"] == "metric" and w["properties"]["title"] == "Target response time")
    assert [m[-1]["stat"] for m in latency["properties"]["metrics"]] == ["p50", "p99"]
    # The first row's latency line is its p99 alarm's threshold: planned latency + admission budget.
    assert latency["properties"]["annotations"]["horizontal"][0]["value"] == latency_budget_seconds(first)
    assert latency_budget_seconds(first) == round(first.capacity.latency_ms / 1000 + 1, 3)


def _without_alert_topic(run: ProgramRun) -> ProgramRun:
    registrations = []
    for registration in run.registrations:
        if registration.type == ALARMS_COMPONENT_TYPE:
            registration = copy.deepcopy(registration)
            registration.inputs["alertTopicArn"] = None
        registrations.append(registration)
    return dataclasses.replace(run, registrations=registrations)


def test_prod_without_an_alert_topic_is_a_mandatory_violation(prod) -> None:
    run, config = prod
    silent = _without_alert_topic(run)

    in_prod = [v for v in check_policies(silent, config).violations if v.policy == "alert-destination"]
    as_dev = dataclasses.replace(silent, stack="dev")
    in_dev = [v for v in check_policies(as_dev, {**config, "kiln:environment": "dev"}).violations
              if v.policy == "alert-destination"]

    assert [v.level for v in in_prod] == ["mandatory"] * 3
    assert any(v.message.startswith("fraud-scorer/champion's alarms") for v in in_prod)
    assert all("kiln:alerts.snsTopicArn" in v.message for v in in_prod)
    assert in_dev == []
    assert not [v for v in check_policies(run, config).violations if v.policy == "alert-destination"]


def test_kiln_review_lists_the_alarms_the_rule_and_the_topic(example_store) -> None:
    review = build_review("prod", tracking_uri=example_store.tracking_uri)
    text = render_markdown(review)
    section = text[text.index("### Alarms"):]

    assert f"notify `{TOPIC}`; dashboard `kiln-prod`" in section
    for served in ("fraud-scorer/champion", "fraud-scorer/challenger", "ticket-router/champion"):
        assert section.count(f"| {served} |") == 4
    for served in plan_stack("prod", parse_stack_config(values_from_stack_config(stack_config("prod", example_store), "prod"),
                                                        "prod")).served_models:
        budget = latency_budget_seconds(served)
        assert f"p99 target response time above the latency budget ({budget:g} s) for 5 minutes" in section
    assert "(EventBridge) | an instance refresh failed or rolled back |" in section

    silent = dataclasses.replace(review, alarms=[dataclasses.replace(a, alert_topic_arn=None) for a in review.alarms])
    assert "No alert topic (`kiln:alerts`)" in render_markdown(silent)


def test_a_scale_to_zero_served_model_alarms_when_woken_and_never_healthy_not_while_idle(example_store) -> None:
    """The dev stack's served model scales to zero: no host while idle is by design, but a wake
    that never becomes healthy is answered by the activator, out of sight of the 5xx alarm, so
    its no-healthy-hosts alarm counts only minutes when the group wants an instance, and only
    after the slowest planned launch to ready."""
    raw = stack_config("dev", example_store)
    run = run_program("dev", raw, preview=False)
    [served] = plan_stack("dev", parse_stack_config(values_from_stack_config(raw, "dev"), "dev")).served_models
    alarms = {r.inputs["name"]: r.inputs for r in run.of_type(ALARM) if "name" in r.inputs}

    alarm = alarms[f"{served.target_group_name}-no-healthy-hosts"]
    queries = {q["id"]: q for q in alarm["metricQueries"]}

    assert served.scale_to_zero
    assert alarm["evaluationPeriods"] == math.ceil(ready_seconds(served.profile, "high") / 60) + 2
    assert alarm["evaluationPeriods"] > 2
    assert (queries["healthy"]["metric"]["metricName"], queries["healthy"]["metric"]["stat"]) == ("HealthyHostCount", "Minimum")
    assert queries["desired"]["metric"]["metricName"] == "GroupDesiredCapacity"
    assert queries["desired"]["metric"]["dimensions"] == {"AutoScalingGroupName": served.group_name}
    assert queries["down"]["expression"] == "IF(FILL(desired, 0) >= 1 AND FILL(healthy, 0) < 1, 1, 0)"
    assert (alarm["comparisonOperator"], alarm["threshold"], alarm["treatMissingData"]) == (
        "GreaterThanOrEqualToThreshold", 1, "notBreaching")
    # dev names no kiln:alerts topic: the alarm changes state and notifies no one.
    assert alarm["alarmActions"] == []

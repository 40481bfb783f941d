"""What an operator watches: each served model's alarms and refresh-failure rule, and the
stack's one dashboard.

Alarms and thresholds come from the plan (infra/plan/alarms.py); this module only creates
them. With `kiln:alerts`, every alarm and the refresh-failure rule notify the stack's SNS
topic; without it they still change state, and the dashboard and `kiln status` show them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.autoscaling import alert_actions
from infra.plan.alarms import (
    ALARMS_COMPONENT_TYPE,
    REFRESH_FAILURE_EVENTS,
    AlarmPlan,
    dashboard_name,
    latency_budget_seconds,
    refresh_rule_name,
    served_model_alarms,
)
from infra.plan.scaling import ALB_METRIC_PERIOD_SECONDS
from infra.plan.stack import ServedModelPlan, StackPlan
from runtime.contract import HIGH_RESOLUTION_PERIOD_SECONDS, IN_FLIGHT_METRIC, METRIC_NAMESPACE

ALB_NAMESPACE = "AWS/ApplicationELB"
AUTOSCALING_NAMESPACE = "AWS/AutoScaling"


def metric_query(id_: str, namespace: str, metric: str, dimensions: dict[str, Any], stat: str) -> dict[str, Any]:
    """One metric of a metric-math alarm, at the 1-minute period of the ALB and group metrics."""
    return {"id": id_, "metric": {"namespace": namespace, "metric_name": metric, "dimensions": dimensions,
                                  "stat": stat, "period": ALB_METRIC_PERIOD_SECONDS}}


class ServedModelAlarms(pulumi.ComponentResource):
    """The p99-latency and no-healthy-hosts alarms of one served model (its 5xx alarm is the
    rollout alarm its group's instance refresh watches), and an EventBridge rule that sends
    its group's failed or rolled-back instance refreshes to the alert topic, the way AWS
    documents for refresh events."""

    def __init__(
        self,
        name: str,
        plan: ServedModelPlan,
        load_balancer_suffix: pulumi.Input[str],
        target_group_suffix: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        alarms = {alarm.key: alarm for alarm in served_model_alarms(plan)}
        super().__init__(ALARMS_COMPONENT_TYPE, name, alarm_properties(plan), opts)
        child = pulumi.ResourceOptions(parent=self)
        dimensions = {"LoadBalancer": load_balancer_suffix, "TargetGroup": target_group_suffix}
        def metric_alarm(key: str, metric_name: str, comparison: str, missing_data: str,
                         **statistic: str) -> aws.cloudwatch.MetricAlarm:
            alarm = alarms[key]
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{key}",
                name=alarm.name,
                alarm_description=_description(plan, alarm),
                namespace=ALB_NAMESPACE,
                metric_name=metric_name,
                dimensions=dimensions,
                period=ALB_METRIC_PERIOD_SECONDS,
                evaluation_periods=alarm.minutes,
                datapoints_to_alarm=alarm.minutes,
                comparison_operator=comparison,
                threshold=alarm.threshold,
                treat_missing_data=missing_data,
                **statistic,
                **alert_actions(plan),
                tags=plan.tags,
                opts=child,
            )

        # No requests, no latency data: an idle served model is not a slow one.
        self.latency_alarm = metric_alarm("p99-latency", "TargetResponseTime", "GreaterThanThreshold", "notBreaching",
                                          extended_statistic="p99")
        # The ALB reports healthy hosts every minute, traffic or not: silence is not health.
        self.no_healthy_hosts_alarm = (
            self._woken_without_healthy_hosts(name, plan, alarms["no-healthy-hosts"], dimensions, child)
            if plan.scale_to_zero
            else metric_alarm("no-healthy-hosts", "HealthyHostCount", "LessThanThreshold", "breaching", statistic="Minimum")
        )
        self.refresh_rule = aws.cloudwatch.EventRule(
            f"{name}-refresh-failed",
            name=refresh_rule_name(plan),
            description=f"{plan.resource_name}: an instance refresh of {plan.group_name} failed or rolled back",
            event_pattern=json.dumps(refresh_failure_pattern(plan)),
            tags=plan.tags,
            opts=child,
        )
        self.refresh_target = None
        if plan.alert_topic_arn:
            self.refresh_target = aws.cloudwatch.EventTarget(
                f"{name}-refresh-failed-alert", rule=self.refresh_rule.name, arn=plan.alert_topic_arn, opts=child
            )
        self.register_outputs({"refreshRule": self.refresh_rule.name})


    @staticmethod
    def _woken_without_healthy_hosts(name: str, plan: ServedModelPlan, alarm: AlarmPlan, dimensions: dict[str, Any],
                                     opts: pulumi.ResourceOptions) -> aws.cloudwatch.MetricAlarm:
        """No healthy host while the group wants one: idle at zero is not an outage, a wake that
        never becomes healthy is (its requests wait at the activator, then fail there)."""
        return aws.cloudwatch.MetricAlarm(
            f"{name}-no-healthy-hosts",
            name=alarm.name,
            alarm_description=_description(plan, alarm),
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            evaluation_periods=alarm.minutes,
            datapoints_to_alarm=alarm.minutes,
            # Both metrics come every minute (group metrics are on); a gap says nothing either way.
            treat_missing_data="notBreaching",
            metric_queries=[
                metric_query("healthy", ALB_NAMESPACE, "HealthyHostCount", dimensions, "Minimum"),
                metric_query("desired", AUTOSCALING_NAMESPACE, "GroupDesiredCapacity",
                             {"AutoScalingGroupName": plan.group_name}, "Maximum"),
                {"id": "down", "expression": "IF(FILL(desired, 0) >= 1 AND FILL(healthy, 0) < 1, 1, 0)",
                 "label": "wanted and not healthy", "return_data": True},
            ],
            **alert_actions(plan),
            tags=plan.tags,
            opts=opts,
        )


def refresh_failure_pattern(plan: ServedModelPlan) -> dict[str, Any]:
    """The EventBridge pattern of this group's failed or rolled-back instance refreshes."""
    return {
        "source": ["aws.autoscaling"],
        "detail-type": list(REFRESH_FAILURE_EVENTS),
        "detail": {"AutoScalingGroupName": [plan.group_name]},
    }


def alarm_properties(plan: ServedModelPlan) -> dict[str, Any]:
    """The alarms as the component's inputs: what the policy pack and the review read."""
    return {
        "endpoint": plan.endpoint,
        "servedModelName": plan.name,
        "alertTopicArn": plan.alert_topic_arn,
        "alarms": [
            {"name": a.name, "kind": a.key, "threshold": a.threshold, "minutes": a.minutes, "summary": a.summary}
            for a in served_model_alarms(plan)
        ],
        "refreshRule": refresh_rule_name(plan),
    }


def _description(plan: ServedModelPlan, alarm: AlarmPlan) -> str:
    return f"{plan.resource_name}: {alarm.summary}; see docs/operate.md#{alarm.key}"


@dataclass(frozen=True)
class DashboardRow:
    """One served model's row, with the names AWS gave its resources."""

    plan: ServedModelPlan
    load_balancer: str
    target_group: str


def dashboard_body(region: str, rows: list[DashboardRow]) -> dict[str, Any]:
    """A CloudWatch dashboard body with one row per served model: requests, 4xx/5xx, p50/p99
    latency against the budget, in-flight requests, healthy hosts and instances, refresh
    failures (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html)."""
    return {"widgets": [widget for index, row in enumerate(rows) for widget in _row(region, row, index * 7)]}


def _row(region: str, row: DashboardRow, y: int) -> list[dict[str, Any]]:
    plan = row.plan
    alb = ["LoadBalancer", row.load_balancer, "TargetGroup", row.target_group]
    group = ["AutoScalingGroupName", plan.group_name]
    in_flight = (
        [[METRIC_NAMESPACE, IN_FLIGHT_METRIC, *[v for pair in plan.scaling.published_metric_dimensions for v in pair],
          {"stat": "Sum", "period": HIGH_RESOLUTION_PERIOD_SECONDS, "label": "in flight"}]]
        if plan.scaling.high_resolution_metric
        # Without the runtime's metric, the ALB's open connections are the nearest measure.
        else [[ALB_NAMESPACE, "ActiveConnectionCount", "LoadBalancer", row.load_balancer,
               {"stat": "Sum", "label": "ALB connections"}]]
    )
    graphs: list[tuple[str, list[list[Any]], dict[str, Any]]] = [
        ("Requests", [[ALB_NAMESPACE, "RequestCount", *alb, {"stat": "Sum"}]], {}),
        ("4xx / 5xx", [[ALB_NAMESPACE, "HTTPCode_Target_4XX_Count", *alb, {"stat": "Sum", "label": "4xx"}],
                       [ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", *alb, {"stat": "Sum", "label": "5xx"}]], {}),
        ("Target response time", [[ALB_NAMESPACE, "TargetResponseTime", *alb, {"stat": "p50", "label": "p50"}],
                                  [ALB_NAMESPACE, "TargetResponseTime", *alb, {"stat": "p99", "label": "p99"}]],
         {"annotations": {"horizontal": [{"label": "latency budget", "value": latency_budget_seconds(plan)}]}}),
        ("In-flight concurrency", in_flight, {}),
        ("Healthy hosts / instances", [
            [ALB_NAMESPACE, "HealthyHostCount", *alb, {"stat": "Minimum", "label": "healthy"}],
            ["AWS/AutoScaling", "GroupInServiceInstances", *group, {"stat": "Maximum", "label": "in service"}],
            ["AWS/AutoScaling", "GroupDesiredCapacity", *group, {"stat": "Maximum", "label": "desired"}]], {}),
        ("Refresh failed / rolled back", [
            ["AWS/Events", "TriggeredRules", "RuleName", refresh_rule_name(plan), {"stat": "Sum", "label": "events"}]], {}),
    ]
    header = {"type": "text", "x": 0, "y": y, "width": 24, "height": 1,
              "properties": {"markdown": f"### {plan.resource_name}"}}
    return [header] + [
        {"type": "metric", "x": 4 * column, "y": y + 1, "width": 4, "height": 6, "properties": {
            "title": title, "region": region, "view": "timeSeries", "period": ALB_METRIC_PERIOD_SECONDS,
            "metrics": metrics, **extra}}
        for column, (title, metrics, extra) in enumerate(graphs)
    ]


def stack_dashboard(plan: StackPlan, rows: list[tuple[ServedModelPlan, pulumi.Output[str], pulumi.Output[str]]],
                    region: str) -> aws.cloudwatch.Dashboard:
    """The stack's one dashboard; its body waits for the ALB's and target groups' ARN suffixes."""
    suffixes = pulumi.Output.all(*[output for _, lb, tg in rows for output in (lb, tg)])
    body = suffixes.apply(lambda values: json.dumps(dashboard_body(region, [
        DashboardRow(served, values[2 * index], values[2 * index + 1]) for index, (served, _, _) in enumerate(rows)
    ])))
    return aws.cloudwatch.Dashboard("dashboard", dashboard_name=dashboard_name(plan.stack), dashboard_body=body)

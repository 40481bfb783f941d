"""How one served model's autoscaling group follows its traffic and rolls out changes.

- Scale out on concurrency: target tracking on ALBRequestCountPerTarget (1-minute ALB
  data) and, when the runtime publishes it, on the 10 s in-flight-requests metric, so a
  load step is seen in seconds. Both have scale-in disabled.
- Scale in on Kiln's own terms: one instance per `scaleInCooldownSeconds`, only after the
  whole window was below half the target (Databricks: "scale-down every 5 minutes"), and
  never below the floor. EC2 Auto Scaling ignores a target-tracking scale-in cooldown
  (docs.aws.amazon.com/autoscaling/application/APIReference/API_TargetTrackingScalingPolicyConfiguration.html:
  "This property is not used if the scalable resource is an Auto Scaling group"), so the
  window has to be an alarm plus a simple-scaling policy with that cooldown.
- Zero-downtime rollout: a new launch template version is rolled out by instance refresh,
  launching before terminating, half first, baking, and rolling back on its own if new
  instances never become healthy or the 5xx rate during the bake trips the rollout alarm.

Scale to zero and back lives in infra/components/activator.py.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.gateway import Gateway
from infra.plan.alarms import rollout_alarm_name
from infra.plan.scaling import (
    ALB_METRIC_PERIOD_SECONDS,
    LAUNCH_HOOK_DEFAULT_RESULT,
    LAUNCH_HOOK_NAME,
    REFRESH_CHECKPOINT_DELAY_SECONDS,
    REFRESH_CHECKPOINTS,
    ROLLOUT_ALARM_MINUTES,
    ROLLOUT_ERROR_RATE,
    ROLLOUT_MIN_REQUESTS_PER_MINUTE,
    ScalingPlan,
)
from infra.plan.stack import ServedModelPlan
from runtime.contract import HIGH_RESOLUTION_PERIOD_SECONDS, IN_FLIGHT_METRIC, METRIC_NAMESPACE

# Group metrics the scale-in and wake alarms read (1-minute, free of charge).
GROUP_METRICS = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupPendingInstances"]
WARM_POOL_METRICS = ["WarmPoolDesiredCapacity", "WarmPoolWarmedCapacity"]


def group_scaling_arguments(plan: ServedModelPlan) -> dict[str, Any]:
    """Autoscaling group arguments owned by scaling: instance refresh, warm pool, group metrics
    and the launch lifecycle hook."""
    scaling = plan.scaling
    arguments: dict[str, Any] = {
        # Declared with the group, not as a separate LifecycleHook resource, so that the
        # instances the group launches as it is created are held too. Every group has it, warm
        # pool or not: an instance goes in service (and an instance refresh counts it) only once
        # its runtime has pulled its image and answered /ping, and one user data serves both.
        "initial_lifecycle_hooks": [
            {
                "name": LAUNCH_HOOK_NAME,
                "lifecycle_transition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                "heartbeat_timeout": scaling.launch_hook_timeout_seconds,
                "default_result": LAUNCH_HOOK_DEFAULT_RESULT,
            }
        ],
        "instance_refresh": {
            "strategy": "Rolling",
            "preferences": {
                # Launch before terminate: capacity never drops below 100 %, the group may
                # reach 200 % while both configurations run (and are paid for).
                "min_healthy_percentage": 100,
                "max_healthy_percentage": 200,
                "auto_rollback": True,
                "instance_warmup": str(scaling.instance_warmup_seconds),
                "checkpoint_percentages": list(REFRESH_CHECKPOINTS),
                "checkpoint_delay": str(REFRESH_CHECKPOINT_DELAY_SECONDS),
                "alarm_specification": {"alarms": [rollout_alarm_name(plan)]},
            },
        },
        "enabled_metrics": GROUP_METRICS + (WARM_POOL_METRICS if scaling.warm_pool else []),
    }
    if scaling.warm_pool:
        arguments["warm_pool"] = {
            "pool_state": scaling.warm_pool.pool_state,
            "min_size": scaling.warm_pool.min_size,
            "instance_reuse_policy": {"reuse_on_scale_in": scaling.warm_pool.reuse_on_scale_in},
        }
    return arguments


def rollout_alarm(
    name: str, plan: ServedModelPlan, gateway: Gateway, target_group: aws.lb.TargetGroup, opts: pulumi.ResourceOptions
) -> aws.cloudwatch.MetricAlarm:
    """5xx rate of this served model; in ALARM it fails a running instance refresh (rollback)
    and, with `kiln:alerts`, notifies the alert topic as it goes in and out of ALARM.

    Created before the group, because the group's refresh preferences name it.
    """
    dimensions = {"LoadBalancer": gateway.load_balancer.arn_suffix, "TargetGroup": target_group.arn_suffix}
    return aws.cloudwatch.MetricAlarm(
        f"{name}-rollout-5xx",
        name=rollout_alarm_name(plan),
        alarm_description=(
            f"{plan.resource_name}: more than {ROLLOUT_ERROR_RATE:.0%} of requests answered 5xx for "
            f"{ROLLOUT_ALARM_MINUTES} minutes; fails and rolls back a running instance refresh"
        ),
        comparison_operator="GreaterThanThreshold",
        threshold=ROLLOUT_ERROR_RATE,
        evaluation_periods=ROLLOUT_ALARM_MINUTES,
        datapoints_to_alarm=ROLLOUT_ALARM_MINUTES,
        treat_missing_data="notBreaching",
        **alert_actions(plan),
        metric_queries=[
            _alb_query("errors", "HTTPCode_Target_5XX_Count", dimensions),
            _alb_query("requests", "RequestCount", dimensions),
            {
                "id": "rate",
                "expression": f"IF(FILL(requests, 0) >= {ROLLOUT_MIN_REQUESTS_PER_MINUTE}, FILL(errors, 0) / requests, 0)",
                "label": "5xx rate",
                "return_data": True,
            },
        ],
        tags=plan.tags,
        opts=opts,
    )


class ServedModelScaling(pulumi.ComponentResource):
    """The scaling policies and alarms of one served model's autoscaling group."""

    def __init__(
        self,
        name: str,
        plan: ServedModelPlan,
        group: aws.autoscaling.Group,
        target_group: aws.lb.TargetGroup,
        gateway: Gateway,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        scaling = plan.scaling
        super().__init__("kiln:serving:ServedModelScaling", name, scaling_properties(scaling), opts)
        child = pulumi.ResourceOptions(parent=self)
        # This policy used to be a direct child of the served model; the alias keeps it
        # (no delete and re-create) on stacks deployed before scaling had its own component.
        moved = pulumi.ResourceOptions(
            parent=self, aliases=[pulumi.Alias(parent=opts.parent)] if opts is not None and opts.parent else None
        )
        resource_label = pulumi.Output.concat(gateway.load_balancer.arn_suffix, "/", target_group.arn_suffix)

        self.requests_policy = aws.autoscaling.Policy(
            f"{name}-requests-per-target",
            autoscaling_group_name=group.name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=scaling.instance_warmup_seconds,
            target_tracking_configuration={
                "predefined_metric_specification": {
                    "predefined_metric_type": "ALBRequestCountPerTarget",
                    "resource_label": resource_label,
                },
                "target_value": scaling.alb_target_requests_per_minute,
                "disable_scale_in": True,
            },
            opts=moved,
        )
        self.in_flight_policy = None
        if scaling.high_resolution_metric:
            self.in_flight_policy = aws.autoscaling.Policy(
                f"{name}-in-flight",
                autoscaling_group_name=group.name,
                policy_type="TargetTrackingScaling",
                estimated_instance_warmup=scaling.instance_warmup_seconds,
                target_tracking_configuration={
                    "customized_metric_specification": {
                        "namespace": METRIC_NAMESPACE,
                        "metric_name": IN_FLIGHT_METRIC,
                        "metric_dimensions": [{"name": k, "value": v} for k, v in scaling.metric_dimensions.items()],
                        # Each instance publishes once per period, so the average is per instance.
                        "statistic": "Average",
                        "period": HIGH_RESOLUTION_PERIOD_SECONDS,
                    },
                    "target_value": scaling.in_flight_target,
                    "disable_scale_in": True,
                },
                opts=child,
            )

        self.scale_in_policy = aws.autoscaling.Policy(
            f"{name}-scale-in",
            autoscaling_group_name=group.name,
            policy_type="SimpleScaling",
            adjustment_type="ChangeInCapacity",
            scaling_adjustment=-1,
            # Simple scaling waits out this cooldown before it answers the alarm again, counted
            # from the end of the activity: after the removed instance drained (up to the
            # deregistration delay) and terminated. So instances leave at most one per window,
            # and in practice one per window + drain + termination (docs/scaling.md).
            cooldown=scaling.scale_in_cooldown_seconds,
            opts=child,
        )
        window = scaling.scale_in_evaluation_minutes
        self.scale_in_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-scale-in",
            alarm_description=_scale_in_description(plan.resource_name, scaling),
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            evaluation_periods=window,
            datapoints_to_alarm=window,
            treat_missing_data="notBreaching",
            metric_queries=_scale_in_queries(scaling, target_group, group),
            alarm_actions=[self.scale_in_policy.arn],
            tags=plan.tags,
            opts=child,
        )
        self.register_outputs({"scaleInAlarm": self.scale_in_alarm.arn})


def _scale_in_description(resource_name: str, scaling: ScalingPlan) -> str:
    low = f"requests per instance below {scaling.scale_in_threshold_requests_per_minute:g}/min"
    if scaling.scale_in_threshold_in_flight is not None:
        low += f" and in flight per instance below {scaling.scale_in_threshold_in_flight:g}"
    return (f"{resource_name}: {low} for {scaling.scale_in_evaluation_minutes} min "
            f"and more than {scaling.scale_in_floor} instance(s): remove one")


def _scale_in_queries(scaling: ScalingPlan, target_group: aws.lb.TargetGroup,
                      group: aws.autoscaling.Group) -> list[dict[str, Any]]:
    """Low on every signal that scales out, and above the floor. A separate scale-in policy is
    not blocked by target tracking and can fight it
    (https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-target-tracking.html): with a
    model slower than planned, requests per target fall below the threshold while in-flight is over
    its target, and the request count alone would remove what the in-flight policy adds back."""
    queries: list[dict[str, Any]] = [
        {
            "id": "load",
            "metric": {
                "namespace": "AWS/ApplicationELB",
                "metric_name": "RequestCountPerTarget",
                "dimensions": {"TargetGroup": target_group.arn_suffix},
                "stat": "Sum",
                "period": ALB_METRIC_PERIOD_SECONDS,
            },
        },
        {
            "id": "capacity",
            "metric": {
                "namespace": "AWS/AutoScaling",
                "metric_name": "GroupDesiredCapacity",
                "dimensions": {"AutoScalingGroupName": group.name},
                "stat": "Minimum",
                "period": ALB_METRIC_PERIOD_SECONDS,
            },
        },
    ]
    # No requests means no ALB data point: FILL counts that as zero load.
    low = (f"capacity > {scaling.scale_in_floor} AND "
           f"FILL(load, 0) < {scaling.scale_in_threshold_requests_per_minute:g}")
    if scaling.scale_in_threshold_in_flight is not None:
        queries.append({
            "id": "inflight",
            "metric": {
                "namespace": METRIC_NAMESPACE,
                "metric_name": IN_FLIGHT_METRIC,
                "dimensions": scaling.metric_dimensions,
                # The minute's mean of the instances' 10 s peaks: what the in-flight policy tracks.
                "stat": "Average",
                "period": ALB_METRIC_PERIOD_SECONDS,
            },
        })
        low += f" AND FILL(inflight, 0) < {scaling.scale_in_threshold_in_flight:g}"
    queries.append({"id": "shrink", "expression": f"IF({low}, 1, 0)", "label": "scale in", "return_data": True})
    return queries


def scaling_properties(scaling: ScalingPlan) -> dict[str, Any]:
    """The plan as the component's inputs, so policies and reviews read one object."""
    return {
        "targetUtilization": scaling.target_utilization,
        "albTargetRequestsPerMinute": scaling.alb_target_requests_per_minute,
        "highResolutionMetric": scaling.high_resolution_metric,
        "inFlightTarget": scaling.in_flight_target,
        "scaleInCooldownSeconds": scaling.scale_in_cooldown_seconds,
        "scaleToZero": scaling.scale_to_zero,
        "idleMinutesBeforeZero": scaling.idle_minutes_before_zero,
        "warmPoolMinSize": scaling.warm_pool.min_size if scaling.warm_pool else None,
    }


def alert_actions(plan: ServedModelPlan) -> dict[str, list[str]]:
    """An alarm's notifications: the stack's alert topic on ALARM and on OK, or none."""
    topics = [plan.alert_topic_arn] if plan.alert_topic_arn else []
    return {"alarm_actions": topics, "ok_actions": topics}


def _alb_query(id_: str, metric: str, dimensions: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": id_,
        "metric": {
            "namespace": "AWS/ApplicationELB",
            "metric_name": metric,
            "dimensions": dimensions,
            "stat": "Sum",
            "period": ALB_METRIC_PERIOD_SECONDS,
        },
    }

"""Scale to zero and back for one served model: the activator Lambda and its alarms.

The flow (docs/scaling.md, "Scale to zero"):
- Idle: no requests to the served model's instances or its activator for
  `idleMinutesBeforeZero` minutes → the idle alarm invokes the activator, which points the
  served model's share of the listener rule at the activator's target group, then sets
  the group to zero.
- Wake: a request reaches the activator (a Lambda target behind the same rule), which
  raises the group to one, holds the request until an instance is ready (at most the
  endpoint's request timeout), forwards it and gives the route back.
- Fallback: if the activator cannot wake the group (throttled, failing), an alarm on the
  activator target group's requests while the group's desired capacity is 0 sets it to 1.

The Lambda's code is infra/activator/handler.py; its IAM role may only scale its own
group, rewrite its own endpoint's listener rule, and read what it must to find a ready instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.foundation import Foundation
from infra.components.iam import service_role
from infra.components.monitoring import ALB_NAMESPACE, AUTOSCALING_NAMESPACE, metric_query
from infra.components.permissions import activator_policy, ready_parameter_arn
from infra.components.security_rules import allow_tcp
from infra.components.served_model import ServedModel
from infra.plan.catalog import LOG_RETENTION_DAYS
from infra.plan.names import short_name
from infra.plan.stack import ServedModelPlan
from runtime.contract import READINESS_PATH, RUNTIME_PORT

HANDLER_SOURCE = Path(__file__).resolve().parent.parent / "activator" / "handler.py"
LAMBDA_RUNTIME = "python3.12"
# Lambda's hard limit on one invocation.
LAMBDA_MAX_TIMEOUT_SECONDS = 900
# Where the held requests of a cold start share readiness (infra/activator/handler.py): one
# SSM parameter per served model, named after its group.
READY_PARAMETER_PREFIX = "/kiln/activator/"
# The Lambda answers a moment after the request timeout, never before it.
LAMBDA_TIMEOUT_MARGIN_SECONDS = 10


class Activator(pulumi.ComponentResource):
    """Holds requests while a scale-to-zero served model has no ready instance."""

    def __init__(
        self,
        name: str,
        plan: ServedModelPlan,
        served_model: ServedModel,
        foundation: Foundation,
        route_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kiln:serving:Activator", name, {"servedModel": plan.resource_name}, opts)
        gateway, vpc_id, subnet_ids = foundation.gateway, foundation.vpc_id, foundation.subnet_ids
        child = pulumi.ResourceOptions(parent=self)
        tags = plan.tags
        ready_parameter = READY_PARAMETER_PREFIX + plan.group_name
        scaling = plan.scaling

        # Lambda targets have no VPC or port, so nothing here forces a replacement.
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            name=short_name(["kiln", plan.tags["kiln:stack"], plan.endpoint, plan.name, "wake"]),
            target_type="lambda",
            tags=tags,
            opts=child,
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=vpc_id, description="Kiln activator: held requests to its served model", tags=tags, opts=child
        )
        instances = gateway.instance_security_group
        ingress, egress = aws.vpc.SecurityGroupIngressRule, aws.vpc.SecurityGroupEgressRule
        allow_tcp(egress, f"{name}-to-instances", self.security_group, RUNTIME_PORT, child,
                  referenced_security_group_id=instances.id)
        if foundation.vpc_endpoints:
            # The stack's endpoints answer for the Auto Scaling, ELB, EC2 and SSM names VPC-wide.
            foundation.vpc_endpoints.admit(f"{name}-to-endpoints", self.security_group, child)
        else:
            # The Auto Scaling, ELB and EC2 APIs, through a NAT gateway or VPC endpoints.
            allow_tcp(egress, f"{name}-https-out", self.security_group, 443, child, cidr_ipv4="0.0.0.0/0")
        allow_tcp(ingress, f"{name}-instances-from-activator", instances, RUNTIME_PORT, child,
                  referenced_security_group_id=self.security_group.id)

        self.log_group = aws.cloudwatch.LogGroup(f"{name}-logs", retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child)
        self.role, self.role_policy = service_role(
            f"{name}-role",
            f"{name}-least-privilege",
            "lambda.amazonaws.com",
            # The rule's ARN makes the role policy wait for the rule, which the Lambda waits for in turn.
            pulumi.Output.all(served_model.group.arn, route_arn, self.log_group.arn).apply(
                lambda arns: activator_policy(*arns, ready_parameter_arn(arns[2], ready_parameter))
            ),
            tags,
            child,
        )

        self.function = aws.lambda_.Function(
            # Lambda takes only [a-zA-Z0-9-_] in a function name: no '.' from the resource name.
            f"{plan.lambda_safe_name}-activator",
            runtime=LAMBDA_RUNTIME,
            handler="handler.handle",
            role=self.role.arn,
            code=pulumi.AssetArchive({"handler.py": pulumi.FileAsset(str(HANDLER_SOURCE))}),
            timeout=lambda_timeout_seconds(plan.request_timeout_seconds),
            memory_size=128,
            environment={
                "variables": {
                    "KILN_GROUP_NAME": served_model.group.name,
                    "KILN_TARGET_GROUP_ARN": served_model.target_group.arn,
                    "KILN_ACTIVATOR_TARGET_GROUP_ARN": self.target_group.arn,
                    "KILN_LISTENER_ARN": gateway.listener.arn,
                    "KILN_REQUEST_TIMEOUT_SECONDS": str(activator_hold_seconds(plan.request_timeout_seconds)),
                    "KILN_READINESS_PATH": READINESS_PATH,
                    "KILN_PORT": str(RUNTIME_PORT),
                    "KILN_READY_PARAMETER": ready_parameter,
                }
            },
            vpc_config={"subnet_ids": subnet_ids, "security_group_ids": [self.security_group.id]},
            logging_config={"log_format": "Text", "log_group": self.log_group.name},
            tags=tags,
            # Creating a function in a VPC creates its network interfaces with the role's permissions.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role_policy]),
        )
        invoke_from_alb = aws.lambda_.Permission(
            # Autonamed statement ids take only [a-zA-Z0-9-_] too.
            f"{plan.lambda_safe_name}-from-alb",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="elasticloadbalancing.amazonaws.com",
            source_arn=self.target_group.arn,
            opts=child,
        )
        aws.lb.TargetGroupAttachment(
            f"{name}-target",
            target_group_arn=self.target_group.arn,
            target_id=self.function.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[invoke_from_alb]),
        )

        alb = {"LoadBalancer": gateway.load_balancer.arn_suffix}
        self.idle_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-idle",
            alarm_description=(
                f"{plan.resource_name}: no requests for {scaling.idle_minutes_before_zero} min; "
                "the activator takes the route and scales the group to zero"
            ),
            comparison_operator="LessThanOrEqualToThreshold",
            threshold=0,
            evaluation_periods=scaling.idle_minutes_before_zero,
            datapoints_to_alarm=scaling.idle_minutes_before_zero,
            # The ALB writes no data point for a minute without requests: that is idleness.
            treat_missing_data="breaching",
            metric_queries=[
                _request_count("served", {**alb, "TargetGroup": served_model.target_group.arn_suffix}),
                _request_count("held", {**alb, "TargetGroup": self.target_group.arn_suffix}),
                {"id": "requests", "expression": "FILL(served, 0) + FILL(held, 0)", "label": "requests", "return_data": True},
            ],
            alarm_actions=[self.function.arn],
            tags=tags,
            opts=child,
        )
        aws.lambda_.Permission(
            f"{plan.lambda_safe_name}-from-idle-alarm",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="lambda.alarms.cloudwatch.amazonaws.com",
            source_arn=self.idle_alarm.arn,
            opts=child,
        )

        self.wake_policy = aws.autoscaling.Policy(
            f"{name}-wake",
            autoscaling_group_name=served_model.group.name,
            policy_type="StepScaling",
            adjustment_type="ExactCapacity",
            step_adjustments=[{"scaling_adjustment": 1, "metric_interval_lower_bound": "0"}],
            estimated_instance_warmup=scaling.instance_warmup_seconds,
            opts=child,
        )
        self.wake_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-wake-fallback",
            alarm_description=(
                f"{plan.resource_name}: requests are waiting at the activator while the group is at zero; "
                "set it to one instance (fallback for an activator that could not)"
            ),
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=1,
            evaluation_periods=1,
            treat_missing_data="notBreaching",
            metric_queries=[
                _request_count("held", {**alb, "TargetGroup": self.target_group.arn_suffix}),
                metric_query("capacity", AUTOSCALING_NAMESPACE, "GroupDesiredCapacity",
                             {"AutoScalingGroupName": served_model.group.name}, "Maximum"),
                # Only while the group is at zero, so it never shrinks a group that has grown.
                {"id": "cold", "expression": "IF(FILL(held, 0) > 0 AND capacity < 1, 1, 0)", "label": "cold", "return_data": True},
            ],
            alarm_actions=[self.wake_policy.arn],
            tags=tags,
            opts=child,
        )
        self.register_outputs({"functionArn": self.function.arn, "targetGroupArn": self.target_group.arn})


def activator_hold_seconds(request_timeout_seconds: int) -> int:
    """How long the activator holds a request for a waking instance: the endpoint's request
    timeout, but never past what one Lambda invocation may run. Past 900 s Lambda stops the
    function and the ALB answers 502; holding at most 900 s less the margin, the activator
    answers its own 503 + Retry-After first (endpoints with longer timeouts get that sooner)."""
    return min(request_timeout_seconds, LAMBDA_MAX_TIMEOUT_SECONDS - LAMBDA_TIMEOUT_MARGIN_SECONDS)


def lambda_timeout_seconds(request_timeout_seconds: int) -> int:
    """The hold plus the margin to answer: within Lambda's 900 s by construction."""
    return activator_hold_seconds(request_timeout_seconds) + LAMBDA_TIMEOUT_MARGIN_SECONDS


def activators_for(
    served_models: dict[str, ServedModel],
    plans: list[ServedModelPlan],
    foundation: Foundation,
    route_arn: pulumi.Input[str],
    parent: pulumi.Resource,
) -> dict[str, Activator]:
    """One activator per scale-to-zero served model of an endpoint; `route_arn` is the
    endpoint's listener rule, the only rule the activators may rewrite."""
    return {
        plan.name: Activator(
            f"{plan.logical_name}-activator",
            plan,
            served_models[plan.name],
            foundation,
            route_arn,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for plan in plans
        if plan.scale_to_zero
    }


def route_target_group(served_model: ServedModel, activator: Activator | None) -> pulumi.Output[str]:
    """Where a served model's share of the rule points at deploy time.

    A scale-to-zero group starts at zero, so its share starts at the activator; the first
    request wakes it and the activator hands the share to the instances. A later `pulumi up`
    writes the activator back, which the next request undoes the same way.
    """
    return activator.target_group.arn if activator is not None else served_model.target_group.arn


def _request_count(id_: str, dimensions: dict[str, Any]) -> dict[str, Any]:
    return metric_query(id_, ALB_NAMESPACE, "RequestCount", dimensions, "Sum")

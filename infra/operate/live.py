"""Read a deployed stack's live state with boto3, finding everything from the stack's tags.

Autoscaling groups are found by their `kiln:stack` tag and told apart by `kiln:endpoint` and
`kiln:served-model`; each group names its target groups, its launch template version (whose
instance tags say the model and image it starts) and its instance refreshes; alarm names
start with their target group's name (infra/plan/alarms.py). Nothing is derived from what
the stack file would name today, so a stack that was renamed or half-deployed reads as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from infra.operate.state import (
    Activity,
    GroupState,
    Refresh,
    ServedModelStatus,
    ServingState,
    StackStatus,
    TargetGroupHealth,
    TargetHealth,
    serving_state,
)
from infra.plan.config import StackConfig
from infra.plan.tags import ENDPOINT_TAG, IMAGE_TAG, MODEL_TAG, SERVED_MODEL_TAG, STACK_TAG

# The last scaling activities shown per group.
ACTIVITIES_SHOWN = 3

ClientFactory = Callable[[str], Any]


def session_clients(session: boto3.session.Session, endpoint_url: str | None) -> ClientFactory:
    """Clients from one session, all pointed at `endpoint_url` when one is given (otherwise
    boto3's own resolution: AWS_ENDPOINT_URL, the profile's config, AWS)."""
    return lambda service: session.client(service, endpoint_url=endpoint_url)


def read_stack_status(stack: str, config: StackConfig, clients: ClientFactory) -> StackStatus:
    """Every served model the stack file declares, with the live state of its group (or
    NOT_READY when no group carries its tags)."""
    autoscaling = clients("autoscaling")
    groups = _tagged_groups(autoscaling, stack)
    elbv2, cloudwatch, ec2 = clients("elbv2"), clients("cloudwatch"), clients("ec2")
    statuses = []
    for endpoint in config.endpoints:
        for served in endpoint.served_models:
            group = groups.get((endpoint.name, served.name))
            if group is None:
                statuses.append(ServedModelStatus(endpoint.name, served.name, ServingState.NOT_READY, [
                    f"no autoscaling group tagged {STACK_TAG}={stack}, {ENDPOINT_TAG}={endpoint.name}, "
                    f"{SERVED_MODEL_TAG}={served.name}: not deployed (run `pulumi up --stack {stack}`)"]))
                continue
            state = _group_state(group, autoscaling, elbv2, cloudwatch, ec2)
            word, reasons = serving_state(state, served.scale_to_zero_enabled)
            statuses.append(ServedModelStatus(endpoint.name, served.name, word, reasons, state))
    return StackStatus(stack, config.region, statuses)


def _tagged_groups(autoscaling: Any, stack: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        Filters=[{"Name": f"tag:{STACK_TAG}", "Values": [stack]}])
    for page in pages:
        for group in page["AutoScalingGroups"]:
            tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", [])}
            if ENDPOINT_TAG in tags and SERVED_MODEL_TAG in tags:
                found[(tags[ENDPOINT_TAG], tags[SERVED_MODEL_TAG])] = group
    return found


def _group_state(group: dict[str, Any], autoscaling: Any, elbv2: Any, cloudwatch: Any, ec2: Any) -> GroupState:
    name = group["AutoScalingGroupName"]
    instances = group.get("Instances", [])
    target_groups = [_target_group_health(elbv2, arn) for arn in group.get("TargetGroupARNs", [])]
    model, image = _release(ec2, group.get("LaunchTemplate"))
    return GroupState(
        name=name,
        desired=group["DesiredCapacity"],
        minimum=group["MinSize"],
        maximum=group["MaxSize"],
        in_service=sum(1 for i in instances if i["LifecycleState"] == "InService"),
        pending=sum(1 for i in instances if i["LifecycleState"].startswith("Pending")),
        warm=len(autoscaling.describe_warm_pool(AutoScalingGroupName=name).get("Instances", []))
        if group.get("WarmPoolConfiguration") else 0,
        target_groups=target_groups,
        refresh=_latest_refresh(autoscaling, name),
        alarms_in_alarm=[alarm for tg in target_groups for alarm in _alarms_in_alarm(cloudwatch, tg.name)],
        activities=_activities(autoscaling, name),
        model=model,
        image=image,
    )


def _target_group_health(elbv2: Any, arn: str) -> TargetGroupHealth:
    described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    targets = [
        TargetHealth(d["Target"]["Id"], d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"),
                     d["TargetHealth"].get("Description"))
        for d in described
    ]
    # arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID
    return TargetGroupHealth(arn.split(":")[-1].split("/")[1], targets)


def _latest_refresh(autoscaling: Any, group: str) -> Refresh | None:
    refreshes = autoscaling.describe_instance_refreshes(AutoScalingGroupName=group, MaxRecords=1)["InstanceRefreshes"]
    if not refreshes:
        return None
    latest = refreshes[0]
    done = latest.get("PercentageComplete", 0)
    checkpoints = latest.get("Preferences", {}).get("CheckpointPercentages", [])
    return Refresh(
        id=latest["InstanceRefreshId"],
        status=latest["Status"],
        percentage_complete=done,
        status_reason=latest.get("StatusReason"),
        next_checkpoint=next((p for p in checkpoints if p > done), None),
        rollback_reason=latest.get("RollbackDetails", {}).get("RollbackReason"),
    )


def _alarms_in_alarm(cloudwatch: Any, target_group: str) -> list[tuple[str, str]]:
    """(name, reason) of this target group's alarms now in ALARM: every Kiln alarm of a served
    model is named from its target group (infra/plan/alarms.py)."""
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=target_group, StateValue="ALARM")
    return [(a["AlarmName"], a.get("StateReason", "")) for a in alarms["MetricAlarms"] + alarms.get("CompositeAlarms", [])]


def _activities(autoscaling: Any, group: str) -> list[Activity]:
    found = autoscaling.describe_scaling_activities(AutoScalingGroupName=group, MaxRecords=ACTIVITIES_SHOWN)
    return [Activity(a["StartTime"], a["StatusCode"], a.get("Description", ""), a.get("Cause"))
            for a in found["Activities"]]


def _release(ec2: Any, template: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The model and image the group's launch template version starts (its instance tags)."""
    if not template:
        return None, None
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateId=template["LaunchTemplateId"], Versions=[str(template["Version"])])["LaunchTemplateVersions"]
    if not versions:
        return None, None
    specifications = versions[0]["LaunchTemplateData"].get("TagSpecifications", [])
    tags = {tag["Key"]: tag["Value"] for spec in specifications if spec.get("ResourceType") == "instance"
            for tag in spec.get("Tags", [])}
    return tags.get(MODEL_TAG), tags.get(IMAGE_TAG)

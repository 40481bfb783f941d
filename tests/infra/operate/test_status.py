"""`kiln status` against moto's server: each served model's word read from crafted live states,
found by the stack's tags, with the reason a person acts on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

from infra.commands import status as status_module
from infra.commands.cli import main
from infra.rehearsal.local_aws import Credentials, LocalAws, local_aws
from tests.conftest import write_stack

STACK = "ops"
SERVED = ("ready", "broken", "rolling", "idle", "absent")
MODEL = "models:/scorer/7"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln-images@sha256:" + "ab" * 32
# What docs/operate.md says `kiln status` needs, and nothing more: every read below is made
# with these, IAM enforced.
READER_ACTIONS = ["autoscaling:Describe*", "elasticloadbalancing:DescribeTargetHealth",
                  "ec2:DescribeLaunchTemplateVersions", "cloudwatch:DescribeAlarms"]


def stack_file(directory: Path, served_models: tuple[str, ...]) -> Path:
    directory.mkdir()
    share = [100 // len(served_models)] * len(served_models)
    share[0] += 100 - sum(share)
    return write_stack(directory, {
        "aws:region": "us-east-1",
        "kiln:environment": "dev",
        "kiln:mlflowTrackingUri": "http://mlflow.internal:5000",
        "kiln:network": {"vpcId": "vpc-0a1b2c3d", "privateSubnetIds": ["subnet-0a1b2c3d", "subnet-0b1c2d3e"]},
        "kiln:endpoints": [{
            "name": "scorer",
            "servedModels": [{"name": name, "modelUri": MODEL, "computeType": "CPU_MEDIUM", "workloadSize": "Small",
                              "scaleToZeroEnabled": name == "idle"} for name in served_models],
            "trafficConfig": {"routes": [{"servedModelName": name, "trafficPercentage": pct}
                                         for name, pct in zip(served_models, share, strict=True)]},
        }],
    }, stack=STACK)


def deploy(aws: LocalAws, served: str, subnets: list[str], vpc: str, desired: int) -> dict[str, str]:
    """What `pulumi up` leaves for one served model: a tagged group behind a target group,
    started from a launch template whose instance tags name the model and image."""
    ec2, elbv2, autoscaling = aws.client("ec2"), aws.client("elbv2"), aws.client("autoscaling")
    tg_name = f"kiln-{STACK}-scorer-{served}"
    target_group = elbv2.create_target_group(Name=tg_name, Protocol="HTTP", Port=8080, VpcId=vpc)["TargetGroups"][0]
    template = ec2.create_launch_template(LaunchTemplateName=tg_name, LaunchTemplateData={
        "ImageId": "ami-12345678", "InstanceType": "m6i.large",
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [
            {"Key": "kiln:model", "Value": MODEL}, {"Key": "kiln:image", "Value": IMAGE}]}]})["LaunchTemplate"]
    tags = {"kiln:stack": STACK, "kiln:endpoint": "scorer", "kiln:served-model": served}
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=tg_name, MinSize=0, MaxSize=2, DesiredCapacity=desired, VPCZoneIdentifier=",".join(subnets),
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"},
        TargetGroupARNs=[target_group["TargetGroupArn"]],
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()])
    instances = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[tg_name])["AutoScalingGroups"][0]["Instances"]
    return {"group": tg_name, "target_group": tg_name, "instances": [i["InstanceId"] for i in instances]}


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[LocalAws, dict[str, dict[str, Any]], dict[str, Credentials]]]:
    with local_aws() as (aws, enforce):
        ec2 = aws.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"]["SubnetId"]
                   for i, z in enumerate("ab")]
        deployed = {served: deploy(aws, served, subnets, vpc, 0 if served == "idle" else 1) for served in SERVED[:4]}
        # broken: its only instance stopped, so its target is not healthy (moto says why, as the ALB does).
        ec2.stop_instances(InstanceIds=deployed["broken"]["instances"])
        cloudwatch = aws.client("cloudwatch")
        alarm = f"{deployed['broken']['target_group']}-no-healthy-hosts"
        cloudwatch.put_metric_alarm(AlarmName=alarm, Namespace="AWS/ApplicationELB", MetricName="HealthyHostCount",
                                    Statistic="Minimum", Period=60, EvaluationPeriods=2, Threshold=1,
                                    ComparisonOperator="LessThanThreshold")
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="0 healthy hosts for 2 minutes")
        # ready: a warm pool too, so its warm instances are read (moto keeps none in it).
        aws.client("autoscaling").put_warm_pool(AutoScalingGroupName=deployed["ready"]["group"], MinSize=1,
                                                PoolState="Stopped")
        # rolling: an instance refresh half-way to its first checkpoint.
        aws.client("autoscaling").start_instance_refresh(
            AutoScalingGroupName=deployed["rolling"]["group"],
            Preferences={"MinHealthyPercentage": 100, "AutoRollback": True, "CheckpointPercentages": [50, 100]})
        readers = {"reader": reader(aws, "kiln-status-reader", READER_ACTIONS),
                   "without-alarms": reader(aws, "kiln-status-no-alarms", READER_ACTIONS[:-1])}
        enforce()
        yield aws, deployed, readers


def reader(aws: LocalAws, name: str, actions: list[str]) -> Credentials:
    """A user allowed `actions` on every resource, and nothing else."""
    iam = aws.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="status", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def kiln_status(account: tuple[LocalAws, Any, dict[str, Credentials]], path: Path, *options: str,
                as_user: str = "reader") -> Result:
    aws, _, readers = account
    env = {**aws.process_env(readers[as_user]), "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    return CliRunner().invoke(main, ["status", str(path), *options], env=env)


def test_each_served_model_gets_its_word_and_why(account, tmp_path: Path) -> None:
    _, deployed, _ = account
    result = kiln_status(account, stack_file(tmp_path / "all", SERVED), "--json")
    status = json.loads(result.output)
    by_name = {s["servedModel"]: s for s in status["servedModels"]}

    assert result.exit_code == 1
    assert {name: s["state"] for name, s in by_name.items()} == {
        "ready": "READY", "broken": "NOT_READY", "rolling": "UPDATING", "idle": "SCALED_TO_ZERO", "absent": "NOT_READY"}
    [instance] = deployed["broken"]["instances"]
    assert by_name["broken"]["reasons"] == [
        f"{deployed['broken']['target_group']}: {instance} unused (Target.InvalidState: Target is in the stopped state)"]
    assert by_name["broken"]["group"]["alarmsInAlarm"] == [
        [f"{deployed['broken']['target_group']}-no-healthy-hosts", "0 healthy hosts for 2 minutes"]]
    assert by_name["rolling"]["reasons"] == ["instance refresh InProgress 0 %, next checkpoint at 50 %"]
    assert "activator wakes the group" in by_name["idle"]["reasons"][0]
    assert by_name["absent"]["reasons"][0].startswith("no autoscaling group tagged kiln:stack=ops, kiln:endpoint=scorer, "
                                                      "kiln:served-model=absent")
    ready = by_name["ready"]["group"]
    assert (ready["desired"], ready["inService"], ready["model"], ready["image"]) == (1, 1, MODEL, IMAGE)


def test_the_table_names_each_state_and_the_alarm_in_alarm(account, tmp_path: Path) -> None:
    _, deployed, _ = account
    result = kiln_status(account, stack_file(tmp_path / "all", SERVED))

    assert result.exit_code == 1
    for word in ("READY", "NOT_READY", "UPDATING", "SCALED_TO_ZERO"):
        assert word in result.output
    assert f"alarm {deployed['broken']['target_group']}-no-healthy-hosts in ALARM: 0 healthy hosts" in result.output


def test_exit_0_when_every_served_model_answers(account, tmp_path: Path) -> None:
    result = kiln_status(account, stack_file(tmp_path / "answering", ("ready", "idle")), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["answering"] is True


def test_watch_reads_until_the_rollback_ends(account, tmp_path: Path) -> None:
    """--watch reads again until every served model answers: a refresh that is rolled back
    stays UPDATING (with AWS's reason) until it is no longer active."""
    aws, deployed, _ = account
    group = deployed["rolling"]["group"]
    path = stack_file(tmp_path / "rolling", ("rolling",))
    aws.client("autoscaling").rollback_instance_refresh(AutoScalingGroupName=group)
    first = json.loads(kiln_status(account, path, "--json").output)["servedModels"][0]
    assert first["reasons"] == ["instance refresh RollbackInProgress 0 %, next checkpoint at 50 %; Rollback initiated by user"]

    # Long enough for a second read on a loaded machine (a read takes well under a second alone).
    watched = kiln_status(account, path, "--json", "--watch", "--interval", "0.2", "--timeout", "10")

    reads = [json.loads(line) for line in watched.output.splitlines()]
    assert watched.exit_code == 1 and len(reads) >= 2
    assert {read["servedModels"][0]["state"] for read in reads} == {"UPDATING"}


def test_watch_stops_once_the_targets_turn_healthy(account, tmp_path: Path, monkeypatch) -> None:
    aws, deployed, _ = account
    ec2 = aws.client("ec2")
    path = stack_file(tmp_path / "broken", ("broken",))

    def heal_then_wait(seconds: float) -> None:
        """The instance starts while the watch waits after its first read, however long that read
        took (a timer raced a slow machine)."""
        if not any(i["State"]["Name"] == "running" for r in ec2.describe_instances(
                InstanceIds=deployed["broken"]["instances"])["Reservations"] for i in r["Instances"]):
            ec2.start_instances(InstanceIds=deployed["broken"]["instances"])
        time.sleep(seconds)

    monkeypatch.setattr(status_module, "time", SimpleNamespace(
        sleep=heal_then_wait, monotonic=time.monotonic, strftime=time.strftime))
    watched = kiln_status(account, path, "--json", "--watch", "--interval", "0.5", "--timeout", "60")

    states = [json.loads(line)["servedModels"][0]["state"] for line in watched.output.splitlines()]
    assert watched.exit_code == 0
    assert states[0] == "NOT_READY" and states[-1] == "READY"


def test_a_caller_without_a_describe_permission_is_a_clear_exit_2(account, tmp_path: Path) -> None:
    result = kiln_status(account, stack_file(tmp_path / "denied", ("broken",)), as_user="without-alarms")

    assert result.exit_code == 2
    assert "error: AWS refused to describe the stack" in result.output
    assert "DescribeAlarms" in result.output
    assert "Traceback" not in result.output


def test_a_timeout_without_watch_is_refused_rather_than_read_once(tmp_path: Path) -> None:
    """`kiln status prod --timeout 1800` in a pipeline would otherwise read once and fail the
    rollout it meant to wait for."""
    result = CliRunner().invoke(main, ["status", str(stack_file(tmp_path / "once", ("ready",))), "--timeout", "1800"])

    assert result.exit_code == 2
    assert "--interval and --timeout apply to --watch" in result.output


def test_no_credentials_is_a_clear_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    env = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": None}
    result = CliRunner().invoke(main, ["status", str(stack_file(tmp_path / "offline", ("ready",))),
                                       "--endpoint-url", "http://127.0.0.1:9"], env=env)

    assert result.exit_code == 2
    assert "error: no AWS credentials: `kiln status` reads the deployed stack" in result.output
    assert "Traceback" not in result.output


def test_a_bad_stack_file_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    path = stack_file(tmp_path / "bad", ("ready",))
    path.write_text(path.read_text().replace("computeType: CPU_MEDIUM", "computeType: CPU_TINY"))

    result = CliRunner().invoke(main, ["status", str(path)])

    assert result.exit_code == 2
    assert "endpoints[0].servedModels[0].computeType: unknown compute type 'CPU_TINY'" in result.output

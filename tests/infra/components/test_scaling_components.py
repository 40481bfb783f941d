"""The scaling resources the program creates in each mode, read from a run under mocks."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from infra.plan.catalog import (
    CPU_MODEL_LOAD_TIMEOUT_SECONDS,
    CPU_START_SECONDS,
    GPU_MODEL_LOAD_TIMEOUT_SECONDS,
    GPU_START_SECONDS,
    PROFILES,
    ComputeType,
)
from infra.plan.config import ConfigError, parse_stack_config, values_from_stack_config
from infra.plan.launch_timing import image_pull_seconds, instance_warmup_seconds
from infra.preview.program import ProgramRun, Registration, run_program
from tests.conftest import stack_config
from tests.infra.test_program import user_data

POLICY = "aws:autoscaling/policy:Policy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
GROUP = "aws:autoscaling/group:Group"


def with_scaling(config: dict[str, Any], scaling: dict[str, Any], endpoint: int = 0, served: int = 0) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    changed["kiln:endpoints"][endpoint]["servedModels"][served]["scaling"] = scaling
    return changed


@pytest.fixture(scope="module")
def runs(example_store) -> dict[str, ProgramRun]:
    dev = stack_config("dev", example_store)
    tuned = with_scaling(
        dev,
        {
            "highResolutionMetric": False,
            "scaleInCooldownSeconds": 600,
            "idleMinutesBeforeZero": 45,
            "targetUtilization": 0.5,
            "warmPool": {"minSize": 2},
        },
    )
    return {
        "prod": run_program("prod", stack_config("prod", example_store), preview=False),
        "dev": run_program("dev", dev, preview=False),
        "tuned": run_program("dev", tuned, preview=False),
    }


def named(run: ProgramRun, type_: str, name: str) -> Registration:
    return next(r for r in run.registrations if r.type == type_ and r.name == name)


def names(run: ProgramRun, type_: str) -> set[str]:
    return {r.name for r in run.of_type(type_)}


def test_requests_per_target_policy_uses_the_planner_target_and_leaves_scale_in_to_the_window(runs) -> None:
    policy = named(runs["prod"], POLICY, "fraud-scorer.champion-requests-per-target").inputs["targetTrackingConfiguration"]

    # fraud-scorer.champion: 3 workers × 1000/40 ms × 60 × 0.7
    assert policy["targetValue"] == 3150
    assert policy["predefinedMetricSpecification"]["predefinedMetricType"] == "ALBRequestCountPerTarget"
    assert policy["disableScaleIn"] is True


def test_high_resolution_policy_tracks_in_flight_requests_every_10_seconds(runs) -> None:
    policy = named(runs["prod"], POLICY, "fraud-scorer.champion-in-flight").inputs["targetTrackingConfiguration"]
    metric = policy["customizedMetricSpecification"]

    assert (metric["namespace"], metric["metricName"], metric["period"], metric["statistic"]) == (
        "Kiln/Serving", "InFlightRequests", 10, "Average",
    )
    assert {d["name"]: d["value"] for d in metric["metricDimensions"]} == {
        "Stack": "prod", "Endpoint": "fraud-scorer", "ServedModel": "champion",
    }
    assert policy["targetValue"] == pytest.approx(3 * 0.7)
    assert policy["disableScaleIn"] is True


def test_without_the_high_resolution_metric_only_the_alb_policy_scales_out(runs) -> None:
    run = runs["tuned"]

    assert "fraud-scorer.champion-in-flight" not in names(run, POLICY)
    target = named(run, POLICY, "fraud-scorer.champion-requests-per-target").inputs["targetTrackingConfiguration"]
    # 1 worker × 1000/100 ms × 60 × 0.5 (the tuned target utilisation)
    assert target["targetValue"] == 300
    assert "KILN_METRIC_DIMENSIONS" not in user_data(run, "fraud-scorer.champion")


def test_scale_in_removes_one_instance_per_window_and_never_goes_below_one(runs) -> None:
    run = runs["prod"]
    policy = named(run, POLICY, "fraud-scorer.champion-scale-in").inputs
    alarm = named(run, ALARM, "fraud-scorer.champion-scale-in").inputs
    [shrink] = [q for q in alarm["metricQueries"] if q.get("returnData")]

    assert (policy["policyType"], policy["scalingAdjustment"], policy["cooldown"]) == ("SimpleScaling", -1, 300)
    assert (alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (5, 5)
    # floor is the group minimum (3); thresholds half the 3150 requests target and half the
    # 2.1 in-flight target (3 workers × 0.7)
    assert shrink["expression"] == "IF(capacity > 3 AND FILL(load, 0) < 1575 AND FILL(inflight, 0) < 1.05, 1, 0)"
    assert alarm["alarmActions"] == [run.named("fraud-scorer.champion-scale-in").outputs["arn"]]


def test_scale_in_needs_the_in_flight_metric_low_too_so_a_slow_model_does_not_flap(runs) -> None:
    """A separate scale-in policy is not blocked by target tracking: on requests alone, a model
    slower than planned loses the instance the in-flight policy adds back (simulated in
    tests/infra/simulator)."""
    alarm = named(runs["prod"], ALARM, "fraud-scorer.champion-scale-in").inputs
    [in_flight] = [q for q in alarm["metricQueries"] if q["id"] == "inflight"]
    without_metric = named(runs["tuned"], ALARM, "fraud-scorer.champion-scale-in").inputs

    assert in_flight["metric"]["namespace"] == "Kiln/Serving"
    assert in_flight["metric"]["metricName"] == "InFlightRequests"
    assert in_flight["metric"]["dimensions"] == {"Stack": "prod", "Endpoint": "fraud-scorer", "ServedModel": "champion"}
    assert (in_flight["metric"]["stat"], in_flight["metric"]["period"]) == ("Average", 60)
    # highResolutionMetric off: nothing publishes in flight, so the alarm reads requests only.
    assert "inflight" not in json.dumps(without_metric["metricQueries"])


def test_configured_scale_in_window_sets_cooldown_and_alarm_length(runs) -> None:
    run = runs["tuned"]

    assert named(run, POLICY, "fraud-scorer.champion-scale-in").inputs["cooldown"] == 600
    assert named(run, ALARM, "fraud-scorer.champion-scale-in").inputs["evaluationPeriods"] == 10


def test_instance_refresh_launches_before_terminating_with_checkpoints_and_rollback(runs) -> None:
    run = runs["prod"]
    group = named(run, GROUP, "fraud-scorer.champion-asg").inputs
    preferences = group["instanceRefresh"]["preferences"]
    alarm = named(run, ALARM, "fraud-scorer.champion-rollout-5xx").inputs

    assert group["instanceRefresh"]["strategy"] == "Rolling"
    assert (preferences["minHealthyPercentage"], preferences["maxHealthyPercentage"]) == (100, 200)
    assert preferences["autoRollback"] is True
    assert (preferences["checkpointPercentages"], preferences["checkpointDelay"]) == ([50, 100], "300")
    assert preferences["instanceWarmup"] == str(instance_warmup_seconds())
    assert preferences["alarmSpecification"]["alarms"] == [alarm["name"]]
    assert "HTTPCode_Target_5XX_Count" in json.dumps(alarm["metricQueries"])


def test_warmup_is_what_remains_of_the_planned_ready_time_after_in_service(runs) -> None:
    """AWS counts the warm-up from InService, which the launch hook holds back until the runtime
    answers /ping: what remains is the ALB's health checks and one in-flight period, for CPU and
    GPU alike. The old warm-up (the 300 s / 2,100 s grace) kept ready instances out of the metric
    and blocked scale-in for minutes; the hook, not the warm-up, allows for the slow load."""
    for name, gpu in (("fraud-scorer.champion-asg", False), ("ticket-router.champion-asg", True)):
        group = named(runs["prod"], GROUP, name).inputs
        grace = GPU_START_SECONDS + GPU_MODEL_LOAD_TIMEOUT_SECONDS if gpu else CPU_START_SECONDS + CPU_MODEL_LOAD_TIMEOUT_SECONDS

        assert group["defaultInstanceWarmup"] == 2 * 10 + 10, name
        assert group["instanceRefresh"]["preferences"]["instanceWarmup"] == "30", name
        assert group["initialLifecycleHooks"][0]["heartbeatTimeout"] == grace, name
        assert group["healthCheckGracePeriod"] == grace, name
    for policy in runs["prod"].of_type(POLICY):
        if policy.inputs["policyType"] == "TargetTrackingScaling":
            assert policy.inputs["estimatedInstanceWarmup"] == 30, policy.name


def test_gpu_root_volume_gets_the_throughput_to_write_its_image(runs) -> None:
    """A ~10 GiB GPU image at gp3's 125 MiB/s baseline is over 80 s of disk writes alone."""
    def root(name: str) -> dict[str, Any]:
        template = next(r for r in runs["prod"].of_type("aws:ec2/launchTemplate:LaunchTemplate") if r.name == name)
        return template.inputs["blockDeviceMappings"][0]["ebs"]

    gpu, cpu = root("ticket-router.champion-lt"), root("fraud-scorer.champion-lt")

    assert gpu["throughput"] == 350  # ceil(10 GiB × 1024 / 30 s / 25) × 25 MiB/s
    assert "throughput" not in cpu
    assert image_pull_seconds(PROFILES[ComputeType.GPU_MEDIUM]) < 10 * 1024 / 125


def test_warm_pool_keeps_stopped_instances_and_reuses_them_on_scale_in(runs) -> None:
    group = named(runs["tuned"], GROUP, "fraud-scorer.champion-asg").inputs

    assert group["warmPool"] == {"poolState": "Stopped", "minSize": 2, "instanceReusePolicy": {"reuseOnScaleIn": True}}
    assert "WarmPoolWarmedCapacity" in group["enabledMetrics"]


def test_groups_without_a_warm_pool_have_none(runs) -> None:
    # prod gives only its GPU model a pool.
    pools = {group.name: group.inputs.get("warmPool") for group in runs["prod"].of_type(GROUP)}

    assert pools.pop("ticket-router.champion-asg")["minSize"] == 1
    assert pools and set(pools.values()) == {None}


def test_scale_to_zero_routes_the_served_model_to_its_activator(runs) -> None:
    run = runs["dev"]
    rule = named(run, "aws:lb/listenerRule:ListenerRule", "fraud-scorer-route").inputs
    activator_group = named(run, "aws:lb/targetGroup:TargetGroup", "fraud-scorer.champion-activator-tg")
    attachment = named(run, "aws:lb/targetGroupAttachment:TargetGroupAttachment", "fraud-scorer.champion-activator-target")
    function = named(run, "aws:lambda/function:Function", "fraud-scorer_champion-activator")

    assert rule["actions"][0]["forward"]["targetGroups"] == [{"arn": activator_group.outputs["arn"], "weight": 100}]
    assert activator_group.inputs["targetType"] == "lambda"
    assert attachment.inputs["targetId"] == function.outputs["arn"]


def test_activator_holds_requests_for_the_endpoint_request_timeout(runs) -> None:
    run = runs["dev"]
    function = named(run, "aws:lambda/function:Function", "fraud-scorer_champion-activator").inputs
    group = named(run, GROUP, "fraud-scorer.champion-asg")
    served_group = named(run, "aws:lb/targetGroup:TargetGroup", "fraud-scorer.champion-tg")
    env = function["environment"]["variables"]

    assert function["handler"] == "handler.handle"
    assert function["timeout"] == 597 + 10
    assert env["KILN_REQUEST_TIMEOUT_SECONDS"] == "597"
    assert env["KILN_GROUP_NAME"] == group.outputs["name"]
    assert env["KILN_TARGET_GROUP_ARN"] == served_group.outputs["arn"]
    # The readiness the held requests share, and the role may touch only that parameter.
    assert env["KILN_READY_PARAMETER"] == "/kiln/activator/" + group.inputs["name"]
    role_policy = named(run, "aws:iam/rolePolicy:RolePolicy", "fraud-scorer.champion-activator-least-privilege")
    [share] = [s for s in json.loads(role_policy.inputs["policy"])["Statement"] if s["Sid"] == "ShareReadiness"]
    assert share["Resource"].endswith(":parameter/kiln/activator/" + group.inputs["name"])


def test_activator_role_may_scale_only_its_group_and_rewrite_only_its_endpoints_rule(runs) -> None:
    run = runs["dev"]
    role_policy = named(run, "aws:iam/rolePolicy:RolePolicy", "fraud-scorer.champion-activator-least-privilege")
    policy = json.loads(role_policy.inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    group = named(run, GROUP, "fraud-scorer.champion-asg")
    route = named(run, "aws:lb/listenerRule:ListenerRule", "fraud-scorer-route")

    assert by_sid["ScaleOwnGroup"] == {
        "Sid": "ScaleOwnGroup", "Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"], "Resource": group.outputs["arn"],
    }
    assert by_sid["RouteOwnRule"] == {
        "Sid": "RouteOwnRule", "Effect": "Allow", "Action": ["elasticloadbalancing:ModifyRule"], "Resource": route.outputs["arn"],
    }
    # The rule's ARN exists only once the rule does: the policy (and so the Lambda) waits for it.
    assert route.urn in role_policy.dependencies
    unscoped = {a for s in policy["Statement"] if s["Resource"] == "*" for a in s["Action"]}
    # Unscoped: only reads, and the network-interface actions every VPC Lambda needs.
    assert {a for a in unscoped if not a.split(":")[1].startswith("Describe")} == {
        "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
    }


def test_idle_alarm_invokes_the_activator_after_the_idle_minutes(runs) -> None:
    run = runs["dev"]
    alarm = named(run, ALARM, "fraud-scorer.champion-activator-idle")
    function = named(run, "aws:lambda/function:Function", "fraud-scorer_champion-activator")
    permission = named(run, "aws:lambda/permission:Permission", "fraud-scorer_champion-from-idle-alarm").inputs

    assert (alarm.inputs["evaluationPeriods"], alarm.inputs["treatMissingData"]) == (30, "breaching")
    assert alarm.inputs["alarmActions"] == [function.outputs["arn"]]
    assert (permission["principal"], permission["sourceArn"]) == ("lambda.alarms.cloudwatch.amazonaws.com", alarm.outputs["arn"])
    assert named(runs["tuned"], ALARM, "fraud-scorer.champion-activator-idle").inputs["evaluationPeriods"] == 45


def test_wake_fallback_alarm_sets_a_cold_group_to_one_instance(runs) -> None:
    run = runs["dev"]
    alarm = named(run, ALARM, "fraud-scorer.champion-activator-wake-fallback").inputs
    policy = named(run, POLICY, "fraud-scorer.champion-activator-wake")
    [cold] = [q for q in alarm["metricQueries"] if q.get("returnData")]

    assert cold["expression"] == "IF(FILL(held, 0) > 0 AND capacity < 1, 1, 0)"
    assert alarm["alarmActions"] == [policy.outputs["arn"]]
    assert (policy.inputs["adjustmentType"], policy.inputs["stepAdjustments"][0]["scalingAdjustment"]) == ("ExactCapacity", 1)


def test_served_models_that_never_reach_zero_have_no_activator(runs) -> None:
    run = runs["prod"]

    assert not run.of_type("kiln:serving:Activator")
    assert not run.of_type("aws:lambda/function:Function")


def test_instance_role_may_put_metrics_only_in_the_kiln_namespace(runs) -> None:
    run = runs["prod"]
    policy = json.loads(
        next(r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "fraud-scorer.champion-least-privilege").inputs["policy"]
    )
    [metric] = [s for s in policy["Statement"] if s["Sid"] == "PublishInFlightMetric"]

    assert metric["Action"] == "cloudwatch:PutMetricData"
    assert metric["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Kiln/Serving"}}


def test_runtime_learns_the_metric_dimensions_from_its_environment(runs) -> None:
    script = user_data(runs["prod"], "fraud-scorer.champion")

    assert "\nKILN_METRIC_DIMENSIONS=Stack=prod,Endpoint=fraud-scorer,ServedModel=champion\n" in script



def heredoc(script: str, path: str) -> str:
    """The body of the heredoc the user data writes to `path`."""
    start = script.index(f"cat > {path} <<")
    marker = script[start:].split("<<", 1)[1].split("\n", 1)[0].strip("'")
    body_start = script.index("\n", start) + 1
    return script[body_start:script.index(f"\n{marker}\n", body_start)]


@pytest.mark.parametrize("run_name", ["tuned", "prod"])
def test_every_group_holds_a_launching_instance_until_its_runtime_is_ready(runs, run_name: str) -> None:
    for group in runs[run_name].of_type(GROUP):
        grace = group.inputs["healthCheckGracePeriod"]

        assert group.inputs["initialLifecycleHooks"] == [
            {"name": "kiln-runtime-ready", "lifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
             "heartbeatTimeout": grace, "defaultResult": "ABANDON"}
        ], group.name


def test_the_instance_completes_its_launch_action_only_after_ping_answers(runs) -> None:
    run = runs["tuned"]
    group = named(run, GROUP, "fraud-scorer.champion-asg").inputs
    ready = heredoc(user_data(run, "fraud-scorer.champion"), "/usr/local/sbin/kiln-ready")

    wait = ready.index("until [ \"$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ping)\" = 200 ]")
    complete = ready.index("aws autoscaling complete-lifecycle-action")
    assert wait < complete
    assert f'--auto-scaling-group-name "{group["name"]}" --lifecycle-hook-name "kiln-runtime-ready"' in ready[complete:]
    assert "--lifecycle-action-result CONTINUE" in ready[complete:]


def test_the_runtime_and_the_ready_report_start_at_every_boot(runs) -> None:
    """cloud-init runs user data at first boot only; a warm-pool instance is started again
    later, and its runtime exited 0 on the stop (which Docker's on-failure does not restart)."""
    script = user_data(runs["tuned"], "fraud-scorer.champion")
    runtime = heredoc(script, "/etc/systemd/system/kiln-runtime.service")
    ready = heredoc(script, "/etc/systemd/system/kiln-ready.service")

    assert not [line for line in script.splitlines() if "--restart" in line and not line.startswith("#")]
    assert "ExecStart=/usr/bin/docker start --attach kiln-runtime" in runtime
    assert script.index("docker create --name kiln-runtime") < script.index("systemctl enable --now --no-block")
    assert "ExecStart=/usr/local/sbin/kiln-ready" in ready and "After=kiln-runtime.service" in ready
    for unit in (runtime, ready):
        assert "WantedBy=multi-user.target" in unit
    assert "systemctl enable --now --no-block kiln-runtime.service kiln-ready.service" in script


def test_the_runtime_logs_to_cloudwatch_without_blocking_on_it(runs) -> None:
    """A log line per request: with CloudWatch slow, Docker's default blocking mode would stall
    the runtime's writes to stderr, and its event loop with them."""
    script = user_data(runs["prod"], "fraud-scorer.champion")
    lines = script[script.index("docker create --name kiln-runtime"):].splitlines()
    create = " ".join(lines[:next(i for i, line in enumerate(lines) if not line.endswith("\\")) + 1])

    assert "--log-driver awslogs" in create
    assert "--log-opt mode=non-blocking" in create and "--log-opt max-buffer-size=8m" in create


def test_rendered_user_data_is_valid_bash(runs, tmp_path) -> None:
    import subprocess

    for served_model in ("fraud-scorer.champion", "ticket-router.champion"):
        path = tmp_path / f"{served_model}.sh"
        path.write_text(user_data(runs["prod"], served_model))

        checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)

        assert checked.returncode == 0, checked.stderr


def test_instance_role_may_complete_lifecycle_actions_only_on_its_own_group(runs) -> None:
    run = runs["tuned"]
    group = named(run, GROUP, "fraud-scorer.champion-asg")
    policy = json.loads(named(run, "aws:iam/rolePolicy:RolePolicy", "fraud-scorer.champion-least-privilege").inputs["policy"])
    [complete] = [s for s in policy["Statement"] if "autoscaling:CompleteLifecycleAction" in s["Action"]]

    assert complete == {
        "Sid": "CompleteOwnLaunch", "Effect": "Allow", "Action": ["autoscaling:CompleteLifecycleAction"],
        "Resource": f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/{group.inputs['name']}",
    }
    assert group.inputs["name"] == "kiln-dev-fraud-scorer-champion"

def test_idle_minutes_without_scale_to_zero_is_refused_at_its_key(example_store) -> None:
    config = with_scaling(stack_config("prod", example_store), {"idleMinutesBeforeZero": 10})

    with pytest.raises(ConfigError) as error:
        parse_stack_config(values_from_stack_config(config, "prod"), "prod")

    assert error.value.problems == [
        "endpoints[0].servedModels[0].scaling.idleMinutesBeforeZero: only applies with scaleToZeroEnabled: true "
        "(remove it, or enable scale to zero)"
    ]


def test_scale_in_window_must_be_whole_minutes(example_store) -> None:
    config = with_scaling(stack_config("dev", example_store), {"scaleInCooldownSeconds": 90})

    with pytest.raises(ConfigError) as error:
        parse_stack_config(values_from_stack_config(config, "dev"), "dev")

    assert error.value.problems == [
        "endpoints[0].servedModels[0].scaling.scaleInCooldownSeconds: 90 is not a whole number of minutes; "
        "use a multiple of 60 (e.g. 60)"
    ]


def test_unknown_scaling_key_suggests_the_right_one(example_store) -> None:
    config = with_scaling(stack_config("dev", example_store), {"idleMinutesBeforeZer": 10})

    with pytest.raises(ConfigError, match="did you mean idleMinutesBeforeZero"):
        parse_stack_config(values_from_stack_config(config, "dev"), "dev")

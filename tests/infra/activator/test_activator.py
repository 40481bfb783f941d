"""The activator's logic against moto's ASG/ELBv2 server and a real local HTTP runtime.

The runtime stand-in follows the Kiln runtime's contract: /ping is 503 until the model is
ready, then 200; it turns ready after a set number of pings, so no test sleeps. The
activator's clock and sleep are a fake clock, so waiting out a request timeout is instant.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from infra.activator import handler as handler_module
from infra.activator.handler import Activator, Settings
from infra.components.activator import (
    LAMBDA_MAX_TIMEOUT_SECONDS,
    LAMBDA_TIMEOUT_MARGIN_SECONDS,
    activator_hold_seconds,
    lambda_timeout_seconds,
)
from tests.fakes import FakeClock, listener_on_new_load_balancer, moto_server
from tests.runtime_support import fraud_model_dir  # noqa: F401 (fixture)

REGION = "us-east-1"
PATH = "/serving-endpoints/fraud-scorer/invocations"


@dataclass
class Runtime:
    """A local HTTP server that answers like the Kiln runtime."""

    pings_until_ready: int
    busy_answers: int = 0  # how many invocations answer 429 (over the admission budget) first
    calls: list[str] = field(default_factory=list)
    pings: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"


def start_runtime(runtime: Runtime) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            runtime.calls.append(f"GET {self.path}")
            runtime.pings += 1
            ready = runtime.pings > runtime.pings_until_ready
            self._send(200 if ready else 503, {"status": "ready" if ready else "loading"})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            runtime.calls.append(f"POST {self.path}")
            if runtime.busy_answers > 0:
                runtime.busy_answers -= 1
                self._send(429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "all workers are busy"})
                return
            self._send(200, {"predictions": [len(body["inputs"])], "tenant": self.headers.get("X-Tenant")})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runtime.server = server
    return server


@pytest.fixture
def runtime_factory() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def make(pings_until_ready: int, busy_answers: int = 0) -> Runtime:
        runtime = Runtime(pings_until_ready, busy_answers)
        servers.append(start_runtime(runtime))
        return runtime

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    with moto_server() as endpoint:
        options = dict(
            endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        yield {name: boto3.client(name, **options) for name in ("ec2", "elbv2", "autoscaling")}


_counter = iter(range(10_000))


def served_model(aws: dict[str, Any], desired: int, routed_to_activator: bool) -> Settings:
    """A VPC, an ALB with a rule splitting 90/10 between this served model and another,
    and this served model's group with `desired` instances registered in its target group."""
    n = next(_counter)
    ec2, elbv2, autoscaling = aws["ec2"], aws["elbv2"], aws["autoscaling"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
        for i, zone in ((1, "a"), (2, "b"))
    ]

    def instance_group(name: str) -> str:
        return elbv2.create_target_group(Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance")[
            "TargetGroups"
        ][0]["TargetGroupArn"]

    served, other = instance_group(f"champion-{n}"), instance_group(f"challenger-{n}")
    wake = elbv2.create_target_group(Name=f"wake-{n}", TargetType="lambda")["TargetGroups"][0]["TargetGroupArn"]
    listener = listener_on_new_load_balancer(elbv2, f"lb-{n}", subnets)
    elbv2.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": [PATH]}],
        Actions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": wake if routed_to_activator else served, "Weight": 90},
                        {"TargetGroupArn": other, "Weight": 10},
                    ]
                },
            }
        ],
    )
    image = ec2.describe_images()["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"lt-{n}", LaunchTemplateData={"ImageId": image, "InstanceType": "c7i.2xlarge"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=f"group-{n}",
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[served],
    )
    return Settings(
        group_name=f"group-{n}",
        target_group_arn=served,
        activator_target_group_arn=wake,
        listener_arn=listener,
        request_timeout_seconds=60,
        poll_seconds=2,
    )


def activator(aws: dict[str, Any], settings: Settings, runtime: Runtime, clock: FakeClock) -> Activator:
    # moto's instances have no reachable address; every instance is the local runtime.
    return Activator(
        settings, aws["autoscaling"], aws["elbv2"], aws["ec2"],
        address_of=lambda instance_id: runtime.address, clock=clock, sleep=clock.sleep,
        jitter=lambda low, high: high,  # the top of each backoff step: deterministic waits
    )


def request(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:::targetgroup/wake"}},
        "httpMethod": "POST",
        "path": PATH,
        "queryStringParameters": {},
        "headers": {"content-type": "application/json", "x-tenant": "risk", "host": "internal-kiln.elb.amazonaws.com"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def desired_capacity(aws: dict[str, Any], settings: Settings) -> int:
    groups = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[settings.group_name])
    return groups["AutoScalingGroups"][0]["DesiredCapacity"]


def routes(aws: dict[str, Any], settings: Settings) -> dict[str, int]:
    rules = aws["elbv2"].describe_rules(ListenerArn=settings.listener_arn)["Rules"]
    [rule] = [r for r in rules if not r["IsDefault"]]
    return {g["TargetGroupArn"]: g["Weight"] for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}


def test_cold_request_wakes_the_group_waits_for_readiness_and_is_answered(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=0, routed_to_activator=True)
    runtime = runtime_factory(pings_until_ready=3)
    clock = FakeClock()

    response = activator(aws, settings, runtime, clock).handle_request(request({"inputs": [[1, 2], [3, 4]]}))

    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"predictions": [2], "tenant": "risk"}
    assert desired_capacity(aws, settings) == 1
    # No instance before waking; then three 503 pings, polls backing off, the 200 ping, the request.
    assert runtime.calls == ["GET /ping"] * 4 + [f"POST {PATH}"]
    assert clock.slept == [settings.poll_seconds, 2 * settings.poll_seconds, 4 * settings.poll_seconds]


def test_answered_request_gives_the_route_back_with_the_same_weights(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=0, routed_to_activator=True)
    runtime = runtime_factory(pings_until_ready=1)
    before = routes(aws, settings)

    activator(aws, settings, runtime, FakeClock()).handle_request(request({"inputs": [[1]]}))
    after = routes(aws, settings)

    assert before[settings.activator_target_group_arn] == 90
    assert settings.activator_target_group_arn not in after
    assert after[settings.target_group_arn] == 90
    assert sorted(after.values()) == [10, 90]


def test_request_not_ready_within_the_timeout_gets_503_and_the_route_stays(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=0, routed_to_activator=True)
    runtime = runtime_factory(pings_until_ready=10_000)
    clock = FakeClock()

    response = activator(aws, settings, runtime, clock).handle_request(request({"inputs": [[1]]}))

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert response["headers"]["Retry-After"] == "30"
    # It held the request for the request timeout less the forwarding margin, no longer.
    assert clock.now == pytest.approx(settings.request_timeout_seconds - 5)
    assert settings.activator_target_group_arn in routes(aws, settings)
    assert desired_capacity(aws, settings) == 1
    assert not any(call.startswith("POST") for call in runtime.calls)


def test_ready_group_is_forwarded_to_without_waking_or_waiting(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=2, routed_to_activator=True)
    runtime = runtime_factory(pings_until_ready=0)
    clock = FakeClock()

    response = activator(aws, settings, runtime, clock).handle_request(request({"inputs": [[1], [2], [3]]}))

    assert response["statusCode"] == 200
    assert clock.slept == []
    assert desired_capacity(aws, settings) == 2
    assert settings.target_group_arn in routes(aws, settings)


def test_idle_alarm_takes_the_route_before_scaling_to_zero(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=1, routed_to_activator=False)
    runtime = runtime_factory(pings_until_ready=0)
    alarm = {"source": "aws.cloudwatch", "alarmData": {"alarmName": "idle", "state": {"value": "ALARM"}}}

    result = activator(aws, settings, runtime, FakeClock()).handle_alarm(alarm)

    assert result == {"action": "slept", "routeTaken": True}
    assert routes(aws, settings)[settings.activator_target_group_arn] == 90
    assert desired_capacity(aws, settings) == 0


def test_alarm_returning_to_ok_changes_nothing(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=1, routed_to_activator=False)
    runtime = runtime_factory(pings_until_ready=0)
    alarm = {"source": "aws.cloudwatch", "alarmData": {"alarmName": "idle", "state": {"value": "OK"}}}

    result = activator(aws, settings, runtime, FakeClock()).handle_alarm(alarm)

    assert result["action"] == "none"
    assert desired_capacity(aws, settings) == 1
    assert settings.target_group_arn in routes(aws, settings)


def test_settings_come_from_the_lambda_environment() -> None:
    settings = Settings.from_environment(
        {
            "KILN_GROUP_NAME": "g",
            "KILN_TARGET_GROUP_ARN": "tg",
            "KILN_ACTIVATOR_TARGET_GROUP_ARN": "wake",
            "KILN_LISTENER_ARN": "listener",
            "KILN_REQUEST_TIMEOUT_SECONDS": "597",
        }
    )

    assert (settings.request_timeout_seconds, settings.readiness_path, settings.port) == (597.0, "/ping", 8080)


def test_request_held_through_a_busy_instance_is_answered_once_a_worker_frees(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=0, routed_to_activator=True)
    runtime = runtime_factory(pings_until_ready=1, busy_answers=2)
    clock = FakeClock()

    response = activator(aws, settings, runtime, clock).handle_request(request({"inputs": [[1]]}))

    assert response["statusCode"] == 200
    assert runtime.calls.count(f"POST {PATH}") == 3
    assert clock.slept == [settings.poll_seconds] * 3  # one wait for readiness, two for a free worker


def test_instance_busy_until_the_deadline_gets_its_own_429_back(aws, runtime_factory) -> None:
    settings = served_model(aws, desired=0, routed_to_activator=True)
    runtime = runtime_factory(pings_until_ready=0, busy_answers=10_000)
    clock = FakeClock()

    response = activator(aws, settings, runtime, clock).handle_request(request({"inputs": [[1]]}))

    assert response["statusCode"] == 429
    assert json.loads(response["body"])["message"] == "all workers are busy"
    assert clock.now <= settings.request_timeout_seconds - 5


def test_cold_request_is_held_until_the_real_kiln_runtime_is_ready_and_gets_its_prediction(
    aws, tmp_path, fraud_model_dir, monkeypatch  # noqa: F811 (fixture)
) -> None:
    """The same wake, with the real runtime (`python -m runtime`) as the woken
    instance: the activator must see its 503s while the model loads and forward only after."""
    import dataclasses
    import time

    from models.artifacts import tree_digest
    from tests.runtime_support import start_runtime

    settings = dataclasses.replace(served_model(aws, desired=0, routed_to_activator=True), poll_seconds=0.2)
    runtime = start_runtime(
        tmp_path, "woken", KILN_MODEL_URI=str(fraud_model_dir), KILN_MODEL_DIGEST=tree_digest(fraud_model_dir)
    )
    address = runtime.url.removeprefix("http://")
    pings: list[int] = []
    answers_ready = handler_module._answers_ready

    def watched_ready(url: str) -> bool:
        ready = answers_ready(url)
        pings.append(200 if ready else 503)
        return ready

    monkeypatch.setattr(handler_module, "_answers_ready", watched_ready)

    woken = Activator(
        settings, aws["autoscaling"], aws["elbv2"], aws["ec2"], address_of=lambda instance_id: address,
        clock=time.monotonic, sleep=time.sleep,
    )
    body = {"dataframe_split": {"columns": ["amount", "merchant_risk", "hour", "card_age_days"],
                                "data": [[120.0, 0.7, 3.0, 40.0], [5.0, 0.1, 14.0, 1500.0]]}}
    try:
        response = woken.handle_request(request(body))
    finally:
        runtime.stop()

    assert response["statusCode"] == 200, response["body"]
    assert len(json.loads(response["body"])["predictions"]) == 2
    assert pings[0] == 503 and pings[-1] == 200  # held while the model loaded, forwarded once ready
    assert desired_capacity(aws, settings) == 1


@pytest.mark.parametrize("request_timeout", [1, 597, 890, 891, 900, 3995])
def test_the_activator_answers_before_lambda_stops_it(request_timeout: int) -> None:
    """Lambda stops an invocation at 900 s (the ALB then answers 502); the activator's hold,
    which its handler enforces as the request timeout, ends early enough to send 503 + Retry-After."""
    hold = activator_hold_seconds(request_timeout)
    function_timeout = lambda_timeout_seconds(request_timeout)

    assert function_timeout <= LAMBDA_MAX_TIMEOUT_SECONDS
    assert hold + LAMBDA_TIMEOUT_MARGIN_SECONDS <= function_timeout
    assert hold == min(request_timeout, LAMBDA_MAX_TIMEOUT_SECONDS - LAMBDA_TIMEOUT_MARGIN_SECONDS)

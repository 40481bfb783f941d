"""The activator Lambda as the platform calls it: `handle(event, context)` with an ALB
Lambda-target request or a CloudWatch alarm state change, against moto's server.

Moto's VPC here is 127.0.0.0/16, so an instance's private IP is a loopback address: when
the group launches an instance, the test starts a runtime stand-in on that address and
the Kiln runtime port, and the activator finds it the way it does in AWS (target health,
then the instance's private IP). Every AWS call that changes something and every request
an instance sees go into one log, in order, so tests assert the order of side effects:
the route is handed back only after an instance answered, and taken before the group
goes to zero. The activator's clock and sleep are a FakeClock, so nothing really waits.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest

from infra.activator import handler as handler_module
from infra.activator.handler import Activator, Settings, handle
from infra.local.stack import free_port
from tests.fakes import FakeClock, listener_on_new_load_balancer, moto_server

REGION = "us-east-1"
PATH = "/serving-endpoints/fraud-scorer/invocations"
IMAGE_ID = "ami-0abcdef1234567890"
WAKE_TARGET_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/kiln-prod-fraud-wake/6d0ecf831eec9f09"


# --- the cloud: moto, a VPC on loopback, one ALB listener shared by every test's rule ---------
@dataclass
class Cloud:
    endpoint: str
    port: int  # the runtime port every instance listens on (KILN_PORT)
    clients: dict[str, Any]  # unobserved clients for arranging and reading state
    session: Any  # the activator's boto3 session: its calls are reported to the current world
    subnet: str
    vpc: str
    other: str  # the other served model's target group, sharing each rule 90/10
    listener: str
    template: str
    token: str  # moto's state lives as long as the process: names carry this server's token
    counter: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))
    world: World | None = None

    def observed(self, name: str) -> Any:
        return self.session.client(name, endpoint_url=self.endpoint)


def client_options(endpoint: str) -> dict[str, str]:
    return {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    token = uuid.uuid4().hex[:6]
    with moto_server() as endpoint:
        clients = {name: boto3.client(name, **client_options(endpoint)) for name in ("ec2", "elbv2", "autoscaling")}
        ec2, elbv2 = clients["ec2"], clients["elbv2"]
        vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
            for cidr, zone in (("127.0.0.0/20", "a"), ("127.0.16.0/20", "b"))
        ]
        listener = listener_on_new_load_balancer(elbv2, f"kiln-{token}", subnets)
        template = ec2.create_launch_template(
            LaunchTemplateName=f"kiln-{token}", LaunchTemplateData={"ImageId": IMAGE_ID, "InstanceType": "c7i.2xlarge"}
        )["LaunchTemplate"]["LaunchTemplateId"]
        # One session for every test (loading service models per test costs seconds); its
        # hooks report to whichever world is current.
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        other = elbv2.create_target_group(Name=f"challenger-{token}", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance")
        other_arn = other["TargetGroups"][0]["TargetGroupArn"]
        cloud = Cloud(endpoint, free_port(), clients, session, subnets[0], vpc, other_arn, listener, template, token)
        session.events.register("before-parameter-build", lambda **kwargs: cloud.world and cloud.world.record(**kwargs))
        session.events.register("after-call", lambda **kwargs: cloud.world and cloud.world.after_call(**kwargs))
        yield cloud


# --- instances: a runtime stand-in on each instance's private address ------------------------
@dataclass
class Behaviour:
    """How one instance's runtime answers, following the Kiln runtime's contract."""

    pings_until_ready: int = 0  # /ping answers 503 this many times (model loading), then 200
    busy_answers: int = 0  # invocations answered 429 (over the runtime's admission budget) first
    reply: tuple[int, dict[str, str], bytes] | None = None  # what invocations get instead of a prediction
    dies_after_ping: bool = False  # answers its first ready /ping, then stops listening
    ping_hangs: bool = False  # accepts /ping and never answers


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


PREDICTION = {"predictions": [0.97]}


class Instance:
    """One launched instance's runtime: a single-threaded HTTP server, so requests are
    handled in the order the activator sends them."""

    def __init__(self, name: str, host: str, port: int, behaviour: Behaviour, readiness_path: str, log: list[str]) -> None:
        self.name, self.behaviour, self.readiness_path, self.log = name, behaviour, readiness_path, log
        self.received: list[Received] = []
        self.pings = 0
        self.stopped = threading.Event()
        self.dead = False
        self.server = HTTPServer((host, port), self._handler())
        self.server.timeout = 0.05
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set() and not self.dead:
            self.server.handle_request()
        self.server.server_close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        instance = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, {"Content-Type": "application/json"}, json.dumps(body).encode())

            def do_GET(self) -> None:  # noqa: N802
                if self.path != instance.readiness_path:
                    self._invocation()
                    return
                behaviour = instance.behaviour
                if behaviour.ping_hangs:
                    instance.log.append(f"{instance.name} GET {self.path} (no answer)")
                    instance.stopped.wait(5)
                    return
                instance.pings += 1
                ready = instance.pings > behaviour.pings_until_ready
                instance.log.append(f"{instance.name} GET {self.path} → {200 if ready else 503}")
                if ready and behaviour.dies_after_ping:
                    # Stop listening before answering, so the next connection is refused.
                    self.server.socket.close()
                    instance.dead = True
                self._json(200 if ready else 503, {"status": "ready" if ready else "loading"})

            def do_POST(self) -> None:  # noqa: N802
                self._invocation()

            def _invocation(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                instance.received.append(
                    Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                instance.log.append(f"{instance.name} {self.command} {self.path}")
                behaviour = instance.behaviour
                if behaviour.busy_answers > 0:
                    behaviour.busy_answers -= 1
                    self._json(429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "all workers are busy"})
                elif behaviour.reply is not None:
                    self._send(*behaviour.reply)
                else:
                    self._json(200, PREDICTION)

        return Handler


# --- one test's world: its served model, its observed AWS clients and the log ----------------
class World:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.log: list[str] = []
        self.instances: dict[str, Instance] = {}
        self.behaviours: list[Behaviour] = []
        self.readiness_path = "/ping"
        self.labels: dict[str, str] = {}
        self.racer_reverts = 0
        self.autoscaling, self.elbv2, self.ec2 = (cloud.observed(name) for name in ("autoscaling", "elbv2", "ec2"))

    # What the activator changes, in the words of the log.
    def record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        if model.name == "SetDesiredCapacity":
            cooldown = " honoring cooldown" if params.get("HonorCooldown") else ""
            self.log.append(f"scale to {params.get('DesiredCapacity')}{cooldown}")
        elif model.name == "ModifyRule":
            try:
                groups = params["Actions"][0]["ForwardConfig"]["TargetGroups"]
                self.log.append("route " + " ".join(f"{self.labels.get(g['TargetGroupArn'])}:{g['Weight']}" for g in groups))
            except (KeyError, IndexError, TypeError):
                self.log.append(f"route {params!r}")

    def after_call(self, model: Any, **kwargs: Any) -> None:
        if model.name == "SetDesiredCapacity":
            self.boot()  # the group launched (or terminated) instances; launched ones start their runtime
        elif model.name == "ModifyRule" and self.racer_reverts > 0:
            # Another activator of the same endpoint writes its stale read right after ours.
            self.racer_reverts -= 1
            self.cloud.clients["elbv2"].modify_rule(RuleArn=self.rule_arn, Actions=self.stale_actions)

    def boot(self) -> None:
        asg, ec2 = self.cloud.clients["autoscaling"], self.cloud.clients["ec2"]
        [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group_name])["AutoScalingGroups"]
        # Named in the order the target group lists them, the order the activator tries them.
        health = self.cloud.clients["elbv2"].describe_target_health(TargetGroupArn=group["TargetGroupARNs"][0])
        for target in health["TargetHealthDescriptions"]:
            instance_id = target["Target"]["Id"]
            if instance_id in self.instances:
                continue
            [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            address = reservation["Instances"][0]["PrivateIpAddress"]
            behaviour = self.behaviours.pop(0) if self.behaviours else Behaviour()
            name = f"i{len(self.instances) + 1}"
            self.instances[instance_id] = Instance(
                name, address, self.cloud.port, behaviour, self.readiness_path, self.log
            )

    def served_model(
        self, desired: int, routed_to_activator: bool, *behaviours: Behaviour, request_timeout_seconds: float = 60
    ) -> Settings:
        """This served model's instance and wake target groups, a rule splitting 90/10 between
        it and another served model, and its group with `desired` running instances."""
        n = f"{self.cloud.token}-{next(self.cloud.counter)}"
        priority = next(self.cloud.counter)
        elbv2, asg = self.cloud.clients["elbv2"], self.cloud.clients["autoscaling"]
        served = elbv2.create_target_group(
            Name=f"champion-{n}", Protocol="HTTP", Port=8080, VpcId=self.cloud.vpc, TargetType="instance"
        )["TargetGroups"][0]["TargetGroupArn"]
        other = self.cloud.other
        wake = elbv2.create_target_group(Name=f"wake-{n}", TargetType="lambda")["TargetGroups"][0]["TargetGroupArn"]
        self.labels = {served: "served", other: "other", wake: "wake"}
        self.rule_arn = elbv2.create_rule(
            ListenerArn=self.cloud.listener,
            Priority=priority,
            Conditions=[{"Field": "path-pattern", "Values": [f"/serving-endpoints/model-{n}/invocations"]}],
            Actions=[self._forward(wake if routed_to_activator else served, other)],
        )["Rules"][0]["RuleArn"]
        self.stale_actions = [self._forward(wake if routed_to_activator else served, other)]
        self.group_name = f"group-{n}"
        self.behaviours = list(behaviours)
        asg.create_auto_scaling_group(
            AutoScalingGroupName=self.group_name,
            MinSize=0,
            MaxSize=4,
            DesiredCapacity=desired,
            LaunchTemplate={"LaunchTemplateId": self.cloud.template, "Version": "1"},
            VPCZoneIdentifier=self.cloud.subnet,
            TargetGroupARNs=[served],
        )
        self.boot()
        return Settings(
            group_name=self.group_name,
            target_group_arn=served,
            activator_target_group_arn=wake,
            listener_arn=self.cloud.listener,
            request_timeout_seconds=request_timeout_seconds,
            readiness_path=self.readiness_path,
            port=self.cloud.port,
            poll_seconds=2,
        )

    @staticmethod
    def _forward(first: str, other: str) -> dict[str, Any]:
        return {
            "Type": "forward",
            "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": first, "Weight": 90}, {"TargetGroupArn": other, "Weight": 10}]},
        }

    def activator(self, settings: Settings, clock: FakeClock) -> Activator:
        return Activator(settings, self.autoscaling, self.elbv2, self.ec2, clock=clock, sleep=clock.sleep,
                         jitter=lambda low, high: high)

    def routes(self) -> dict[str, int]:
        [rule] = self.cloud.clients["elbv2"].describe_rules(RuleArns=[self.rule_arn])["Rules"]
        return {self.labels[g["TargetGroupArn"]]: g["Weight"] for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}

    def desired_capacity(self) -> int:
        groups = self.cloud.clients["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[self.group_name])
        return groups["AutoScalingGroups"][0]["DesiredCapacity"]

    def instance(self, name: str) -> Instance:
        return next(i for i in self.instances.values() if i.name == name)

    def stop(self) -> None:
        for instance in self.instances.values():
            instance.stop()


@pytest.fixture
def world(cloud: Cloud) -> Iterator[World]:
    world = cloud.world = World(cloud)
    yield world
    cloud.world = None
    world.stop()


def lambda_environment(settings: Settings) -> dict[str, str]:
    """The variables infra/components/activator.py gives the function."""
    return {
        "KILN_GROUP_NAME": settings.group_name,
        "KILN_TARGET_GROUP_ARN": settings.target_group_arn,
        "KILN_ACTIVATOR_TARGET_GROUP_ARN": settings.activator_target_group_arn,
        "KILN_LISTENER_ARN": settings.listener_arn,
        "KILN_REQUEST_TIMEOUT_SECONDS": str(settings.request_timeout_seconds),
        "KILN_READINESS_PATH": settings.readiness_path,
        "KILN_PORT": str(settings.port),
    }


@pytest.fixture
def as_lambda(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `handle` as Lambda does: settings from the environment, boto3's default clients
    (here pointed at moto, observed by the world's log)."""

    def configure(settings: Settings) -> None:
        for name, value in lambda_environment(settings).items():
            monkeypatch.setenv(name, value)
        # A broken readiness check then costs a second of real waiting, not the request timeout.
        monkeypatch.setenv("KILN_REQUEST_TIMEOUT_SECONDS", "6")
        monkeypatch.setenv("KILN_POLL_SECONDS", "0.05")
        monkeypatch.setenv("AWS_ENDPOINT_URL", world.cloud.endpoint)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", world.cloud.session)

    return configure


def alb_event(body: str = '{"inputs": [[120.0, 0.7, 3, 40]]}', **fields: Any) -> dict[str, Any]:
    """A Lambda-target request event as the ALB sends it (multi-value headers off, the default)."""
    return {
        "requestContext": {"elb": {"targetGroupArn": WAKE_TARGET_GROUP}},
        "httpMethod": "POST",
        "path": PATH,
        "queryStringParameters": {},
        "headers": {
            "accept": "*/*",
            "content-length": str(len(body)),
            "content-type": "application/json",
            "host": "internal-kiln-prod-1234567890.us-east-1.elb.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-6656f6e3-3a1b2c3d4e5f60718293a4b5",
            "x-forwarded-for": "10.0.3.7",
            "x-forwarded-port": "80",
            "x-forwarded-proto": "http",
            "x-tenant": "risk",
        },
        "body": body,
        "isBase64Encoded": False,
        **fields,
    }


def alarm_event(state: str, previous: str = "OK") -> dict[str, Any]:
    """What CloudWatch sends a Lambda alarm action (the idle alarm)."""
    return {
        "source": "aws.cloudwatch",
        "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:kiln-prod-fraud-scorer-champion-idle",
        "accountId": "123456789012",
        "time": "2026-06-01T03:00:00.000+0000",
        "region": REGION,
        "alarmData": {
            "alarmName": "kiln-prod-fraud-scorer-champion-idle",
            "state": {"value": state, "reason": "Threshold Crossed", "timestamp": "2026-06-01T03:00:00.000+0000"},
            "previousState": {"value": previous, "reason": "Threshold Crossed", "timestamp": "2026-06-01T02:00:00.000+0000"},
            "configuration": {"description": "no requests for 30 min", "metrics": []},
        },
    }


def prediction_response(response: dict[str, Any]) -> dict[str, Any]:
    """A forwarded 200, less the Date and Server headers the runtime stand-in adds."""
    return {**response, "headers": {k: v for k, v in response["headers"].items() if k not in ("Date", "Server")}}


# A monotonic clock starts anywhere; a fake one at 0 would hide `now + started` for `now - started`.
START = 1000.0


def monotonic_clock() -> FakeClock:
    clock = FakeClock()
    clock.now = START
    return clock


def activator_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "kiln.activator"]


# --- Settings.from_environment ----------------------------------------------------------------
REQUIRED = {
    "KILN_GROUP_NAME": "kiln-prod-fraud-scorer-champion",
    "KILN_TARGET_GROUP_ARN": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/champion/1",
    "KILN_ACTIVATOR_TARGET_GROUP_ARN": WAKE_TARGET_GROUP,
    "KILN_LISTENER_ARN": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/kiln/1/2",
    "KILN_REQUEST_TIMEOUT_SECONDS": "597",
}


def test_settings_read_every_variable_the_component_sets() -> None:
    env = {**REQUIRED, "KILN_READINESS_PATH": "/health", "KILN_PORT": "9090", "KILN_POLL_SECONDS": "0.5",
           "KILN_READY_PARAMETER": "/kiln/activator/kiln-prod-fraud-scorer-champion"}

    settings = Settings.from_environment(env)

    assert settings == Settings(
        group_name="kiln-prod-fraud-scorer-champion",
        target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/champion/1",
        activator_target_group_arn=WAKE_TARGET_GROUP,
        listener_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/kiln/1/2",
        request_timeout_seconds=597.0,
        readiness_path="/health",
        port=9090,
        poll_seconds=0.5,
        ready_parameter="/kiln/activator/kiln-prod-fraud-scorer-champion",
    )


def test_settings_left_unset_take_the_runtime_contract_defaults() -> None:
    settings = Settings.from_environment(dict(REQUIRED))

    assert (settings.readiness_path, settings.port, settings.poll_seconds) == ("/ping", 8080, 2.0)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_required_variable_missing_stops_the_function_naming_it(name: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != name}

    with pytest.raises(KeyError, match=name):
        Settings.from_environment(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [("KILN_REQUEST_TIMEOUT_SECONDS", "ten minutes"), ("KILN_PORT", "8080.0"), ("KILN_PORT", ""), ("KILN_POLL_SECONDS", "2s")],
)
def test_a_number_that_does_not_parse_is_rejected(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_environment({**REQUIRED, name: value})


def test_settings_come_from_the_process_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KILN_PORT", "9000")

    from_process = Settings.from_environment()
    given = Settings.from_environment({**REQUIRED, "KILN_GROUP_NAME": "other-group"})

    assert (from_process.group_name, from_process.port) == ("kiln-prod-fraud-scorer-champion", 9000)
    assert (given.group_name, given.port) == ("other-group", 8080)


# --- handle(): the ALB request event ----------------------------------------------------------
def test_cold_request_wakes_the_group_and_gives_the_route_back_only_after_an_instance_answered(
    world: World, as_lambda: Any
) -> None:
    settings = world.served_model(0, True, Behaviour(pings_until_ready=0))
    as_lambda(settings)

    response = handle(alb_event(), None)

    assert prediction_response(response) == {
        "statusCode": 200,
        "statusDescription": "200 OK",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(PREDICTION),
        "isBase64Encoded": False,
    }
    assert world.log == ["scale to 1", "i1 GET /ping → 200", f"i1 POST {PATH}", "route served:90 other:10"]
    assert world.routes() == {"served": 90, "other": 10}
    assert world.desired_capacity() == 1


def test_held_request_reaches_the_instance_as_the_client_sent_it(world: World, as_lambda: Any) -> None:
    settings = world.served_model(1, True)
    as_lambda(settings)
    body = '{"dataframe_split": {"columns": ["amount"], "data": [[120.0]]}}'
    # The ALB hands query parameters over still percent-encoded, as the client sent them.
    event = alb_event(body, queryStringParameters={"q": "a%20b", "tag": "x%3Dy"})

    handle(event, None)

    [received] = world.instance("i1").received
    assert (received.method, received.path, received.body) == ("POST", f"{PATH}?q=a%20b&tag=x%3Dy", body.encode())
    assert received.headers["host"] == f"{world.instance('i1').server.server_address[0]}:{world.cloud.port}"
    assert received.headers["content-length"] == str(len(body))
    assert {k: received.headers[k] for k in ("content-type", "x-tenant", "x-forwarded-for", "x-amzn-trace-id")} == {
        "content-type": "application/json",
        "x-tenant": "risk",
        "x-forwarded-for": "10.0.3.7",
        "x-amzn-trace-id": "Root=1-6656f6e3-3a1b2c3d4e5f60718293a4b5",
    }


def test_base64_body_is_decoded_before_it_is_forwarded(world: World, as_lambda: Any) -> None:
    settings = world.served_model(1, True)
    as_lambda(settings)
    image = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
    event = alb_event(base64.b64encode(image).decode(), isBase64Encoded=True)
    event["headers"].update({"content-type": "application/octet-stream", "content-length": str(len(image))})

    handle(event, None)

    [received] = world.instance("i1").received
    assert (received.body, received.headers["content-length"]) == (image, "11")


def test_request_without_a_body_is_forwarded_without_one(world: World, as_lambda: Any) -> None:
    settings = world.served_model(1, True)
    as_lambda(settings)
    event = alb_event("", httpMethod="GET", path="/serving-endpoints/fraud-scorer/metadata")
    del event["headers"]["content-length"], event["headers"]["content-type"]

    handle(event, None)

    [received] = world.instance("i1").received
    assert (received.method, received.path, received.body) == ("GET", "/serving-endpoints/fraud-scorer/metadata", b"")
    assert "content-length" not in received.headers


def test_post_without_a_body_stays_a_post(world: World, as_lambda: Any) -> None:
    settings = world.served_model(1, True)
    as_lambda(settings)
    event = alb_event("")
    event["headers"]["content-length"] = "0"

    handle(event, None)

    [received] = world.instance("i1").received
    assert (received.method, received.path, received.body) == ("POST", PATH, b"")


def test_readiness_is_asked_on_the_configured_path_and_port(world: World, as_lambda: Any) -> None:
    world.readiness_path = "/health"
    settings = world.served_model(0, True)
    as_lambda(settings)

    handle(alb_event(), None)

    assert world.log[:2] == ["scale to 1", "i1 GET /health → 200"]


# --- handle(): the alarm state change ---------------------------------------------------------
def test_idle_alarm_takes_the_route_before_the_group_goes_to_zero(world: World, as_lambda: Any) -> None:
    settings = world.served_model(1, False)
    as_lambda(settings)

    result = handle(alarm_event("ALARM"), None)

    assert result == {"action": "slept", "routeTaken": True}
    assert world.log == ["route wake:90 other:10", "scale to 0"]
    assert world.routes() == {"wake": 90, "other": 10}
    assert world.desired_capacity() == 0


@pytest.mark.parametrize(("state", "previous"), [("OK", "ALARM"), ("INSUFFICIENT_DATA", "OK")])
def test_alarm_leaving_or_not_reaching_alarm_changes_nothing(
    world: World, as_lambda: Any, state: str, previous: str
) -> None:
    settings = world.served_model(1, False)
    as_lambda(settings)

    result = handle(alarm_event(state, previous), None)

    assert result == {"action": "none", "reason": f"alarm state {state}"}
    assert world.log == []
    assert world.desired_capacity() == 1


def test_idle_alarm_after_the_route_was_already_taken_still_scales_to_zero(world: World) -> None:
    settings = world.served_model(1, True)

    result = world.activator(settings, monotonic_clock()).handle_alarm(alarm_event("ALARM"))

    assert result == {"action": "slept", "routeTaken": False}
    assert world.log == ["scale to 0"]


def test_alarm_event_without_a_state_is_not_acted_on(world: World) -> None:
    settings = world.served_model(1, False)

    result = world.activator(settings, monotonic_clock()).handle_alarm({"source": "aws.cloudwatch", "alarmData": {}})

    assert result == {"action": "none", "reason": "alarm state None"}
    assert world.log == []


# --- waiting: deadlines, polls, busy instances ------------------------------------------------
@pytest.mark.parametrize(
    ("request_timeout", "poll", "held_for", "said", "sleeps"),
    [
        (5, 2, 1, "1", [1]),  # 5 - 5 = 0 s, below the 1 s floor → held 1 s, the poll cut to what is left
        (6, 2, 1, "1", [1]),  # 6 - 5 = 1 s, at the floor
        (7, 2, 2, "2", [2]),  # 7 - 5 = 2 s, above it: one 2 s poll
        (6, 0.75, 1, "1", [0.75, 0.25]),  # the last poll is only what is left before the deadline
        (6.25, 2, 1.25, "1.2", [1.25]),  # the message rounds to a tenth (1.25 → 1.2, half to even)
    ],
)
def test_request_held_past_the_timeout_less_the_margin_gets_503_and_keeps_the_route(
    world: World, request_timeout: float, poll: float, held_for: float, said: str, sleeps: list[float]
) -> None:
    settings = replace(
        world.served_model(0, True, Behaviour(pings_until_ready=10_000), request_timeout_seconds=request_timeout),
        poll_seconds=poll,
    )
    clock = monotonic_clock()

    response = world.activator(settings, clock).handle_request(alb_event())

    assert response == {
        "statusCode": 503,
        "statusDescription": "503 Service Unavailable",
        "headers": {"Content-Type": "application/json", "Retry-After": "30"},
        "body": json.dumps(
            {
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": f"served model is starting from zero and no instance was ready within {said} s; retry shortly",
            }
        ),
        "isBase64Encoded": False,
    }
    assert (clock.now - START, clock.slept) == (held_for, sleeps)
    assert world.log[0] == "scale to 1"
    assert not any(line.startswith("route") or "POST" in line for line in world.log)
    assert world.routes() == {"wake": 90, "other": 10}


def test_loading_instance_is_polled_and_the_request_forwarded_with_what_is_left_of_its_timeout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = world.served_model(0, True, Behaviour(pings_until_ready=3))
    clock = monotonic_clock()
    timeouts: list[float] = []
    urlopen = urllib.request.urlopen

    def watched(request: Any, timeout: float) -> Any:
        timeouts.append(timeout)
        return urlopen(request, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", watched)

    response = world.activator(settings, clock).handle_request(alb_event())

    assert response["statusCode"] == 200
    # Polls back off (2, 4, 8 s; the test's jitter always takes the top): pings at 0, 2, 6 s
    # answer 503, at 14 s 200. Each ping may take 2 s; the request gets 60 - 14 = 46 s.
    assert timeouts == [2.0, 2.0, 2.0, 2.0, 46.0]
    assert clock.slept == [2, 4, 8]
    assert world.log == ["scale to 1"] + ["i1 GET /ping → 503"] * 3 + ["i1 GET /ping → 200", f"i1 POST {PATH}", "route served:90 other:10"]


def test_request_timeout_shorter_than_the_margin_still_forwards_with_at_least_a_second(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = world.served_model(0, True, Behaviour(pings_until_ready=1), request_timeout_seconds=1.5)
    clock = monotonic_clock()
    timeouts: list[float] = []
    urlopen = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: timeouts.append(timeout) or urlopen(request, timeout=timeout))

    response = world.activator(settings, clock).handle_request(alb_event())

    assert response["statusCode"] == 200
    # Deadline max(1.5 - 5, 1) = 1 s: ready at the 1 s ping; 1.5 - 1 = 0.5 s left, raised to 1 s.
    assert (clock.slept, timeouts[-1]) == ([1], 1.0)


@pytest.mark.parametrize(
    ("poll", "posts"),
    [
        (2.4, 3),  # 0, 2.4, 4.8: 4.8 + 2.4 > 5 → the instance's 429 goes back
        (2.5, 2),  # 0, 2.5: 2.5 + 2.5 = 5 reaches the deadline → no third try
        (2.6, 2),  # 0, 2.6: 5.2 > 5
    ],
)
def test_busy_instance_is_retried_while_another_poll_fits_before_the_deadline(world: World, poll: float, posts: int) -> None:
    settings = replace(world.served_model(1, True, Behaviour(busy_answers=10_000), request_timeout_seconds=10), poll_seconds=poll)
    clock = monotonic_clock()

    response = world.activator(settings, clock).handle_request(alb_event())

    assert (response["statusCode"], json.loads(response["body"])["message"]) == (429, "all workers are busy")
    assert len(world.instance("i1").received) == posts
    assert clock.slept == [poll] * (posts - 1)


def test_busy_instance_that_frees_a_worker_answers_the_held_request(world: World) -> None:
    settings = world.served_model(0, True, Behaviour(busy_answers=2))
    clock = monotonic_clock()

    response = world.activator(settings, clock).handle_request(alb_event())

    assert prediction_response(response)["body"] == json.dumps(PREDICTION)
    assert world.log == ["scale to 1", "i1 GET /ping → 200"] + [f"i1 POST {PATH}"] * 3 + ["route served:90 other:10"]
    assert clock.slept == [2, 2]


# --- which instance, and waking only from zero -------------------------------------------------
def test_group_already_waking_is_not_scaled_again(world: World, caplog: pytest.LogCaptureFixture) -> None:
    settings = world.served_model(1, True, Behaviour(pings_until_ready=1))
    caplog.set_level(logging.INFO, logger="kiln.activator")

    world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert world.log == ["i1 GET /ping → 503", "i1 GET /ping → 200", f"i1 POST {PATH}", "route served:90 other:10"]
    assert activator_messages(caplog) == ["no ready instance; group already waking, holding the request"]
    assert world.desired_capacity() == 1


def test_group_at_zero_is_woken_to_exactly_one_instance_without_waiting_for_its_cooldown(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    settings = world.served_model(0, True)
    caplog.set_level(logging.INFO, logger="kiln.activator")

    world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert world.log[0] == "scale to 1"
    assert activator_messages(caplog) == ["no ready instance; woke the group, holding the request"]


def test_ready_group_is_forwarded_to_without_waking_or_waiting(world: World, caplog: pytest.LogCaptureFixture) -> None:
    settings = world.served_model(2, True)
    clock = monotonic_clock()
    caplog.set_level(logging.INFO, logger="kiln.activator")

    world.activator(settings, clock).handle_request(alb_event())

    assert world.log == ["i1 GET /ping → 200", f"i1 POST {PATH}", "route served:90 other:10"]
    assert (clock.slept, activator_messages(caplog), world.desired_capacity()) == ([], [], 2)


def test_instance_the_load_balancer_does_not_count_healthy_is_never_used(world: World) -> None:
    settings = world.served_model(2, True)
    stopped = next(iid for iid, instance in world.instances.items() if instance.name == "i1")
    world.cloud.clients["ec2"].stop_instances(InstanceIds=[stopped])  # its target turns "unused"

    world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert world.log == ["i2 GET /ping → 200", f"i2 POST {PATH}", "route served:90 other:10"]


def test_first_healthy_instance_still_loading_is_passed_over_for_a_ready_one(world: World) -> None:
    settings = world.served_model(2, True, Behaviour(pings_until_ready=10_000), Behaviour())

    world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert world.log == ["i1 GET /ping → 503", "i2 GET /ping → 200", f"i2 POST {PATH}", "route served:90 other:10"]


def test_ping_that_never_answers_counts_as_not_ready(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module, "PING_TIMEOUT_SECONDS", 0.05)
    settings = world.served_model(1, True, Behaviour(ping_hangs=True), request_timeout_seconds=6)
    clock = monotonic_clock()
    started = time.monotonic()

    response = world.activator(settings, clock).handle_request(alb_event())

    assert response["statusCode"] == 503
    assert clock.now == START + 1
    # Two pings of 0.05 s each, not the 5 s the instance would hold them.
    assert time.monotonic() - started < 2


def test_missing_group_is_reported_by_name(world: World) -> None:
    settings = replace(world.served_model(1, True, Behaviour(pings_until_ready=10_000)), group_name="kiln-gone")

    with pytest.raises(LookupError, match="autoscaling group kiln-gone does not exist"):
        world.activator(settings, monotonic_clock()).handle_request(alb_event())


# --- what goes back to the ALB ----------------------------------------------------------------
def test_binary_answer_goes_back_base64_encoded(world: World) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    settings = world.served_model(1, True, Behaviour(reply=(200, {"Content-Type": "image/png"}, png)))

    response = world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert (response["body"], response["isBase64Encoded"]) == (base64.b64encode(png).decode(), True)
    assert response["headers"]["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    ("status", "description"), [(429, "429 Too Many Requests"), (599, "599")]
)
def test_instance_error_goes_back_as_the_instance_said_it(world: World, status: int, description: str) -> None:
    error = json.dumps({"error_code": "BAD_REQUEST", "message": "column amount is missing"}).encode()
    settings = world.served_model(1, True, Behaviour(reply=(status, {"Content-Type": "application/json", "Connection": "close"}, error)))

    response = world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert prediction_response(response) == {
        "statusCode": status,
        "statusDescription": description,
        "headers": {"Content-Type": "application/json"},  # hop-by-hop Connection and Content-Length dropped
        "body": error.decode(),
        "isBase64Encoded": False,
    }


def test_instance_that_stops_answering_after_its_ping_gets_a_502_in_the_serving_error_shape(world: World) -> None:
    settings = world.served_model(1, True, Behaviour(dies_after_ping=True))

    response = world.activator(settings, monotonic_clock()).handle_request(alb_event())

    body = json.loads(response.pop("body"))
    assert response == {
        "statusCode": 502,
        "statusDescription": "502 Bad Gateway",
        "headers": {"Content-Type": "application/json"},
        "isBase64Encoded": False,
    }
    assert body["error_code"] == "BAD_GATEWAY"
    assert body["message"].startswith("the woken instance did not answer: <urlopen error")


# --- the route --------------------------------------------------------------------------------
def test_route_already_given_back_by_another_activator_is_left_alone(world: World) -> None:
    settings = world.served_model(1, False)

    response = world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert response["statusCode"] == 200
    assert world.log == ["i1 GET /ping → 200", f"i1 POST {PATH}"]
    assert world.routes() == {"served": 90, "other": 10}


def test_route_rewritten_by_a_racing_activator_is_written_again_up_to_three_times(world: World) -> None:
    settings = world.served_model(1, True)
    world.racer_reverts = 2

    world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert world.log.count("route served:90 other:10") == 3
    assert world.routes() == {"served": 90, "other": 10}


def test_route_rewritten_on_every_attempt_fails_loudly(world: World) -> None:
    settings = world.served_model(1, True)
    world.racer_reverts = 3

    with pytest.raises(RuntimeError, match=f"the listener rule kept changing; could not route to {settings.target_group_arn}"):
        world.activator(settings, monotonic_clock()).handle_request(alb_event())

    assert world.log.count("route served:90 other:10") == 3


def test_served_model_no_rule_forwards_to_is_reported(world: World) -> None:
    settings = world.served_model(1, True)
    unrouted = replace(settings, target_group_arn=settings.target_group_arn + "-x", activator_target_group_arn=WAKE_TARGET_GROUP)

    with pytest.raises(LookupError, match=f"no rule on {settings.listener_arn} forwards to this served model"):
        world.activator(unrouted, monotonic_clock()).take_route()

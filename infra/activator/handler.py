"""The Kiln activator: holds a request for a served model that has scaled to zero.

While a served model has no ready instance, its share of the endpoint's listener rule
points at this Lambda's target group instead of the instances'. For each request the
activator raises the autoscaling group to one instance, waits until an instance is
healthy in the target group *and* answers 200 on /ping (the runtime says 503 until its
model is loaded and warmed up), forwards the held request to it, and gives the route
back to the instances. This is what the Knative activator does for KServe; SageMaker
answers errors while it wakes, and Databricks documents only "higher latency".

Many requests can be held at once (2 rps through a 105 s cold start is ~210 invocations), and
the ELB API allows 40 Describe calls at once, refilled at 10 a second, per account and region
(https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html).
So the held requests share one readiness signal per served model, an SSM parameter: the
first poller to create it leads and alone asks the load balancer; it writes the ready
instance's address there, and every other held request reads it. Polls back off
exponentially with full jitter, and a throttled or failed AWS call counts as "not ready
yet", never as an error for the client.

The same function puts the served model to sleep: the idle alarm (no requests for
`idleMinutesBeforeZero`) invokes it, and it takes the route first, then sets the group
to zero, so no request ever meets an empty target group.

Standard library and boto3 only: this file is the whole Lambda package.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("kiln.activator")
log.setLevel(logging.INFO)

# Headers that describe one hop, not the request (RFC 9110 section 7.6.1), plus the ALB's.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "host", "content-length"}
# What the held request needs after the instance is ready: time to be answered and returned.
FORWARD_MARGIN_SECONDS = 5.0
PING_TIMEOUT_SECONDS = 2.0
# modify_rule is read-modify-write; two activators of one endpoint may race, so re-check.
ROUTE_ATTEMPTS = 3
# Polls back off from the poll interval up to this, with full jitter
# (https://aws.amazon.com/builders-library/timeouts-retries-and-backoff-with-jitter/).
MAX_POLL_SECONDS = 16.0
DEFAULT_POLL_SECONDS = 2.0
# A leader that has not written for this long is presumed gone (its invocation ended or
# failed); the next poller takes over.
LEADER_LEASE_SECONDS = 3 * MAX_POLL_SECONDS


def poll_ceilings(poll_seconds: float = DEFAULT_POLL_SECONDS) -> Iterator[float]:
    """The bound of each successive wait between one held request's polls: the poll interval,
    doubling up to MAX_POLL_SECONDS; full jitter waits uniformly below it. `kiln simulate`
    counts the activator's API calls from the same schedule."""
    ceiling = poll_seconds
    while True:
        yield ceiling
        ceiling = min(ceiling * 2, max(MAX_POLL_SECONDS, poll_seconds))


@dataclass(frozen=True)
class Settings:
    """What one activator serves, from the Lambda's environment (set by infra/components/activator.py)."""

    group_name: str
    target_group_arn: str
    activator_target_group_arn: str
    listener_arn: str
    request_timeout_seconds: float
    readiness_path: str = "/ping"
    port: int = 8080
    poll_seconds: float = 2.0
    # The SSM parameter the held requests share readiness through; unset, each polls alone.
    ready_parameter: str | None = None

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            group_name=env["KILN_GROUP_NAME"],
            target_group_arn=env["KILN_TARGET_GROUP_ARN"],
            activator_target_group_arn=env["KILN_ACTIVATOR_TARGET_GROUP_ARN"],
            listener_arn=env["KILN_LISTENER_ARN"],
            request_timeout_seconds=float(env["KILN_REQUEST_TIMEOUT_SECONDS"]),
            readiness_path=env.get("KILN_READINESS_PATH", "/ping"),
            port=int(env.get("KILN_PORT", "8080")),
            poll_seconds=float(env.get("KILN_POLL_SECONDS", DEFAULT_POLL_SECONDS)),
            ready_parameter=env.get("KILN_READY_PARAMETER") or None,
        )


class Activator:
    """Wakes, waits, forwards and hands the route back; or takes the route and sleeps."""

    def __init__(
        self,
        settings: Settings,
        autoscaling: Any,
        elbv2: Any,
        ec2: Any,
        address_of: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        ssm: Any = None,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.settings = settings
        self.autoscaling = autoscaling
        self.elbv2 = elbv2
        self.ec2 = ec2
        # The shared readiness signal (None: no parameter configured, every poller asks ELB).
        self.signal = ReadinessSignal(ssm, settings.ready_parameter, wall_clock) if ssm and settings.ready_parameter else None
        self.jitter = jitter
        # Where an instance's runtime listens; the private IP in the VPC by default.
        self.address_of = address_of or self._private_address
        self.clock = clock
        self.sleep = sleep

    # --- requests --------------------------------------------------------------------
    def handle_request(self, event: dict[str, Any]) -> dict[str, Any]:
        """Answer one ALB request: forward it as soon as an instance is ready, or 503 at the deadline."""
        started = self.clock()
        deadline = started + max(self.settings.request_timeout_seconds - FORWARD_MARGIN_SECONDS, 1.0)
        address = self.poll()
        if address is None:
            try:
                woke = self.wake()
            except (BotoCoreError, ClientError) as error:  # the fallback alarm wakes the group
                log.warning("could not wake the group (%s); holding the request", error)
                woke = False
            log.info("no ready instance; %s, holding the request", "woke the group" if woke else "group already waking")
            address = self.wait_until_ready(deadline)
        if address is None:
            waited = round(self.clock() - started, 1)
            return _error(
                503,
                "TEMPORARILY_UNAVAILABLE",
                f"served model is starting from zero and no instance was ready within {waited:g} s; retry shortly",
                retry_after=30,
            )
        response = self.forward_while_busy(address, event, started, deadline)
        self.give_route_back()
        return response

    def forward_while_busy(self, address: str, event: dict[str, Any], started: float, deadline: float) -> dict[str, Any]:
        """Forward, and while the woken instance answers 429 (the backlog that piled up during
        the cold start is over its admission budget, runtime/admission.py), keep holding the
        request and try again: the request still has time, and failing it is what the activator
        is for not doing. At the deadline the instance's own answer goes back to the client."""
        while True:
            remaining = max(self.settings.request_timeout_seconds - (self.clock() - started), 1.0)
            response = self.forward(address, event, remaining)
            if response["statusCode"] != 429 or self.clock() + self.settings.poll_seconds >= deadline:
                return response
            self.sleep(self.settings.poll_seconds)

    def poll(self) -> str | None:
        """One look for a ready instance: the shared signal's address if it answers; else, only
        for the leader (or without a signal), the load balancer's healthy targets."""
        if self.signal is None:
            return self.ready_address()
        address = self.signal.address()
        if address is not None and _answers_ready(f"http://{address}{self.settings.readiness_path}"):
            return address
        if not self.signal.lead():
            return None
        address = self.ready_address()
        if address is not None:
            self.signal.publish(address)
        return address

    def ready_address(self) -> str | None:
        """An instance the ALB considers healthy whose runtime answers 200 on /ping; None also
        when the load balancer throttles or fails the call (the next poll asks again)."""
        try:
            health = self.elbv2.describe_target_health(TargetGroupArn=self.settings.target_group_arn)
        except (BotoCoreError, ClientError) as error:
            log.warning("cannot read target health (%s); polling again", error)
            return None
        healthy = [
            d["Target"]["Id"] for d in health["TargetHealthDescriptions"] if d["TargetHealth"]["State"] == "healthy"
        ]
        for instance_id in healthy:
            address = self.address_of(instance_id)
            if _answers_ready(f"http://{address}{self.settings.readiness_path}"):
                return address
        return None

    def wake(self) -> bool:
        """Raise the group to one instance if it is at zero; True if this call did it."""
        group = self._group()
        if group["DesiredCapacity"] >= 1:
            return False
        # HonorCooldown=False: a scale-in that just finished must not delay a waiting request.
        self.autoscaling.set_desired_capacity(
            AutoScalingGroupName=self.settings.group_name, DesiredCapacity=1, HonorCooldown=False
        )
        return True

    def wait_until_ready(self, deadline: float) -> str | None:
        """Poll until an instance is ready or the deadline, backing off with full jitter so the
        held requests of one cold start do not poll in step."""
        ceilings = poll_ceilings(self.settings.poll_seconds)
        while True:
            address = self.poll()
            if address is not None or self.clock() >= deadline:
                return address
            self.sleep(min(self.jitter(0.0, next(ceilings)), max(deadline - self.clock(), 0.0)))

    def forward(self, address: str, event: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send the held request to the instance as the ALB would have, and return its answer."""
        # The ALB passes query parameters as the client sent them, still percent-encoded
        # (Lambda functions as targets, ELB user guide); encoding again turns %20 into %2520.
        query = "&".join(f"{k}={v}" for k, v in (event.get("queryStringParameters") or {}).items())
        url = f"http://{address}{event.get('path', '/')}" + (f"?{query}" if query else "")
        body = event.get("body") or ""
        data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() not in HOP_BY_HOP}
        request = urllib.request.Request(url, data=data or None, headers=headers, method=event.get("httpMethod", "POST"))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return _alb_response(reply.status, dict(reply.headers), reply.read())
        except urllib.error.HTTPError as error:
            return _alb_response(error.code, dict(error.headers), error.read())
        except (urllib.error.URLError, TimeoutError) as error:
            return _error(502, "BAD_GATEWAY", f"the woken instance did not answer: {error}")

    # --- routing ---------------------------------------------------------------------
    def give_route_back(self) -> bool:
        """Point the rule's share for this served model at its instances again."""
        return self._swap(self.settings.activator_target_group_arn, self.settings.target_group_arn)

    def take_route(self) -> bool:
        """Point the rule's share for this served model at the activator."""
        return self._swap(self.settings.target_group_arn, self.settings.activator_target_group_arn)

    def _swap(self, old: str, new: str) -> bool:
        for _ in range(ROUTE_ATTEMPTS):
            rule = self._rule()
            if rule is None:
                raise LookupError(f"no rule on {self.settings.listener_arn} forwards to this served model")
            groups = rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
            if not any(g["TargetGroupArn"] == old for g in groups):
                return False
            swapped = [
                {"TargetGroupArn": new if g["TargetGroupArn"] == old else g["TargetGroupArn"], "Weight": g.get("Weight", 1)}
                for g in groups
            ]
            self.elbv2.modify_rule(
                RuleArn=rule["RuleArn"], Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": swapped}}]
            )
            after = self._rule()
            if after is not None and any(
                g["TargetGroupArn"] == new for g in after["Actions"][0]["ForwardConfig"]["TargetGroups"]
            ):
                return True
        raise RuntimeError(f"the listener rule kept changing; could not route to {new}")

    def _rule(self) -> dict[str, Any] | None:
        mine = {self.settings.target_group_arn, self.settings.activator_target_group_arn}
        for rule in self.elbv2.describe_rules(ListenerArn=self.settings.listener_arn)["Rules"]:
            for action in rule.get("Actions", []):
                groups = (action.get("ForwardConfig") or {}).get("TargetGroups", [])
                if action.get("Type") == "forward" and any(g["TargetGroupArn"] in mine for g in groups):
                    return {"RuleArn": rule["RuleArn"], "Actions": [action]}
        return None

    # --- sleeping --------------------------------------------------------------------
    def handle_alarm(self, event: dict[str, Any]) -> dict[str, Any]:
        """The idle alarm fired: take the route, then let the group go to zero."""
        state = event.get("alarmData", {}).get("state", {}).get("value")
        if state != "ALARM":
            return {"action": "none", "reason": f"alarm state {state}"}
        took = self.take_route()
        self.autoscaling.set_desired_capacity(
            AutoScalingGroupName=self.settings.group_name, DesiredCapacity=0, HonorCooldown=False
        )
        if self.signal is not None:
            self.signal.clear()  # the next wake elects a new leader and finds a new instance
        return {"action": "slept", "routeTaken": took}

    # --- AWS lookups -----------------------------------------------------------------
    def _group(self) -> dict[str, Any]:
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.settings.group_name])
        if not groups["AutoScalingGroups"]:
            raise LookupError(f"autoscaling group {self.settings.group_name} does not exist")
        return groups["AutoScalingGroups"][0]

    def _private_address(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        ip = reservations[0]["Instances"][0]["PrivateIpAddress"]
        return f"{ip}:{self.settings.port}"


class ReadinessSignal:
    """One SSM parameter per served model that the held requests of a cold start share:
    {"leader": invocation, "at": epoch seconds, "address": "ip:port" once one is ready}.

    Creating it (PutParameter without Overwrite) succeeds for exactly one poller, which leads;
    a leader silent for LEADER_LEASE_SECONDS is replaced. Every call's failure (throttled,
    denied, unreachable) reads as "nothing known", so a held request only waits longer."""

    def __init__(self, ssm: Any, name: str, clock: Callable[[], float] = time.time) -> None:
        self.ssm = ssm
        self.name = name
        self.clock = clock
        self.me = uuid.uuid4().hex

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.ssm.get_parameter(Name=self.name)["Parameter"]["Value"])
        except self.ssm.exceptions.ParameterNotFound:
            return None
        except (BotoCoreError, ClientError, ValueError) as error:
            log.warning("cannot read %s (%s)", self.name, error)
            return None

    def address(self) -> str | None:
        return (self.read() or {}).get("address")

    def lead(self) -> bool:
        """Whether this invocation is the one that asks the load balancer: it created the signal,
        already leads, or took over a silent leader. When SSM itself fails (throttled, denied),
        nobody could lead, so every poller asks the load balancer, still backing off."""
        state = self.read()
        if state is None:
            return self._write({"leader": self.me, "at": self.clock()}, overwrite=False)
        if state.get("leader") == self.me or self.clock() - float(state.get("at", 0)) > LEADER_LEASE_SECONDS:
            return self._write({"leader": self.me, "at": self.clock()}, overwrite=True)
        return False

    def publish(self, address: str) -> None:
        self._write({"leader": self.me, "at": self.clock(), "address": address}, overwrite=True)

    def clear(self) -> None:
        try:
            self.ssm.delete_parameter(Name=self.name)
        except self.ssm.exceptions.ParameterNotFound:
            pass
        except (BotoCoreError, ClientError) as error:
            log.warning("cannot clear %s (%s)", self.name, error)

    def _write(self, state: dict[str, Any], overwrite: bool) -> bool:
        """True unless another poller created the signal first (then it leads)."""
        try:
            self.ssm.put_parameter(Name=self.name, Value=json.dumps(state), Type="String", Overwrite=overwrite)
        except self.ssm.exceptions.ParameterAlreadyExists:
            return False
        except (BotoCoreError, ClientError) as error:
            log.warning("cannot write %s (%s); asking the load balancer directly", self.name, error)
        return True


def _answers_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=PING_TIMEOUT_SECONDS) as reply:
            return reply.status == 200
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


def _alb_response(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The Lambda-target response shape the ALB expects; binary bodies go base64."""
    kept = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {"statusCode": status, "statusDescription": _status_line(status), "headers": kept, "body": text, "isBase64Encoded": encoded}


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> dict[str, Any]:
    """Errors in the Databricks serving shape ({"error_code", "message"}) so clients parse them alike."""
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = json.dumps({"error_code": code, "message": message})
    return {"statusCode": status, "statusDescription": _status_line(status), "headers": headers, "body": body, "isBase64Encoded": False}


def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: ALB requests carry requestContext.elb; alarm actions carry alarmData."""
    settings = Settings.from_environment()
    activator = Activator(
        settings,
        boto3.client("autoscaling"),
        boto3.client("elbv2"),
        boto3.client("ec2"),
        ssm=boto3.client("ssm") if settings.ready_parameter else None,
    )
    if "alarmData" in event:
        return activator.handle_alarm(event)
    return activator.handle_request(event)

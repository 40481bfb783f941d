"""The held requests of one cold start share one readiness signal (an SSM parameter, moto's
server here) so that the ELB API's Describe limit (40 at once, 10 a second per account and
region) is met by one poller, not hundreds; throttled calls only delay a held request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.activator.handler import LEADER_LEASE_SECONDS, MAX_POLL_SECONDS, Activator, Settings
from tests.fakes import FakeClock, moto_server

PARAMETER = "/kiln/activator/kiln-prod-fraud-scorer-champion"
THROTTLED = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeTargetHealth")


class LoadBalancer:
    """DescribeTargetHealth: counts calls, and answers no target, a healthy one, or throttles."""

    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False
        self.throttled = False

    def describe_target_health(self, TargetGroupArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls += 1
        if self.throttled:
            raise THROTTLED
        state = "healthy" if self.healthy else "initial"
        return {"TargetHealthDescriptions": [{"Target": {"Id": "i-1"}, "TargetHealth": {"State": state}}]}


class Group:
    def describe_auto_scaling_groups(self, AutoScalingGroupNames: list[str]) -> dict[str, Any]:  # noqa: N803
        return {"AutoScalingGroups": [{"DesiredCapacity": 1}]}


@pytest.fixture(scope="module")
def ssm_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def ssm(ssm_endpoint: str) -> Iterator[Any]:
    client = boto3.client("ssm", endpoint_url=ssm_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    yield client
    try:
        client.delete_parameter(Name=PARAMETER)
    except client.exceptions.ParameterNotFound:
        pass


@pytest.fixture(scope="module")
def instance() -> Iterator[str]:
    """A runtime stand-in that answers /ping 200."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SETTINGS = Settings(group_name="kiln-prod-fraud-scorer-champion", target_group_arn="tg", activator_target_group_arn="wake",
                    listener_arn="listener", request_timeout_seconds=60, ready_parameter=PARAMETER)


def held(ssm: Any, elb: LoadBalancer, address: str, clock: FakeClock | None = None,
         wall: list[float] | None = None) -> Activator:
    """One held request's invocation of the activator."""
    clock = clock or FakeClock()
    return Activator(SETTINGS, Group(), elb, None, address_of=lambda _: address, clock=clock, sleep=clock.sleep,
                     ssm=ssm, wall_clock=(lambda: wall[0]) if wall else (lambda: 0.0))


def test_only_the_first_held_request_asks_the_load_balancer_and_the_rest_read_its_answer(ssm, instance) -> None:
    elb = LoadBalancer()
    invocations = [held(ssm, elb, instance) for _ in range(200)]

    for _ in range(3):  # three poll rounds while the instance loads
        assert [a.poll() for a in invocations] == [None] * 200
    elb.healthy = True
    answers = [a.poll() for a in invocations]

    # 200 held requests, 4 rounds: the leader's 4 Describe calls, not 800 (the bucket holds 40).
    assert elb.calls == 4
    assert answers == [instance] * 200


def test_a_throttled_describe_is_not_ready_yet_and_the_request_is_still_answered_later(ssm, instance) -> None:
    elb = LoadBalancer()
    elb.throttled = True
    clock = FakeClock()
    activator = held(ssm, elb, instance, clock)

    assert activator.poll() is None  # no exception: the Lambda would have answered 502
    elb.throttled, elb.healthy = False, True

    assert activator.wait_until_ready(deadline=60) == instance


def test_a_silent_leader_is_replaced_after_its_lease(ssm, instance) -> None:
    elb = LoadBalancer()
    wall = [1000.0]
    first, second = held(ssm, elb, instance, wall=wall), held(ssm, elb, instance, wall=wall)

    assert first.signal.lead() is True
    assert second.signal.lead() is False
    wall[0] += LEADER_LEASE_SECONDS + 1  # the first invocation ended without finding anything

    assert second.signal.lead() is True
    assert first.signal.lead() is False


def test_polls_back_off_exponentially_with_full_jitter(ssm, instance) -> None:
    elb = LoadBalancer()
    clock = FakeClock()
    ceilings: list[float] = []
    activator = Activator(SETTINGS, Group(), elb, None, address_of=lambda _: instance, clock=clock, sleep=clock.sleep,
                          ssm=ssm, jitter=lambda low, high: ceilings.append(high) or low + (high - low) / 2)

    assert activator.wait_until_ready(deadline=100) is None

    assert ceilings[:5] == [2, 4, 8, 16, 16]
    assert max(ceilings) == MAX_POLL_SECONDS
    assert clock.slept[:4] == [1, 2, 4, 8]  # the jitter's pick within each ceiling


def test_a_cleared_signal_names_no_instance_so_the_next_wake_elects_a_new_leader(ssm, instance) -> None:
    elb = LoadBalancer()
    elb.healthy = True
    activator = held(ssm, elb, instance)
    activator.poll()
    assert activator.signal.address() == instance

    activator.signal.clear()

    assert activator.signal.read() is None


def test_when_ssm_fails_every_held_request_asks_the_load_balancer_itself(instance) -> None:
    """A denied or throttled parameter must not leave the held requests waiting on a leader
    nobody could become."""
    class Broken:
        class exceptions:  # noqa: N801 - boto3's shape
            ParameterNotFound = type("ParameterNotFound", (ClientError,), {})
            ParameterAlreadyExists = type("ParameterAlreadyExists", (ClientError,), {})

        def get_parameter(self, **_: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "GetParameter")

        def put_parameter(self, **_: Any) -> None:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutParameter")

    elb = LoadBalancer()
    elb.healthy = True

    assert [held(Broken(), elb, instance).poll() for _ in range(3)] == [instance] * 3
    assert elb.calls == 3

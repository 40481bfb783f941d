"""Test doubles shared by several test modules: a loopback moto server and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def moto_server() -> Iterator[str]:
    """A real moto server on 127.0.0.1 (an ephemeral port): boto3 goes through its HTTP API,
    never to AWS. Yields the endpoint URL; each caller gets its own server and state."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class FakeClock:
    """A clock that moves only when code under test sleeps, so waiting out a timeout is instant."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def listener_on_new_load_balancer(elbv2: Any, name: str, subnets: list[str]) -> str:
    """A new ALB in moto with one HTTP :80 listener whose default answer is 404, as the
    gateway builds it; the listener's ARN."""
    balancer = elbv2.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]["ListenerArn"]
    return listener

"""`kiln serve`'s router against real local runtimes stand-ins: it bounds bodies as the
runtime does, skips a runtime that is not answering, and its /ping says which one."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from infra.local.router import Backend, TrafficRouter
from infra.local.stack import free_port
from runtime.app import Receive, Scope, Send, respond

INVOCATIONS = "/serving-endpoints/fraud-scorer/invocations"


async def echo_runtime(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in runtime: /ping is 200, an invocation answers with the body's size."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await respond(send, 200, b"\n")
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await respond(send, 200, json.dumps({"received": size}).encode())


@contextmanager
def running(app: object) -> Iterator[str]:
    """A real uvicorn server on loopback for the test's duration; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "stand-in runtime did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def call(router: TrafficRouter, requests: list[tuple[str, str, bytes]]) -> list[httpx.Response]:
    """Send (method, path, body) requests through the router in order, in-process."""
    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=router)
        async with httpx.AsyncClient(transport=transport, base_url="http://router", timeout=30) as client:
            try:
                return [await client.request(method, path, content=body) for method, path, body in requests]
            finally:
                await router.aclose()

    return asyncio.run(send_all())


@pytest.fixture
def live_url() -> Iterator[str]:
    with running(echo_runtime) as url:
        yield url


def test_a_body_over_the_payload_limit_is_refused_with_413_before_any_runtime_sees_it(live_url: str) -> None:
    router = TrafficRouter({"fraud-scorer": [Backend("champion", live_url, 100)]}, max_payload_bytes=1024)

    too_large, fits = call(router, [("POST", INVOCATIONS, b"x" * 1025), ("POST", INVOCATIONS, b"x" * 1024)])

    assert too_large.status_code == 413
    assert too_large.json() == {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "request body is larger than 1024 bytes"}
    assert (fits.status_code, fits.json()) == (200, {"received": 1024})


def test_traffic_goes_around_a_runtime_that_does_not_answer(live_url: str) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"
    router = TrafficRouter({"fraud-scorer": [Backend("champion", dead_url, 90), Backend("challenger", live_url, 10)]})

    responses = call(router, [("POST", INVOCATIONS, b"{}")] * 10)

    assert [r.status_code for r in responses] == [200] * 10
    assert router.endpoints["fraud-scorer"].backends[0].down_until > time.monotonic()


def test_an_endpoint_with_no_runtime_answering_is_503_with_retry_after() -> None:
    router = TrafficRouter({"fraud-scorer": [Backend("champion", f"http://127.0.0.1:{free_port()}", 100)]})

    first, second = call(router, [("POST", INVOCATIONS, b"{}")] * 2)

    assert first.status_code == second.status_code == 503
    assert second.json()["message"] == "no served model of endpoint 'fraud-scorer' is answering"
    assert second.headers["retry-after"] == "1"


def test_ping_is_ready_only_while_every_runtime_is(live_url: str) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"
    all_live = TrafficRouter({"fraud-scorer": [Backend("champion", live_url, 100)]})
    one_dead = TrafficRouter({"fraud-scorer": [Backend("champion", live_url, 90), Backend("challenger", dead_url, 10)]})

    [ready] = call(all_live, [("GET", "/ping", b"")])
    [not_ready] = call(one_dead, [("GET", "/ping", b"")])

    assert ready.status_code == 200
    assert not_ready.status_code == 503
    assert list(not_ready.json()["served_models"]) == ["fraud-scorer/challenger"]
    assert not_ready.json()["served_models"]["fraud-scorer/challenger"].startswith(f"not answering at {dead_url}")

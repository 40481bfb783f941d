"""A local stand-in for the ALB: route /serving-endpoints/<name>/invocations to the served
models' runtimes by the stack's traffic weights (used by `kiln serve`).

Smooth weighted round-robin (the nginx algorithm) rather than a random draw: over any
100 requests a 90/10 split is exactly 90/10, so a client test sees the configured split
without statistical slack, and a 0 % route gets nothing (it stays warm, as on AWS).
`/serving-endpoints/<name>/served-models/<served>/invocations` reaches one served model
directly, as on Databricks.

Like an ALB it bounds what it forwards and skips what cannot answer: a body over the
runtime's payload limit is refused with 413 before any runtime sees it, a runtime that
refuses connections is taken out of the rotation for a health-check interval (the request
goes to another served model of the endpoint), and `/ping` is 200 only while every runtime's
own /ping is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from runtime.app import Receive, Scope, Send, read_body, refuse, respond
from runtime.errors import RETRY_AFTER, NotFound, NotReady, ServingError, error_body
from runtime.settings import DEFAULT_BODY_TIMEOUT_SECONDS, DEFAULT_MAX_PAYLOAD_BYTES

FORWARDED_REQUEST_HEADERS = ("content-type", "authorization")
FORWARDED_RESPONSE_HEADERS = ("content-type", "retry-after", "x-kiln-served-model", "www-authenticate",
                              "server-timing")

# A runtime that refused a connection is skipped this long, an ALB health check's interval
# (elbv2 HealthCheckIntervalSeconds default 30 s is for remote targets; a local one restarts fast).
DOWN_SECONDS = 5.0
# How long /ping waits for each runtime's own /ping.
PING_TIMEOUT_SECONDS = 2.0

# One line per routed request (`kiln serve` prints it): which served model answered, how, how fast.
access_log = logging.getLogger("kiln.serve.access")


@dataclass
class Backend:
    served_model: str
    url: str
    weight: int
    # time.monotonic() until which the backend is out of the rotation (0: in it).
    down_until: float = 0.0

    def up(self, now: float) -> bool:
        return now >= self.down_until


@dataclass
class WeightedChoice:
    """Smooth weighted round-robin over backends with weight > 0."""

    backends: list[Backend]
    _current: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._current = [0] * len(self.backends)

    def next(self, now: float = 0.0) -> Backend | None:
        """The next backend by weight among those up at `now`."""
        live = [i for i, b in enumerate(self.backends) if b.weight > 0 and b.up(now)]
        total = sum(self.backends[i].weight for i in live)
        if total == 0:
            return None
        for i in live:
            self._current[i] += self.backends[i].weight
        best = max(live, key=lambda i: self._current[i])
        self._current[best] -= total
        return self.backends[best]


class TrafficRouter:
    """ASGI app: endpoint name → weighted backends (runtime base URLs)."""

    def __init__(self, endpoints: dict[str, list[Backend]], timeout_seconds: float = 600,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS) -> None:
        self.endpoints = {name: WeightedChoice(backends) for name, backends in endpoints.items()}
        self.max_payload_bytes = max_payload_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self._client = httpx.AsyncClient(timeout=timeout_seconds, limits=httpx.Limits(max_keepalive_connections=64))

    async def aclose(self) -> None:
        await self._client.aclose()

    def _backend(self, path: str) -> Backend:
        """The backend for `path`: NotFound when nothing is routed there, NotReady when every
        served model of the endpoint is out of the rotation."""
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "serving-endpoints" or parts[-1] != "invocations":
            raise NotFound(f"no route for {path}")
        choice = self.endpoints.get(parts[1])
        if choice is None:
            raise NotFound(f"no endpoint {parts[1]!r}; endpoints here: {', '.join(sorted(self.endpoints))}")
        if len(parts) == 3:
            backend = choice.next(time.monotonic())
            if backend is not None:
                return backend
            if any(b.weight > 0 for b in choice.backends):
                raise NotReady(f"no served model of endpoint {parts[1]!r} is answering")
            raise NotFound(f"endpoint {parts[1]!r} routes no traffic")
        if len(parts) == 5 and parts[2] == "served-models":
            backend = next((b for b in choice.backends if b.served_model == parts[3]), None)
            if backend is not None:
                return backend
            raise NotFound(f"endpoint {parts[1]!r} has no served model {parts[3]!r}")
        raise NotFound(f"no route for {path}")

    async def ping(self) -> tuple[int, bytes]:
        """200 while every runtime's own /ping is 200; else 503 naming those that are not.
        A runtime that answers is put back into the rotation, one that does not is taken out."""
        backends = [(name, b) for name, choice in self.endpoints.items() for b in choice.backends]
        states = await asyncio.gather(*(self._backend_ping(backend) for _, backend in backends))
        down = {f"{name}/{backend.served_model}": state for (name, backend), state in zip(backends, states, strict=True)
                if state is not None}
        if not down:
            return 200, b"\n"
        return 503, json.dumps({"status": "NOT_READY", "served_models": down}).encode()

    async def _backend_ping(self, backend: Backend) -> str | None:
        """None when the runtime is ready, else why not."""
        try:
            response = await self._client.get(f"{backend.url}/ping", timeout=PING_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            backend.down_until = time.monotonic() + DOWN_SECONDS
            return f"not answering at {backend.url} ({type(error).__name__})"
        if response.status_code != 200:
            return f"/ping answered {response.status_code}"
        backend.down_until = 0.0
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in ("/ping", "/health"):
            status, body = await self.ping()
            await respond(send, status, body, headers=RETRY_AFTER if status != 200 else ())
            return
        started = time.perf_counter()
        try:
            backend = self._backend(path)
            body = await read_body(scope, receive, self.max_payload_bytes, self.body_timeout_seconds)
        except ServingError as error:
            access_log.info("%s %s → %d (%s)", scope["method"], path, error.status, error)
            await refuse(send, error)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k.decode("latin-1") in FORWARDED_REQUEST_HEADERS}
        endpoint = path.strip("/").split("/")[1]
        while True:
            url = f"{backend.url}/serving-endpoints/{endpoint}/invocations"
            try:
                response = await self._client.request(scope["method"], url, content=body, headers=headers)
                break
            except httpx.ConnectError as error:
                # Nothing was sent: take the runtime out of the rotation and try another.
                backend.down_until = time.monotonic() + DOWN_SECONDS
                access_log.info("%s %s → %s down for %g s (%s)", scope["method"], path, backend.served_model,
                                DOWN_SECONDS, error)
                try:
                    if "/served-models/" in path:
                        raise NotReady(f"served model {backend.served_model!r} at {backend.url} is not answering")
                    backend = self._backend(path)
                except ServingError as refusal:
                    await refuse(send, refusal)
                    return
            except httpx.HTTPError as error:
                access_log.info("%s %s → %s 502 (%s)", scope["method"], path, backend.served_model, error)
                await respond(send, 502, error_body("BAD_GATEWAY", f"served model {backend.served_model!r} at {backend.url}: {error}"))
                return
        access_log.info("%s %s → %s %d %.0f ms", scope["method"], path, backend.served_model, response.status_code,
                        (time.perf_counter() - started) * 1000)
        forwarded: Any = tuple((k.encode(), response.headers[k].encode("latin-1"))
                               for k in FORWARDED_RESPONSE_HEADERS if k in response.headers and k != "content-type")
        await respond(send, response.status_code, response.content,
                       response.headers.get("content-type", "application/json").encode("latin-1"), forwarded)

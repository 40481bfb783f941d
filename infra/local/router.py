"""A local stand-in for the ALB: route /serving-endpoints/<name>/invocations to the served
models' runtimes by the stack's traffic weights (used by `kiln serve`).

Smooth weighted round-robin (the nginx algorithm) rather than a random draw: over any
100 requests a 90/10 split is exactly 90/10, so a client test sees the configured split
without statistical slack, and a 0 % route gets nothing (it stays warm, as on AWS).
`/serving-endpoints/<name>/served-models/<served>/invocations` reaches one served model
directly, as on Databricks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from runtime.app import Receive, Scope, Send, respond
from runtime.errors import error_body

FORWARDED_REQUEST_HEADERS = ("content-type", "authorization")
FORWARDED_RESPONSE_HEADERS = ("content-type", "retry-after", "x-kiln-served-model", "www-authenticate")

# One line per routed request (`kiln serve` prints it): which served model answered, how, how fast.
access_log = logging.getLogger("kiln.serve.access")


@dataclass
class Backend:
    served_model: str
    url: str
    weight: int


@dataclass
class WeightedChoice:
    """Smooth weighted round-robin over backends with weight > 0."""

    backends: list[Backend]
    _current: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._current = [0] * len(self.backends)

    def next(self) -> Backend | None:
        total = sum(b.weight for b in self.backends)
        if total == 0:
            return None
        for i, backend in enumerate(self.backends):
            self._current[i] += backend.weight
        best = max(range(len(self.backends)), key=lambda i: self._current[i])
        self._current[best] -= total
        return self.backends[best]


class TrafficRouter:
    """ASGI app: endpoint name → weighted backends (runtime base URLs)."""

    def __init__(self, endpoints: dict[str, list[Backend]], timeout_seconds: float = 600) -> None:
        self.endpoints = {name: WeightedChoice(backends) for name, backends in endpoints.items()}
        self._client = httpx.AsyncClient(timeout=timeout_seconds, limits=httpx.Limits(max_keepalive_connections=64))

    async def aclose(self) -> None:
        await self._client.aclose()

    def _backend(self, path: str) -> tuple[Backend | None, str | None]:
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "serving-endpoints" or parts[-1] != "invocations":
            return None, f"no route for {path}"
        choice = self.endpoints.get(parts[1])
        if choice is None:
            return None, f"no endpoint {parts[1]!r}; endpoints here: {', '.join(sorted(self.endpoints))}"
        if len(parts) == 3:
            backend = choice.next()
            return backend, None if backend else f"endpoint {parts[1]!r} routes no traffic"
        if len(parts) == 5 and parts[2] == "served-models":
            backend = next((b for b in choice.backends if b.served_model == parts[3]), None)
            return backend, None if backend else f"endpoint {parts[1]!r} has no served model {parts[3]!r}"
        return None, f"no route for {path}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in ("/ping", "/health"):
            await respond(send, 200, b"\n")
            return
        started = time.perf_counter()
        backend, problem = self._backend(path)
        if backend is None:
            access_log.info("%s %s → 404 (%s)", scope["method"], path, problem or path)
            await respond(send, 404, error_body("ENDPOINT_NOT_FOUND", problem or path))
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k.decode("latin-1") in FORWARDED_REQUEST_HEADERS}
        url = f"{backend.url}/serving-endpoints/{path.strip('/').split('/')[1]}/invocations"
        try:
            response = await self._client.request(scope["method"], url, content=bytes(body), headers=headers)
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

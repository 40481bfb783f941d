"""The runtime's HTTP surface as one plain ASGI callable.

No framework and no middleware: every response is sent as one start message and one body
message with a Content-Length, so uvicorn writes it out at once on a kept-alive connection
(a streaming middleware layer turns each response into chunked writes and costs a
keep-alive round trip). The app itself never parses a payload; workers do.

Routes: /ping (readiness), /health (liveness), /version, /metrics, and predictions on
/invocations and /serving-endpoints/<endpoint>/invocations (the path the ALB forwards).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from typing import Any

from runtime import RUNTIME_VERSION
from runtime.auth import BearerAuth
from runtime.capture import CLIENT_REQUEST_ID_HEADER, REQUEST_ID_HEADER, Exchange, InferenceCapture
from runtime.errors import RETRY_AFTER as RETRY_AFTER_HEADERS
from runtime.errors import (
    BodyTimeout,
    DeadlineExceeded,
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServingError,
    ShuttingDown,
    Unauthenticated,
    WorkerDied,
)
from runtime.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from runtime.metrics import Metrics
from runtime.settings import RuntimeSettings
from runtime.workers import Scored, WorkerPool

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("kiln.runtime")

JSON = b"application/json"
SERVER_TIMING_HEADER = b"server-timing"


class Phase(Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"


async def respond(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                   headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Send, error: ServingError) -> None:
    await respond(send, error.status, error.body(), headers=error.headers)


async def read_body(scope: Scope, receive: Receive, limit: int, timeout_seconds: float) -> bytes:
    """The whole body within `timeout_seconds` (BodyTimeout, 408) and `limit` bytes
    (PayloadTooLarge, 413): the runtime and `kiln serve`'s router bound a request alike."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is larger than {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout_seconds:g} s; send it whole, faster") from None
    return b"".join(chunks)


def server_timing(body_seconds: float, scored: Scored, total_seconds: float) -> tuple[bytes, bytes]:
    """The W3C Server-Timing header (milliseconds) of an answered invocation: where its time
    went, so a client, a browser's developer tools or benchmarks/request_profile.py can tell the
    model's work from waiting. `worker` is the pipe there and back plus the worker's whole call;
    `total` runs from the request's arrival to its answer. Stages a request never reached are left out."""
    stages = scored.reply.stages
    spans = (("body", body_seconds), ("queue", scored.queued_seconds), ("worker", scored.worker_seconds),
             ("parse", stages.parse), ("predict", stages.predict), ("serialize", stages.serialize),
             ("total", total_seconds))
    return SERVER_TIMING_HEADER, ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in spans if seconds).encode()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class Reply:
    """The ASGI send of one HTTP request: adds its request id to the response headers, and
    keeps the request body read and the body sent (references, not copies), which an
    invocation's inference-table row records, and when the request arrived, which its
    timings count from."""

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self.request_id = request_id
        self.request_body = b""
        self.body = b""
        self.started = time.perf_counter()

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, self.request_id.encode())]}
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.body = self.body + chunk if self.body else chunk
        await self._send(message)


class RuntimeApp:
    """ASGI app over a WorkerPool; `phase` is flipped by the server (loaded, SIGTERM)."""

    def __init__(self, settings: RuntimeSettings, pool: WorkerPool, metrics: Metrics | None = None,
                 capture: InferenceCapture | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics or Metrics()
        self.capture = capture
        self.auth = BearerAuth(settings.auth_token_sha256, settings.auth_required)
        self.phase = Phase.LOADING
        self.model_digest: str | None = settings.model_digest
        self.served_header = (b"x-kiln-served-model", (settings.served_model or "").encode("latin-1"))
        self._endpoint_path = f"/serving-endpoints/{settings.endpoint}/invocations" if settings.endpoint else None
        # Invocations not yet answered, so the end of the drain window can answer them (`abandon`).
        self._answering: set[asyncio.Task[Any]] = set()
        self._abandoned = False

    def _is_invocation_path(self, path: str) -> bool:
        if path == "/invocations":
            return True
        if self._endpoint_path:
            return path == self._endpoint_path
        return path.startswith("/serving-endpoints/") and path.endswith("/invocations") and path.count("/") == 3

    def version(self) -> dict[str, Any]:
        return {
            "endpoint": self.settings.endpoint,
            "served_model": self.settings.served_model,
            "model": self.settings.model_name,
            "model_version": self.settings.model_version,
            "model_uri": self.settings.model_uri,
            "model_digest": self.model_digest,
            "runtime_version": RUNTIME_VERSION,
            **{key: self.pool.info.get(key) for key in ("mlflow_version", "run_id", "model_uuid", "flavors")},
            # What the workers run on (None while loading): a GPU model on the CPU shows here.
            "device": ",".join(sorted({str(d.get("device")) for d in self.pool.devices.values()})) or None,
            "devices": self.devices(),
        }

    def devices(self) -> list[dict[str, Any]]:
        """Each worker's device report (runtime.device), by worker index."""
        return [{"worker": index, **report} for index, report in sorted(self.pool.devices.items())]

    def device_summary(self) -> str:
        """The workers' devices in one phrase, for the log line that says the runtime is ready."""
        shown = [
            f"worker {d['worker']} on {d.get('device')}"
            + (f" ({', '.join(gpu['name'] for gpu in d['gpus'])})" if d.get("gpus") else "")
            for d in self.devices()
        ]
        return "; ".join(shown) or "no worker reported its device"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return  # the server owns startup and shutdown
        if scope["type"] != "http":
            return
        reply = Reply(send, str(uuid.uuid4()))
        try:
            await self._route(scope, receive, reply)
        except ServingError as error:
            await refuse(reply, error)

    async def _route(self, scope: Scope, receive: Receive, send: Reply) -> None:
        path = scope["path"]
        if not self.auth.allows(path, _header(scope, b"authorization")):
            raise Unauthenticated("missing or invalid bearer token")
        if self._is_invocation_path(path):
            if scope["method"] != "POST":
                raise MethodNotAllowed("use POST for invocations")
            await self._invoke(scope, receive, send)
        elif path == "/ping":
            await self._ping(send)
        elif path == "/health":
            # Liveness: the process and its event loop answer. Readiness is /ping.
            await respond(send, 200, json.dumps({"status": "alive", "phase": self.phase.value}).encode())
        elif path == "/version":
            await respond(send, 200, json.dumps(self.version()).encode())
        elif path == "/metrics":
            text = self.metrics.render(self.pool.in_flight, self.pool.busy, self.pool.size, self.ready, self.devices())
            if self.capture is not None:
                text += "\n".join(self.capture.metric_lines()) + "\n"
            await respond(send, 200, text.encode(), METRICS_CONTENT_TYPE.encode())
        else:
            raise NotFound(f"no route for {path}")

    @property
    def ready(self) -> bool:
        """Loaded, warmed up, not draining, and at least one worker alive (while the only
        worker is being replaced after a timeout, the ALB should send nothing here)."""
        return self.phase is Phase.READY and self.pool.live > 0

    async def _ping(self, send: Send) -> None:
        if self.ready:
            await respond(send, 200, b"\n")
        else:
            await respond(send, 503, json.dumps({"status": self.phase.value}).encode(), headers=RETRY_AFTER_HEADERS)

    async def _invoke(self, scope: Scope, receive: Receive, send: Reply) -> None:
        arrived = time.time()
        status = await self._answer(scope, receive, send)
        seconds = time.perf_counter() - send.started
        self.metrics.observe(status, seconds)
        raw_client_id = _header(scope, CLIENT_REQUEST_ID_HEADER)
        client_id = raw_client_id.decode("latin-1") if raw_client_id else None
        # The access log: every answer's id (the caller's x-request-id) findable in the logs, as
        # an error when the runtime failed it.
        log.log(logging.WARNING if status >= 500 else logging.INFO, "request %s answered %d after %.3f s%s",
                send.request_id, status, seconds, f" (client request id {client_id})" if client_id else "")
        if self.capture is not None and self.capture.sampled():
            self.capture.offer(Exchange(send.request_id, client_id, arrived,
                                        seconds, status, send.request_body, send.body))

    async def _answer(self, scope: Scope, receive: Receive, send: Reply) -> int:
        """Answer one invocation and return its status; every path ends in exactly one response.

        The body is read before admission: a slow sender holds a connection, never a place
        among the admitted, so it cannot starve the clients that sent theirs."""
        task = asyncio.current_task()
        assert task is not None
        self._answering.add(task)
        try:
            if self.phase is Phase.DRAINING:
                raise ShuttingDown("the runtime is shutting down")
            if self.phase is not Phase.READY:
                raise NotReady("the model is still loading")
            body = await read_body(scope, receive, self.settings.max_payload_bytes, self.settings.body_timeout_seconds)
            body_seconds = time.perf_counter() - send.started
            send.request_body = body
            self.pool.admit()
            try:
                return await self._predict(scope, body, send, body_seconds)
            finally:
                self.pool.release()
        except ServingError as error:
            await refuse(send, error)
            return error.status
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            task.uncancel()
            shutting_down = ShuttingDown("the runtime shut down before this request was answered (drain window over)")
            await refuse(send, shutting_down)
            return shutting_down.status
        finally:
            self._answering.discard(task)

    async def _predict(self, scope: Scope, body: bytes, send: Reply, body_seconds: float) -> int:
        timeout = self.settings.request_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                content_type = (_header(scope, b"content-type") or b"").decode("latin-1")
                scored = await self.pool.predict(content_type, body)
        except TimeoutError:
            raise DeadlineExceeded(f"no prediction within the request timeout of {timeout:g} s") from None
        except WorkerDied as died:
            log.error("request %s: %s while predicting; a replacement is starting", send.request_id, died)
            raise WorkerDied(f"the model process exited while predicting ({died}); it is being restarted") from None
        reply = scored.reply
        timing = server_timing(body_seconds, scored, time.perf_counter() - send.started)
        await respond(send, reply.status, reply.body, reply.content_type.encode("latin-1"), (self.served_header, timing))
        return reply.status

    @property
    def unanswered(self) -> int:
        """Invocations received and not yet answered: reading their body, waiting, or predicting."""
        return len(self._answering)

    async def abandon(self, grace_seconds: float = 2) -> None:
        """At the end of the drain window: answer every invocation still unanswered with a JSON
        503 + Retry-After (uvicorn would otherwise cut them off with a plain-text 500)."""
        self._abandoned = True
        pending = list(self._answering)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace_seconds)

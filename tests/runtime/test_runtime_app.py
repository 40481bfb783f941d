"""The runtime's HTTP surface, driven in-process as the ASGI app uvicorn calls: routes, auth,
readiness, the payload limit (declared or chunked), the body timeout, admission by latency
budget, and the exact status, error_code and headers of every answer.

Most behaviours need no model process: a pool that was never started has no free worker, so an
admitted request waits (and meets its timeout), while refusals happen before any worker is asked.
The rest share one pool with one real worker process serving the example fraud scorer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import pytest

from runtime import RUNTIME_VERSION
from runtime.app import Phase, RuntimeApp
from runtime.auth import token_sha256
from runtime.settings import RuntimeSettings
from runtime.workers import WorkerPool
from tests.example_model import COLUMNS, EXAMPLE_PREDICTIONS, EXAMPLE_ROWS, fraud_scorer_dir

__all__ = ["fraud_scorer_dir"]

URI = "s3://kiln-artifacts/models/abc/"
TOKEN = "s3cret-token"
JSON_TYPE = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EXAMPLE = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": EXAMPLE_ROWS}}).encode()
BIG_TIMEOUT = 120  # seconds; only ever reached when something is broken


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    reads: int  # how many times the app asked for the request body

    def json(self) -> Any:
        assert self.headers["content-type"] == JSON_TYPE
        return json.loads(self.body)


def error(code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "message": message}


Receive = Callable[[], Awaitable[dict[str, Any]]]


async def call(app: RuntimeApp, method: str, path: str, chunks: tuple[bytes, ...] = (b"",),
               headers: dict[str, str] | None = None, hold: asyncio.Event | None = None,
               disconnect: bool = False, messages: list[dict[str, Any]] | None = None) -> Answer:
    """One request as an ASGI server hands it over: the body in `chunks`, more_body=True on all
    but the last (which leaves it out: False by default), or the raw `messages`; with `disconnect`
    the client goes away after the chunks; with `hold`, the body arrives only once the event is
    set. Asked again after the last chunk, receive waits, as a server's does until the client
    goes away."""
    if messages is None:
        messages = [{"type": "http.request", "body": chunk,
                     **({"more_body": True} if disconnect or i < len(chunks) - 1 else {})}
                    for i, chunk in enumerate(chunks)]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if hold is not None:
            await hold.wait()
        if not messages:
            await asyncio.Event().wait()
        await asyncio.sleep(0)  # a real server yields here
        return messages.pop(0)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]}
    await app(scope, receive, send)

    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    names = [k for k, _ in sent[0]["headers"]]
    assert len(names) == len(set(names)), names
    answer = Answer(sent[0]["status"], {k.decode(): v.decode("latin-1") for k, v in sent[0]["headers"]},
                    sent[1]["body"], reads)
    assert answer.headers["content-length"] == str(len(answer.body))
    return answer


def make_app(phase: Phase = Phase.READY, workers: int = 1, **settings: Any) -> RuntimeApp:
    """An app over a pool that was never started (no worker processes), sized as the server sizes it."""
    runtime_settings = RuntimeSettings(URI, workers=workers, **settings)
    pool = WorkerPool(None, runtime_settings.workers, runtime_settings.admission_budget_seconds, 1,
                      on_fatal=lambda _: None)
    app = RuntimeApp(runtime_settings, pool)
    app.phase = phase
    return app


def request(app: RuntimeApp, method: str, path: str, **kwargs: Any) -> Answer:
    return asyncio.run(call(app, method, path, **kwargs))


def invoke(app: RuntimeApp, body: bytes = EXAMPLE, **headers: str) -> Answer:
    headers = {"content-type": JSON_TYPE, "content-length": str(len(body)), **headers}
    return request(app, "POST", "/invocations", chunks=(body,), headers=headers)


# --- Routes -------------------------------------------------------------------------------------

def test_unknown_path_is_a_404_naming_it() -> None:
    answer = request(make_app(), "GET", "/predict")

    assert (answer.status, answer.json()) == (404, error("ENDPOINT_NOT_FOUND", "no route for /predict"))


@pytest.mark.parametrize("phase", list(Phase))
def test_health_is_alive_in_every_phase_and_says_which(phase: Phase) -> None:
    answer = request(make_app(phase), "GET", "/health")

    assert (answer.status, answer.json()) == (200, {"status": "alive", "phase": phase.value})


@pytest.mark.parametrize(("phase", "status"), [(Phase.LOADING, "loading"), (Phase.DRAINING, "draining"),
                                               (Phase.READY, "ready")])
def test_ping_is_503_with_retry_after_unless_ready_with_a_live_worker(phase: Phase, status: str) -> None:
    # READY with no live worker: the only worker is being replaced, so the ALB must send nothing
    answer = request(make_app(phase), "GET", "/ping")

    assert (answer.status, answer.json(), answer.headers["retry-after"]) == (503, {"status": status}, "1")


def test_version_names_the_model_before_any_worker_has_loaded_it() -> None:
    digest = "ab" * 32
    app = make_app(Phase.LOADING, endpoint="fraud-scorer", served_model="champion", model_name="fraud-scorer",
                   model_version="3", model_digest=digest)

    answer = request(app, "GET", "/version")

    assert (answer.status, answer.json()) == (200, {
        "endpoint": "fraud-scorer", "served_model": "champion", "model": "fraud-scorer", "model_version": "3",
        "model_uri": URI, "model_digest": digest, "runtime_version": RUNTIME_VERSION,
        "mlflow_version": None, "run_id": None, "model_uuid": None, "flavors": None, "device": None, "devices": [],
    })


def test_metrics_are_prometheus_text_with_in_flight_busy_workers_and_readiness() -> None:
    async def scenario() -> tuple[Answer, Answer]:
        app = make_app(workers=3, request_timeout_seconds=BIG_TIMEOUT)
        # its body arrived, so it is admitted, and waits: this pool has no worker to give it
        held = asyncio.create_task(call(app, "POST", "/invocations", (EXAMPLE,), {"content-type": JSON_TYPE}))
        while app.pool.in_flight < 1:
            await asyncio.sleep(0)
        during = await call(app, "GET", "/metrics")
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)
        return during, await call(app, "GET", "/metrics")

    during, after = asyncio.run(scenario())

    assert (during.status, during.headers["content-type"]) == (200, METRICS_TYPE)
    lines = set(during.body.decode().splitlines())
    assert {"kiln_requests_in_flight 1", "kiln_workers_busy 0", "kiln_workers 3", "kiln_ready 0"} <= lines
    assert "kiln_requests_in_flight 0" in after.body.decode().splitlines()


@pytest.mark.parametrize("path", ["/invocations", "/serving-endpoints/fraud-scorer/invocations"])
def test_invocation_paths_reach_admission(path: str) -> None:
    answer = request(make_app(Phase.LOADING, endpoint="fraud-scorer"), "POST", path)

    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


@pytest.mark.parametrize("path", [
    "/serving-endpoints/ticket-router/invocations",  # another endpoint's path
    "/serving-endpoints/fraud-scorer/invocations/",
    "/serving-endpoints/fraud-scorer",
])
def test_invocation_path_of_another_endpoint_is_a_404(path: str) -> None:
    answer = request(make_app(Phase.LOADING, endpoint="fraud-scorer"), "POST", path)

    assert (answer.status, answer.json()) == (404, error("ENDPOINT_NOT_FOUND", f"no route for {path}"))


def test_without_an_endpoint_any_endpoints_invocation_path_is_served() -> None:
    answer = request(make_app(Phase.LOADING), "POST", "/serving-endpoints/anything/invocations")

    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


@pytest.mark.parametrize("path", [
    "/serving-endpoints/a/served-models/invocations",
    "/serving-endpoints/a/invocations/x",
    "/endpoints/a/invocations",
    "/serving-endpoints/invocations",
])
def test_without_an_endpoint_other_paths_are_still_404(path: str) -> None:
    answer = request(make_app(Phase.LOADING), "POST", path)

    assert answer.status == 404


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_invocations_other_than_post_are_a_405_with_allow(method: str) -> None:
    app = make_app()

    answer = request(app, method, "/invocations")

    assert (answer.status, answer.json(), answer.headers["allow"]) == (
        405, error("METHOD_NOT_ALLOWED", "use POST for invocations"), "POST")
    assert app.metrics.requests_by_status == {}


def test_lifespan_and_websocket_scopes_get_no_answer() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        raise AssertionError("nothing is read")

    for scope_type in ("lifespan", "websocket"):
        asyncio.run(make_app()({"type": scope_type, "path": "/invocations", "method": "POST", "headers": []},
                               receive, send))

    assert sent == []


def test_a_new_app_is_loading_until_the_server_says_otherwise() -> None:
    app = RuntimeApp(RuntimeSettings(URI), WorkerPool(None, 1, 1, 1, on_fatal=lambda _: None))

    health, ping = request(app, "GET", "/health"), request(app, "GET", "/ping")

    assert (health.json(), ping.status, ping.json()) == ({"status": "alive", "phase": "loading"}, 503,
                                                         {"status": "loading"})


# --- Bearer auth --------------------------------------------------------------------------------

def authed_app(phase: Phase = Phase.LOADING) -> RuntimeApp:
    return make_app(phase, auth_token_sha256=(token_sha256("other-token"), token_sha256(TOKEN)))


@pytest.mark.parametrize("authorization", [None, "", f"Basic {TOKEN}", "Bearer wrong-token", "Bearer ", TOKEN])
@pytest.mark.parametrize("path", ["/invocations", "/version", "/metrics", "/nowhere"])
def test_without_a_valid_token_every_other_path_is_a_401(authorization: str | None, path: str) -> None:
    headers = {} if authorization is None else {"authorization": authorization}

    answer = request(authed_app(), "POST", path, headers=headers)

    assert (answer.status, answer.json(), answer.headers["www-authenticate"]) == (
        401, error("UNAUTHENTICATED", "missing or invalid bearer token"), "Bearer")


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", "Bearer other-token"])
def test_any_configured_token_passes(authorization: str) -> None:
    answer = request(authed_app(), "POST", "/invocations", headers={"authorization": authorization})

    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


@pytest.mark.parametrize(("path", "status"), [("/ping", 503), ("/health", 200)])
def test_health_checks_need_no_token(path: str, status: int) -> None:
    assert request(authed_app(), "GET", path).status == status


# --- Not ready ----------------------------------------------------------------------------------

def test_invocation_while_loading_is_a_503_to_retry() -> None:
    app = make_app(Phase.LOADING)

    answer = invoke(app)

    assert (answer.status, answer.json(), answer.headers["retry-after"]) == (
        503, error("TEMPORARILY_UNAVAILABLE", "the model is still loading"), "1")
    assert "connection" not in answer.headers
    assert (answer.reads, app.metrics.requests_by_status) == (0, {503: 1})


def test_invocation_while_draining_is_a_503_that_closes_the_connection() -> None:
    app = make_app(Phase.DRAINING)

    answer = invoke(app)

    assert (answer.status, answer.json(), answer.headers["retry-after"], answer.headers["connection"]) == (
        503, error("TEMPORARILY_UNAVAILABLE", "the runtime is shutting down"), "1", "close")
    assert (answer.reads, app.metrics.requests_by_status) == (0, {503: 1})


# --- Payload limit ------------------------------------------------------------------------------
# At or under the limit the request goes on to wait for a worker, and with none free it meets
# its (short) timeout: a 504 shows the body was accepted, a 413 that it was refused.

LIMIT = 16
TOO_LARGE = error("REQUEST_LIMIT_EXCEEDED", "request body is larger than 16 bytes")
TIMED_OUT = error("DEADLINE_EXCEEDED", "no prediction within the request timeout of 0.05 s")


def limited_app() -> RuntimeApp:
    return make_app(max_payload_bytes=LIMIT, request_timeout_seconds=0.05)


def test_declared_length_over_the_limit_is_a_413_before_reading_the_body() -> None:
    app = limited_app()

    answer = invoke(app, b"x" * (LIMIT + 1))

    assert (answer.status, answer.json(), answer.headers["connection"]) == (413, TOO_LARGE, "close")
    assert (answer.reads, app.metrics.requests_by_status) == (0, {413: 1})


def test_declared_length_at_the_limit_is_read() -> None:
    app = limited_app()

    answer = invoke(app, b"x" * LIMIT)

    assert (answer.status, answer.json()) == (504, TIMED_OUT)
    assert app.metrics.requests_by_status == {504: 1}
    assert app.pool.in_flight == 0


@pytest.mark.parametrize(("chunks", "status"), [
    ((b"x" * 8, b"x" * 7), 504),  # 15 bytes
    ((b"x" * 8, b"x" * 8), 504),  # 16 bytes: at the limit
    ((b"x" * 8, b"x" * 8, b"x"), 413),  # 17 bytes
    ((b"x" * 17,), 413),
    ((b"", b"x" * 16, b""), 504),
])
def test_chunked_body_without_content_length_is_held_to_the_limit(chunks: tuple[bytes, ...], status: int) -> None:
    app = limited_app()

    answer = request(app, "POST", "/invocations", chunks=chunks, headers={"content-type": JSON_TYPE})

    assert (answer.status, answer.json()) == (status, TOO_LARGE if status == 413 else TIMED_OUT)
    assert app.metrics.requests_by_status == {status: 1}


def test_request_messages_without_a_body_key_count_as_empty() -> None:
    # the ASGI spec makes "body" optional (default b""); 16 bytes in all is at the limit
    messages = [{"type": "http.request", "more_body": True}, {"type": "http.request", "body": b"x" * 16}]

    answer = request(limited_app(), "POST", "/invocations", messages=messages)

    assert (answer.status, answer.json()) == (504, TIMED_OUT)


def test_body_longer_than_its_declared_length_is_still_held_to_the_limit() -> None:
    answer = request(limited_app(), "POST", "/invocations", chunks=(b"x" * 10, b"x" * 10),
                     headers={"content-type": JSON_TYPE, "content-length": "10"})

    assert (answer.status, answer.json()) == (413, TOO_LARGE)


def test_default_limit_is_databricks_16_mib() -> None:
    # 16 * 1024 * 1024 = 16777216 bytes
    app = make_app(request_timeout_seconds=0.05)

    at_limit = request(app, "POST", "/invocations", headers={"content-length": "16777216"})
    over = request(app, "POST", "/invocations", headers={"content-length": "16777217"})

    assert (at_limit.status, over.status) == (504, 413)
    assert over.json() == error("REQUEST_LIMIT_EXCEEDED", "request body is larger than 16777216 bytes")


# --- Admission ----------------------------------------------------------------------------------
# Admitted requests wait for a worker this pool never started, so they stay admitted until cancelled.

async def _send_all(app: RuntimeApp, complete: int, slow: int = 0) -> tuple[list[Answer], int]:
    """Send `complete` requests with their whole body and `slow` ones whose body never arrives, all at
    once; once each complete one is admitted or answered: the answers, and the count admitted."""
    never = asyncio.Event()
    tasks = [asyncio.create_task(call(app, "POST", "/invocations", (EXAMPLE[:5], EXAMPLE[5:]),
                                      {"content-type": JSON_TYPE}, hold=never)) for _ in range(slow)]
    tasks += [asyncio.create_task(call(app, "POST", "/invocations", (EXAMPLE,), {"content-type": JSON_TYPE}))
              for _ in range(complete)]
    try:
        for _ in range(10_000):
            if sum(task.done() for task in tasks) + app.pool.in_flight == complete:
                break
            await asyncio.sleep(0)
        return [task.result() for task in tasks if task.done()], app.pool.in_flight
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def budget_app(workers: int, budget: float, service: float, **settings: Any) -> RuntimeApp:
    app = make_app(workers=workers, queue_budget_seconds=budget, request_timeout_seconds=BIG_TIMEOUT, **settings)
    app.pool.admission.observe(service)
    return app


@pytest.mark.parametrize(("workers", "budget", "service", "admitted"), [
    (2, 1.0, 0.5, 6),  # expected waits 0, 0, 0.25, 0.5, 0.75, 1.0 fit; the 7th (1.25 s) does not
    (1, 1.0, 0.5, 3),  # 0, 0.5, 1.0
    (4, 0.1, 1.0, 4),  # only the four that find a worker free
])
def test_requests_are_admitted_while_their_expected_wait_fits_the_budget(workers: int, budget: float, service: float,
                                                                        admitted: int) -> None:
    app = budget_app(workers, budget, service)

    answers, in_flight = asyncio.run(_send_all(app, 9))

    assert in_flight == admitted
    assert [a.status for a in answers] == [429] * (9 - admitted)
    assert app.pool.in_flight == 0


def test_refusal_over_the_budget_is_databricks_429_with_retry_after_the_excess() -> None:
    app = budget_app(1, 1.0, 2.5)  # the second request would wait 2.5 s, 1.5 s over: retry in 2

    answers, _ = asyncio.run(_send_all(app, 2))

    assert [(a.status, a.json(), a.headers["retry-after"]) for a in answers] == [(429, error(
        "REQUEST_LIMIT_EXCEEDED",
        "the expected wait for a worker (2.5 s) is over this model's admission budget (1 s); retry later"), "2")]
    assert app.metrics.requests_by_status == {429: 1}


def test_default_budget_is_1_s_whatever_the_request_timeout() -> None:
    app = make_app(workers=1, request_timeout_seconds=597)
    app.pool.admission.observe(0.25)

    answers, in_flight = asyncio.run(_send_all(app, 9))

    assert (in_flight, len(answers)) == (5, 4)  # waits of 0, 0.25, 0.5, 0.75 and 1 s fit 1 s


def test_default_budget_is_half_a_request_timeout_shorter_than_2_s() -> None:
    app = make_app(workers=1, request_timeout_seconds=1)
    app.pool.admission.observe(0.25)

    answers, in_flight = asyncio.run(_send_all(app, 9))

    assert (in_flight, len(answers)) == (3, 6)  # waits of 0, 0.25 and 0.5 s fit 0.5 s


def test_a_request_still_sending_its_body_takes_no_place() -> None:
    # one worker and room for no wait: three slow senders must not keep out the request that sent its body
    app = budget_app(1, 0.001, 1.0)

    answers, in_flight = asyncio.run(_send_all(app, complete=1, slow=3))

    assert (answers, in_flight) == ([], 1)


def test_a_body_not_sent_within_the_body_timeout_is_a_408_that_closes_the_connection() -> None:
    app = make_app(body_timeout_seconds=0.05, request_timeout_seconds=BIG_TIMEOUT)

    answer = request(app, "POST", "/invocations", chunks=(EXAMPLE[:5], EXAMPLE[5:]), hold=asyncio.Event(),
                     headers={"content-type": JSON_TYPE})

    assert (answer.status, answer.json(), answer.headers["connection"]) == (408, error(
        "DEADLINE_EXCEEDED", "the request body did not arrive within 0.05 s; send it whole, faster"), "close")
    assert (app.metrics.requests_by_status, app.pool.in_flight) == ({408: 1}, 0)


def test_requests_that_ended_free_their_places() -> None:
    app = budget_app(1, 0.001, 1.0, max_payload_bytes=LIMIT)

    refused = [invoke(app, b"x" * (LIMIT + 1)).status for _ in range(3)]

    assert refused == [413, 413, 413]
    assert app.pool.in_flight == 0


# --- Request timeout ----------------------------------------------------------------------------

def test_request_that_waits_past_its_timeout_is_a_504_and_frees_its_place() -> None:
    app = make_app(request_timeout_seconds=0.05)

    answer = invoke(app)

    assert (answer.status, answer.json()) == (504, TIMED_OUT)
    assert (app.metrics.requests_by_status, app.pool.in_flight) == ({504: 1}, 0)
    metrics = request(app, "GET", "/metrics").body.decode().splitlines()
    latency = float(next(line for line in metrics if line.startswith("kiln_request_duration_seconds_sum ")).split()[1])
    assert "kiln_request_duration_seconds_count 1" in metrics
    assert 0.05 <= latency < 10  # the request timeout, plus a little


class StuckWorker:
    """Stands in for a worker whose prediction never returns."""

    index = 0
    process = SimpleNamespace(pid=None)

    async def call(self, requests: list[tuple[str, bytes]]) -> None:
        await asyncio.Event().wait()

    def kill(self) -> None:
        pass


def test_a_prediction_that_overran_the_timeout_counts_its_time_in_the_service_estimate() -> None:
    # otherwise a model whose every prediction times out would keep the estimate at 0 and admit everyone
    app = make_app(request_timeout_seconds=0.05)
    app.pool.closing = True  # nothing to replace the stuck worker with
    app.pool._idle.put_nowait(StuckWorker())

    answer = invoke(app)

    assert answer.status == 504
    assert app.pool.admission.service_seconds >= 0.05


# --- With a worker process ----------------------------------------------------------------------
# One test, because a worker process takes seconds to start and mutation testing runs the test
# again for every mutant it reaches; starting the pool inside the test (not in a fixture) also
# lets mutmut's per-test time budget include that start.

def served_app(pool: WorkerPool, **settings: Any) -> RuntimeApp:
    app = RuntimeApp(RuntimeSettings(URI, request_timeout_seconds=BIG_TIMEOUT, **settings), pool)
    app.phase = Phase.READY
    return app


async def _with_a_worker(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    fatal: list[str] = []
    pool = WorkerPool(model_dir, workers=1, admission_budget_seconds=BIG_TIMEOUT, load_timeout_seconds=BIG_TIMEOUT,
                      on_fatal=fatal.append)
    await asyncio.wait_for(pool.start(), BIG_TIMEOUT)
    try:
        # a prediction comes back as the worker answered it, naming the served model
        app = served_app(pool, endpoint="fraud-scorer", served_model="champion")
        answer = await call(app, "POST", "/serving-endpoints/fraud-scorer/invocations", (EXAMPLE,),
                            {"content-type": JSON_TYPE, "content-length": str(len(EXAMPLE))})
        assert (answer.status, answer.json()) == (200, {"predictions": EXAMPLE_PREDICTIONS})
        assert answer.headers["x-kiln-served-model"] == "champion"
        assert (app.metrics.requests_by_status, pool.in_flight) == ({200: 1}, 0)

        # a chunked CSV body reaches the worker whole, with its content type; no served model, empty header
        app = served_app(pool)
        csv = (",".join(COLUMNS) + "\n" + "\n".join(",".join(map(repr, row)) for row in EXAMPLE_ROWS) + "\n").encode()
        answer = await call(app, "POST", "/invocations", (csv[:10], csv[10:50], csv[50:]),
                            {"content-type": "text/csv; charset=utf-8"})
        assert (answer.status, answer.json()) == (200, {"predictions": EXAMPLE_PREDICTIONS})
        assert answer.headers["x-kiln-served-model"] == ""

        # the worker's own error reply passes through with its status
        app = served_app(pool, served_model="challenger")
        answer = await call(app, "POST", "/invocations", (b"{}",), {"content-type": "text/plain"})
        assert (answer.status, answer.json()["error_code"]) == (400, "BAD_REQUEST")
        assert answer.json()["message"].startswith("unsupported Content-Type 'text/plain'")
        assert answer.headers["x-kiln-served-model"] == "challenger"
        assert app.metrics.requests_by_status == {400: 1}

        # a body without Content-Type, and one the client stopped sending: the worker says what is wrong
        answer = await call(app, "POST", "/invocations", (EXAMPLE,))
        assert (answer.status, answer.json()["message"]) == (400, "missing Content-Type header; use one of "
                                                             "['text/csv', 'application/json', 'application/vnd.apache.parquet']")
        answer = await call(app, "POST", "/invocations", (EXAMPLE[:20],), {"content-type": JSON_TYPE}, disconnect=True)
        assert answer.status == 400
        assert answer.json()["message"].startswith("Invalid input. Ensure that input is a valid JSON formatted string.")
        assert app.metrics.requests_by_status == {400: 3}

        # ready with a live worker: /ping 200, kiln_ready 1, /version describes the loaded model
        app = served_app(pool)
        ping, metrics, version = (await call(app, "GET", "/ping"), await call(app, "GET", "/metrics"),
                                  await call(app, "GET", "/version"))
        uuid = next(line.split(": ", 1)[1] for line in (model_dir / "MLmodel").read_text().splitlines()
                    if line.startswith("model_uuid: "))
        assert (ping.status, ping.body) == (200, b"\n")
        assert {"kiln_ready 1", "kiln_workers 1"} <= set(metrics.body.decode().splitlines())
        assert {k: version.json()[k] for k in ("mlflow_version", "run_id", "model_uuid", "flavors")} == {
            "mlflow_version": mlflow.__version__, "run_id": None, "model_uuid": uuid,
            "flavors": ["python_function", "sklearn"]}
        # ...and the device the worker runs on: here (no torch) the CPU, saying why (issue 18: a GPU
        # model that fell back to the CPU looked like one on its GPU)
        assert version.json()["device"] == "cpu"
        assert version.json()["devices"] == [{
            "worker": 0, "device": "cpu", "framework": None, "gpus": [],
            "reason": "no GPU framework in this environment (torch is not installed)",
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}]
        assert 'kiln_worker_device_info{worker="0",device="cpu",gpu=""} 1' in metrics.body.decode().splitlines()

        # draining, the live worker does not make it ready
        app.phase = Phase.DRAINING
        assert (await call(app, "GET", "/ping")).status == 503

        # the model process is killed (as the OOM killer would) while the runtime waits for its reply:
        # a 500 for that request, and not ready until the replacement has loaded
        app = served_app(pool)
        worker = await pool._idle.get()
        pool._idle.put_nowait(worker)
        os.kill(worker.process.pid, signal.SIGKILL)
        with caplog.at_level(logging.ERROR, logger="kiln.runtime"):
            answer = await call(app, "POST", "/invocations", (EXAMPLE,), {"content-type": JSON_TYPE})
        ping = await call(app, "GET", "/ping")
        died = f"worker 0 (pid {worker.process.pid}) exited with code -9"
        assert (answer.status, answer.json()) == (500, error(
            "INTERNAL_ERROR", f"the model process exited while predicting ({died}); it is being restarted"))
        assert app.metrics.requests_by_status == {500: 1}
        assert f"request {answer.headers['x-request-id']}: {died} while predicting; a replacement is starting" in (
            caplog.messages)
        assert (ping.status, ping.json()) == (503, {"status": "ready"})
    finally:
        # the replacement still loading is cancelled, which kills it
        restarts = [task for task in asyncio.all_tasks() if task.get_coro().__qualname__ == "WorkerPool._restart"]
        for task in restarts:
            task.cancel()
        await asyncio.gather(*restarts, return_exceptions=True)
        await pool.close(grace_seconds=5)
    assert fatal == []


def test_requests_are_answered_by_a_real_worker_process(fraud_scorer_dir: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    asyncio.run(_with_a_worker(fraud_scorer_dir, caplog))

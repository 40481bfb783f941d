"""The runtime's life: listen at once, fetch, load, warm up, serve, drain on SIGTERM.

The HTTP listener starts first so the ALB and `docker` see a live process (/health 200)
while /ping stays 503 until every worker has loaded the model and predicted its input
example. Any failure to get there is logged and ends the process with a non-zero code:
the ASG replaces the instance and an instance refresh rolls back (DESIGN decision 4).

SIGTERM (docker stop, scale-in, instance refresh) flips readiness to 503 and refuses new
requests, lets admitted ones finish within KILN_DRAIN_SECONDS (the target group's
deregistration delay), then stops the workers and exits 0.

With KILN_METRIC_DIMENSIONS set, the in-flight metric is published from READY until drain
(cloudwatch.py). Not while loading: every instance publishes under the same dimensions and
target tracking averages them, so a loading instance's 0 would pull the average down in the
middle of a scale-out and hold back the next one; it takes no traffic, so it has no load to
report. Not while draining either: the ALB has stopped sending it requests and it is leaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator

import uvicorn

from runtime import logs
from runtime.app import Phase, RuntimeApp
from runtime.auth import TokenHashError, TokenHashRefresh
from runtime.capture import CAPTURE_FLUSH_ON_DRAIN_SECONDS, InferenceCapture
from runtime.cloudwatch import InFlightPublisher
from runtime.fetch import FetchError, fetch
from runtime.secrets import SecretError, parse_reference, read_secret, resolve_environment
from runtime.settings import RuntimeSettings
from runtime.workers import Batching, GpuAssignment, WorkerPool, WorkerStartError

log = logging.getLogger("kiln.runtime")

EXIT_OK = 0
EXIT_FAILED = 1


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM means drain first, which is ours."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_implementation() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _loop_factory():  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def serve(settings: RuntimeSettings) -> int:
    """Run one runtime until SIGTERM (exit 0) or a failure to become ready (exit 1)."""
    logs.configure("kiln-runtime", settings.served_label)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(settings))


def _secrets_at_start(settings: RuntimeSettings, app: RuntimeApp) -> TokenHashRefresh | None:
    """Resolve the model's secret environment variables into this process's environment (the
    workers inherit it) and load the token hashes; either failing stops the start, so an
    instance that cannot read its secrets never takes traffic."""
    for name, value in resolve_environment(settings.secret_environment).items():
        os.environ[name] = value
    if settings.secret_environment:
        log.info("resolved %d secret environment variable(s): %s", len(settings.secret_environment),
                 ", ".join(name for name, _ in settings.secret_environment))
    if not settings.auth_token_sha256_secret:
        return None
    reference = parse_reference(settings.auth_token_sha256_secret)
    refresh = TokenHashRefresh(app.auth, lambda: read_secret(reference), reference.id, settings.auth_refresh_seconds,
                               fixed=settings.auth_token_sha256)
    count = refresh.load()
    log.info("bearer-token auth on: %d token(s) from %s, re-read every %g s", count, reference.id,
             settings.auth_refresh_seconds)
    return refresh


async def _become_ready(settings: RuntimeSettings, app: RuntimeApp, pool: WorkerPool) -> TokenHashRefresh | None:
    refresh = await asyncio.to_thread(_secrets_at_start, settings, app)
    log.info("fetching %s", settings.model_uri)
    local = await asyncio.to_thread(fetch, settings.model_uri, settings.model_digest, settings.cache_dir)
    app.model_digest = local.digest
    log.info("loading digest %s with %d worker(s)", local.digest, settings.workers)
    pool.model_dir = local.directory
    info = await pool.start()
    app.phase = Phase.READY
    log.info("ready on port %d: digest %s, load %.2f s, warm-up %s s, %s", settings.port, local.digest,
             info.get("load_seconds", 0), info.get("warm_up_seconds"), app.device_summary())
    return refresh


def _start_publisher(settings: RuntimeSettings, pool: WorkerPool) -> asyncio.Task[None] | None:
    if not settings.metric_dimensions:
        return None
    publisher = InFlightPublisher(settings.metric_dimensions, settings.metric_period_seconds,
                                  pool.in_flight_gauge.take_peak)
    return asyncio.create_task(publisher.run())


async def _serve(settings: RuntimeSettings) -> int:
    loop = asyncio.get_running_loop()
    failure: asyncio.Future[str] = loop.create_future()

    def fail(message: str) -> None:
        if not failure.done():
            failure.set_result(message)

    gpu = GpuAssignment(settings.gpus, settings.spread_across_gpus, settings.require_gpu)
    batching = Batching(settings.max_batch_size, settings.max_batch_delay_ms / 1000, settings.request_timeout_seconds)
    pool = WorkerPool(None, settings.workers, settings.admission_budget_seconds, settings.load_timeout_seconds, fail,
                      gpu, batching, log_label=settings.served_label)
    capture = InferenceCapture(settings) if settings.capture_uri else None
    app = RuntimeApp(settings, pool, capture=capture)
    server = _Server(uvicorn.Config(
        app, host=settings.host, port=settings.port, http=_http_implementation(), lifespan="off",
        access_log=False, log_level="warning", timeout_keep_alive=int(settings.keep_alive_seconds),
        timeout_graceful_shutdown=1,
    ))
    terminate = asyncio.Event()
    # Which signal stopped it, for the log: SIGTERM from docker stop or a scale-in, SIGINT from
    # Ctrl-C at a terminal (`kiln runtime`, `kiln serve`), drained the same way.
    received: list[str] = []

    def stop(sig: signal.Signals) -> None:
        received.append(sig.name)
        terminate.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    server_task = asyncio.create_task(server.serve())
    ready_task = asyncio.create_task(_become_ready(settings, app, pool))
    term_task = asyncio.create_task(terminate.wait())
    publisher_task: asyncio.Task[None] | None = None
    capture_task = asyncio.create_task(capture.run()) if capture else None
    refresh_task: asyncio.Task[None] | None = None
    try:
        await asyncio.wait({ready_task, term_task, server_task, failure}, return_when=asyncio.FIRST_COMPLETED)
        if server_task.done():
            return _server_failed(server_task)
        if failure.done():
            log.error("%s; exiting", failure.result())
            return EXIT_FAILED
        if not ready_task.done():  # SIGTERM while loading: nothing admitted, nothing to drain
            ready_task.cancel()
            log.info("%s before the model was ready; exiting", received[0])
            return EXIT_OK
        if error := ready_task.exception():
            if isinstance(error, (FetchError, WorkerStartError, SecretError, TokenHashError)):
                log.error("cannot serve %s: %s", settings.model_uri, error)
            else:
                log.error("cannot serve %s", settings.model_uri, exc_info=error)
            return EXIT_FAILED
        publisher_task = _start_publisher(settings, pool)
        if refresh := ready_task.result():
            refresh_task = asyncio.create_task(refresh.run())
        await asyncio.wait({term_task, server_task, failure}, return_when=asyncio.FIRST_COMPLETED)
        if server_task.done():
            return _server_failed(server_task)
        if failure.done():
            log.error("%s; exiting", failure.result())
            return EXIT_FAILED
        if publisher_task:
            publisher_task.cancel()
        await _drain(app, pool, settings.drain_seconds, received[0])
        if capture:
            # Not cancelled first: an upload under way finishes, then the rest goes.
            await _flush_capture(capture)
        return EXIT_OK
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        app.phase = Phase.DRAINING
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(server_task, 5)
        for task in (ready_task, term_task, publisher_task, capture_task, refresh_task):
            if task:
                task.cancel()
        await pool.close()
        log.info("stopped")


async def _flush_capture(capture: InferenceCapture) -> None:
    """Upload the rows of the requests drain just answered, within a bound: a dead S3 must not
    hold the instance past its stop timeout."""
    pending = capture.pending
    try:
        await asyncio.wait_for(capture.flush(), CAPTURE_FLUSH_ON_DRAIN_SECONDS)
    except TimeoutError:
        log.warning("inference table: %d row(s) not uploaded within %d s of drain; dropped", pending,
                    CAPTURE_FLUSH_ON_DRAIN_SECONDS)
        return
    log.info("inference table: flushed %d row(s) on drain (%d written, %s dropped in all)", pending, capture.written,
             sum(capture.dropped.values()))


def _server_failed(server_task: asyncio.Task[None]) -> int:
    error = server_task.exception()
    log.error("the HTTP server stopped: %s", error or "it could not start (is the port free?)")
    return EXIT_FAILED


async def _drain(app: RuntimeApp, pool: WorkerPool, drain_seconds: float, signal_name: str) -> None:
    app.phase = Phase.DRAINING
    log.info("%s: readiness is 503; draining %d unanswered request(s) (%d admitted) for up to %g s",
             signal_name, app.unanswered, pool.in_flight, drain_seconds)
    deadline = asyncio.get_running_loop().time() + drain_seconds
    while app.unanswered and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    if app.unanswered:
        log.warning("drain window of %g s over with %d request(s) unanswered; answering them 503",
                    drain_seconds, app.unanswered)
        pool.closing = True  # the workers of abandoned predictions are killed, not replaced
        await app.abandon()
    else:
        log.info("drained")

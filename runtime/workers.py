"""Worker processes, one per unit of provisioned concurrency, and admission control in front of them.

A unit of Databricks' "provisioned concurrency" processes one request at a time, so each
worker is one process with its own copy of the model: predict never blocks
the HTTP event loop and a model's GIL-bound code uses its own core. In front of them sits
admission by latency budget (runtime/admission.py): a request waits for a worker while its
expected wait fits the budget, and is refused at once (429 + Retry-After) beyond it.

A worker whose request overran the timeout is killed and replaced: a prediction that never
returns must not take a worker away for good. A worker that dies mid-request is replaced too.

With batching on (max_batch_size > 1), a free worker takes every request waiting for a worker,
up to max_batch_size, after waiting up to max_batch_delay for more; the worker predicts the
ones that merge in one call (runtime.scoring.score_batch). Under light load a request finds a
free worker and goes alone, so batching only changes anything once requests queue.

On a GPU host every worker would otherwise load onto device 0 (MLflow's default CUDA device)
and leave the others idle: with GPUs to share, worker i sees only GPU i mod N through
CUDA_VISIBLE_DEVICES, or one worker spreads a model too large for one device across all of
them with MLflow's Transformers device map (MLFLOW_HUGGINGFACE_USE_DEVICE_MAP).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runtime
from runtime import logs, protocol
from runtime.admission import Admission
from runtime.errors import DeadlineExceeded, WorkerDied
from runtime.gauge import PeakGauge
from runtime.protocol import Reply

log = logging.getLogger("kiln.runtime")

# The folder that holds the runtime package: the app folder in the image, the checkout here.
APP_ROOT = Path(runtime.__file__).resolve().parent.parent


class WorkerStartError(Exception):
    """A worker could not load or warm up the model; carries the worker's own reason."""


@dataclass(frozen=True)
class GpuAssignment:
    """How the workers share the host's GPUs (RuntimeSettings gpus, spread_across_gpus, require_gpu)."""

    gpus: int = 0
    spread: bool = False
    require: bool = False

    def worker_env(self, index: int) -> dict[str, str]:
        """What worker `index` is told of the GPUs, on top of the runtime's own environment."""
        if self.spread:
            return {"MLFLOW_HUGGINGFACE_USE_DEVICE_MAP": "true"}
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": str(index % self.gpus)}
        return {}

    def worker_args(self) -> list[str]:
        return ["--require-gpu"] if self.require else []


@dataclass(frozen=True)
class Batching:
    """How many waiting requests one worker call may take (1: batching off), how long a free
    worker waits for more, and how long a batch may run before its worker is killed."""

    max_size: int = 1
    max_delay_seconds: float = 0.0
    timeout_seconds: float = 600.0


@dataclass(frozen=True)
class Scored:
    """A worker's reply, with how long the request waited for a worker and how long it then
    took on one (the pipe there and back, and the worker's whole call, a batch's included)."""

    reply: Reply
    queued_seconds: float
    worker_seconds: float


@dataclass
class _Waiting:
    """A request waiting for a worker, batching on: what to send, since when, and where its answer goes."""

    content_type: str
    body: bytes
    since: float
    answer: asyncio.Future[Scored]


class Worker:
    """One model process and the two pipes to it."""

    def __init__(self, process: asyncio.subprocess.Process, index: int) -> None:
        self.process = process
        self.index = index
        self.info: dict[str, Any] = {}

    @classmethod
    async def spawn(cls, model_dir: Path, index: int, gpu: GpuAssignment, log_label: str = "") -> Worker:
        env = {**os.environ, **gpu.worker_env(index), logs.LABEL_VARIABLE: log_label}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_ROOT), env.get("PYTHONPATH")]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runtime.worker", str(model_dir), *gpu.worker_args(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )
        return cls(process, index)

    async def _read_reply(self) -> Reply:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            header = await stdout.readexactly(protocol.REPLY_HEADER_SIZE)
            body_size, status, ctype_size, stages = protocol.decode_reply_header(header)
            payload = await stdout.readexactly(ctype_size + body_size)
        except asyncio.IncompleteReadError:
            code = await self.process.wait()
            raise WorkerDied(f"worker {self.index} (pid {self.process.pid}) exited with code {code}") from None
        return Reply(status, payload[:ctype_size].decode("latin-1"), payload[ctype_size:], stages)

    async def wait_ready(self) -> dict[str, Any]:
        """The first frame: the model's description once loaded and warmed up, or the reason not."""
        try:
            reply = await self._read_reply()
        except WorkerDied as died:
            raise WorkerStartError(f"{died} before the model loaded (see the log above)") from None
        if reply.status != 200:
            raise WorkerStartError(f"worker {self.index}: {reply.body.decode(errors='replace')}")
        self.info = json.loads(reply.body)
        return self.info

    async def call(self, requests: list[tuple[str, bytes]]) -> list[Reply]:
        """Send (content type, body) requests as one batch; their replies, in order."""
        stdin = self.process.stdin
        assert stdin is not None
        last = len(requests) - 1
        try:
            stdin.write(b"".join(protocol.encode_request(content_type, body, more=index < last)
                                 for index, (content_type, body) in enumerate(requests)))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            code = await self.process.wait()
            raise WorkerDied(f"worker {self.index} (pid {self.process.pid}) exited with code {code}") from None
        return [await self._read_reply() for _ in requests]

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def stop(self, grace_seconds: float) -> None:
        """Close the request pipe (the worker exits at EOF); kill if it does not in time."""
        if self.process.returncode is not None:
            return
        if self.process.stdin:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), grace_seconds)
        except TimeoutError:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


class WorkerPool:
    """N model processes behind admission by latency budget; `admit` is the only way in."""

    def __init__(self, model_dir: Path | None, workers: int, admission_budget_seconds: float,
                 load_timeout_seconds: float, on_fatal: Callable[[str], None],
                 gpu: GpuAssignment = GpuAssignment(), batching: Batching = Batching(), log_label: str = "") -> None:
        self.model_dir = model_dir
        # Handed to each worker, whose log lines then name the served model as the runtime's do.
        self.log_label = log_label
        self.size = workers
        self.admission = Admission(workers, admission_budget_seconds)
        self.load_timeout_seconds = load_timeout_seconds
        self.on_fatal = on_fatal
        self.gpu = gpu
        self.batching = batching
        # Each worker's device report (runtime.device) by worker index, replacements included.
        self.devices: dict[int, dict[str, Any]] = {}
        # Admitted and not yet answered (running plus queued); its peak feeds the CloudWatch metric.
        self.in_flight_gauge = PeakGauge()
        self.busy = 0
        self.live = 0
        self.info: dict[str, Any] = {}
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._all: set[Worker] = set()
        # Batching on: requests waiting for a worker, the task that hands them out, the batches running.
        self._waiting: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        # Set when the runtime stops: a worker lost from then on is not replaced.
        self.closing = False

    async def _start_one(self, index: int) -> Worker:
        if self.model_dir is None:
            raise WorkerStartError("no model directory to load (the model was not fetched)")
        worker = await Worker.spawn(self.model_dir, index, self.gpu, self.log_label)
        self._all.add(worker)
        try:
            await asyncio.wait_for(worker.wait_ready(), self.load_timeout_seconds)
        except TimeoutError:
            worker.kill()
            raise WorkerStartError(f"worker {index} did not load the model within {self.load_timeout_seconds:.0f} s") from None
        except BaseException:
            worker.kill()
            raise
        self.devices[index] = worker.info.get("device", {})
        return worker

    async def start(self) -> dict[str, Any]:
        """Start every worker in parallel; ready only when all loaded and warmed up."""
        results = await asyncio.gather(*(self._start_one(i) for i in range(self.size)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            for worker in self._all:
                worker.kill()
            raise failures[0]
        for worker in results:
            self._idle.put_nowait(worker)  # type: ignore[arg-type]
        self.live = self.size
        self.info = results[0].info  # type: ignore[union-attr]
        # The warm-up ran the request path once: the best guess of a prediction's cost until one is measured.
        self.admission.seed(self.info.get("warm_up_seconds"))
        if self.batching.max_size > 1:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        return self.info

    def admit(self) -> None:
        """Take a place among the admitted or raise Overloaded (429); pair with `release`."""
        self.admission.check(self.in_flight)
        self.in_flight_gauge.increment()

    def release(self) -> None:
        self.in_flight_gauge.decrement()

    @property
    def in_flight(self) -> int:
        return int(self.in_flight_gauge.value)

    async def predict(self, content_type: str, body: bytes) -> Scored:
        """Score on the next free worker, alone or, batching on, with others waiting then."""
        if self.batching.max_size > 1:
            waiting = _Waiting(content_type, body, time.perf_counter(), asyncio.get_running_loop().create_future())
            self._waiting.put_nowait(waiting)
            return await waiting.answer  # a request that times out cancels this; its batch runs on
        return await self._predict_alone(content_type, body)

    async def _predict_alone(self, content_type: str, body: bytes) -> Scored:
        """Cancellation (the request timeout) while a worker is busy kills that worker, because
        its pipe would otherwise carry a stale reply."""
        queued = time.perf_counter()
        worker = await self._idle.get()
        self.busy += 1
        started = time.perf_counter()
        try:
            [reply] = await worker.call([(content_type, body)])
        except WorkerDied:
            self._replace(worker)
            raise
        except BaseException:
            worker.kill()
            self._replace(worker)
            raise
        finally:
            self.busy -= 1
            # Every outcome counts, a timeout most of all: the worker was taken that long.
            took = time.perf_counter() - started
            self.admission.observe(took)
        self._idle.put_nowait(worker)
        return Scored(reply, started - queued, took)

    async def _dispatch(self) -> None:
        """Batching on: give each free worker the requests waiting then, up to max_size, after
        waiting up to max_delay for more to arrive."""
        while True:
            worker = await self._idle.get()
            batch = [await self._waiting.get()]
            if self.batching.max_delay_seconds and self._waiting.qsize() < self.batching.max_size - 1:
                await asyncio.sleep(self.batching.max_delay_seconds)
            while len(batch) < self.batching.max_size and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            batch = [waiting for waiting in batch if not waiting.answer.done()]  # timed out while waiting
            if not batch:
                self._idle.put_nowait(worker)
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(worker, batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _run_batch(self, worker: Worker, batch: list[_Waiting]) -> None:
        """One call for the batch; a worker that dies or overruns the timeout is replaced and
        every request of the batch still waiting gets the error."""
        self.busy += 1
        started = time.perf_counter()
        try:
            replies = await asyncio.wait_for(worker.call([(w.content_type, w.body) for w in batch]),
                                             self.batching.timeout_seconds)
        except WorkerDied as died:
            self._replace(worker)
            failure: Exception = died
        except TimeoutError:
            worker.kill()
            self._replace(worker)
            failure = DeadlineExceeded(f"no prediction within {self.batching.timeout_seconds:g} s")
        else:
            self._idle.put_nowait(worker)
            worker_seconds = time.perf_counter() - started
            for waiting, reply in zip(batch, replies):
                if not waiting.answer.done():
                    waiting.answer.set_result(Scored(reply, started - waiting.since, worker_seconds))
            return
        finally:
            self.busy -= 1
            # Per request: what a batch costs a worker, shared by the requests it served.
            self.admission.observe((time.perf_counter() - started) / len(batch))
        for waiting in batch:
            if not waiting.answer.done():
                waiting.answer.set_exception(failure)

    def _replace(self, worker: Worker) -> None:
        self._all.discard(worker)
        self.live -= 1
        if not self.closing:
            log.warning("replacing worker %d (pid %s)", worker.index, worker.process.pid)
            asyncio.get_running_loop().create_task(self._restart(worker.index))

    async def _restart(self, index: int) -> None:
        try:
            worker = await self._start_one(index)
        except Exception as error:  # noqa: BLE001 - any failure to restart ends the runtime, with its reason
            self.on_fatal(f"replacement worker {index} failed to start: {error}")
            return
        if self.closing:
            await worker.stop(1)
            return
        self.live += 1
        self._idle.put_nowait(worker)

    async def close(self, grace_seconds: float = 5) -> None:
        self.closing = True
        if self._dispatcher:
            self._dispatcher.cancel()
        await asyncio.gather(*(worker.stop(grace_seconds) for worker in list(self._all)))

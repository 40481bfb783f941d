"""The runtime under pressure (issue 13), with real processes on 127.0.0.1: overload is refused
by latency budget (429 only beyond it), slow senders hold nothing, hostile input never kills a
worker, 500s keep exception text out of the body, and a drain overrun still answers JSON.

One runtime with two workers serving the test Switchboard; "sleep:0.1" makes a request cost
0.1 s of a worker, so with a 2 s budget 8 clients always fit (at most 6 wait: 0.3 s) and 64
never do (up to 62 would wait: 3.1 s). Counts and statuses only: speed is benchmarks/' job.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime_models import RowsPerCall, Switchboard, save, switchboard_body
from tests.runtime_support import RunningProcess, server_timing, start_runtime

BUDGET_SECONDS = 2
BODY_TIMEOUT_SECONDS = 3
SLEEP = "sleep:0.1"
SUCCESSES_PER_CLIENT = 2
BOUND = 60  # seconds; only ever reached when something is broken


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    tmp = tmp_path_factory.mktemp("pressure")
    model = save(Switchboard(), tmp / "switchboard", example_action="ok")
    process = start_runtime(tmp, "runtime", KILN_MODEL_URI=str(model), KILN_WORKERS="2",
                            KILN_QUEUE_BUDGET_SECONDS=str(BUDGET_SECONDS),
                            KILN_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS))
    try:
        assert process.wait_for_ping()[-1:] == [200], process.log()
        yield process
    finally:
        process.stop()


def _worker_pids(runtime: RunningProcess) -> set[int]:
    pid = runtime.process.pid
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _closed_loop(runtime: RunningProcess, clients: int) -> list[httpx.Response]:
    """`clients` keep-alive clients, each sending until it has SUCCESSES_PER_CLIENT 200s (a refused
    request is sent again at once, as wrk does); every answer received."""
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=runtime.url, timeout=BOUND) as http:
            served = 0
            while served < SUCCESSES_PER_CLIENT and len(answers) < 100_000:
                answer = http.post("/invocations", content=switchboard_body(SLEEP), headers={"content-type": "application/json"})
                with lock:
                    answers.append(answer)
                served += answer.status_code == 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert not any(thread.is_alive() for thread in threads)
    return answers


def test_eight_clients_fit_the_budget_and_are_all_served(runtime: RunningProcess) -> None:
    answers = _closed_loop(runtime, 8)

    assert Counter(a.status_code for a in answers) == {200: 8 * SUCCESSES_PER_CLIENT}


def test_sixty_four_clients_get_429s_beyond_the_budget_and_every_admitted_one_is_served(
        runtime: RunningProcess) -> None:
    answers = _closed_loop(runtime, 64)

    statuses = Counter(a.status_code for a in answers)
    refused = [a for a in answers if a.status_code == 429]
    assert set(statuses) == {200, 429}  # no 503 (the old fixed queue), no 504 (admitted, then not served in time)
    assert statuses[200] == 64 * SUCCESSES_PER_CLIENT
    assert all(a.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" for a in refused)
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    waits = [float(re.search(r"worker \(([\d.]+) s\)", a.json()["message"]).group(1)) for a in refused]
    assert min(waits) >= BUDGET_SECONDS  # over it, as the message rounds it


def _slow_sender(runtime: RunningProcess) -> socket.socket:
    """A client that sends its headers and one byte of a 100-byte body, then nothing more."""
    port = int(runtime.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_slow_senders_hold_no_place_and_get_408_after_the_body_timeout(runtime: RunningProcess) -> None:
    # four slow senders held every admission place of the old runtime (issue 13): all else got 503
    senders = [_slow_sender(runtime) for _ in range(4)]
    try:
        served = [httpx.post(f"{runtime.url}/invocations", content=switchboard_body("ok"),
                             headers={"content-type": "application/json"}, timeout=BOUND).status_code
                  for _ in range(10)]
        replies = [_read_until_closed(sender) for sender in senders]
    finally:
        for sender in senders:
            sender.close()

    assert served == [200] * 10
    for reply in replies:
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error_code"] == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("body", [
    '{"inputs": ' + "[" * 1000 + "]" * 1000 + "}",  # killed a worker with RecursionError (issue 13)
    '{"dataframe_split": {"columns": ["action"], "data": [[NaN]]}}',
    '{"dataframe_split": {"columns": ["action"], "data": [[Infinity]]}}',
    '{"dataframe_split": {"columns": ["action"], "data": [[-Infinity]]}}',
], ids=["deep-nesting", "nan", "infinity", "minus-infinity"])
def test_hostile_input_is_a_400_and_no_worker_is_replaced(runtime: RunningProcess, body: str) -> None:
    before = _worker_pids(runtime)

    answers = [httpx.post(f"{runtime.url}/invocations", content=body, headers={"content-type": "application/json"},
                          timeout=BOUND) for _ in range(4)]
    after_ok = httpx.post(f"{runtime.url}/invocations", content=switchboard_body("ok"),
                          headers={"content-type": "application/json"}, timeout=BOUND)

    assert [(a.status_code, a.json()["error_code"]) for a in answers] == [(400, "BAD_REQUEST")] * 4
    assert after_ok.status_code == 200
    assert _worker_pids(runtime) == before
    assert "replacing worker" not in runtime.log()


def test_a_500_body_has_an_error_id_and_not_the_exception_which_the_log_has(runtime: RunningProcess) -> None:
    failed = httpx.post(f"{runtime.url}/invocations", content=switchboard_body("raise"),
                        headers={"content-type": "application/json"}, timeout=BOUND)

    error_id = re.search(r"\(error id ([0-9a-f]{12});", failed.json()["message"]).group(1)
    assert failed.status_code == 500
    assert "switchboard was told to fail" not in failed.text
    deadline = time.monotonic() + 10
    while f"error {error_id}" not in runtime.log():
        assert time.monotonic() < deadline, runtime.log()
        time.sleep(0.05)
    logged = runtime.log()[runtime.log().index(f"error {error_id}"):]
    assert "RuntimeError: switchboard was told to fail" in logged


def test_requests_unanswered_when_the_drain_window_ends_get_a_json_503(tmp_path: Path) -> None:
    model = save(Switchboard(), tmp_path / "switchboard", example_action="ok")
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(model), KILN_WORKERS="1", KILN_DRAIN_SECONDS="1")
    answers: list[httpx.Response] = []
    try:
        assert runtime.wait_for_ping()[-1:] == [200], runtime.log()
        # one predicting for longer than the drain window, one waiting behind it
        requests = [threading.Thread(target=lambda: answers.append(httpx.post(
            f"{runtime.url}/invocations", content=switchboard_body("sleep:30"), headers={"content-type": "application/json"},
            timeout=BOUND))) for _ in range(2)]
        for request in requests:
            request.start()
        runtime.wait_for_in_flight(2)

        runtime.process.send_signal(signal.SIGTERM)
        for request in requests:
            request.join(BOUND)
        code = runtime.process.wait(BOUND)
    finally:
        runtime.stop()

    assert [(a.status_code, a.headers["content-type"], a.json()["error_code"], a.headers["retry-after"])
            for a in answers] == [(503, "application/json", "TEMPORARILY_UNAVAILABLE", "1")] * 2
    assert code == 0


@pytest.fixture(scope="module")
def batching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """One worker that takes up to 8 waiting requests per call, with a 3 s request timeout and
    room for 2.9 s of waiting (the budget learns from every prediction, these slow ones too)."""
    tmp = tmp_path_factory.mktemp("batching")
    model = save(RowsPerCall(), tmp / "rows-per-call", example_action="ok")
    process = start_runtime(tmp, "runtime", KILN_MODEL_URI=str(model), KILN_WORKERS="1", KILN_MAX_BATCH_SIZE="8",
                            KILN_REQUEST_TIMEOUT_SECONDS="3", KILN_QUEUE_BUDGET_SECONDS="2.9")
    try:
        assert process.wait_for_ping()[-1:] == [200], process.log()
        yield process
    finally:
        process.stop()


def _in_flight(runtime: RunningProcess) -> int:
    text = httpx.get(f"{runtime.url}/metrics").text
    return int(re.search(r"^kiln_requests_in_flight (\d+)$", text, re.MULTILINE).group(1))


def _concurrently(runtime: RunningProcess, first: str, then: list[str]) -> tuple[httpx.Response, list[httpx.Response]]:
    """`first` alone on the worker, then `then` sent while it runs: they wait for the worker together."""
    answers: dict[int, httpx.Response] = {}

    def send(index: int, action: str) -> None:
        answers[index] = httpx.post(f"{runtime.url}/invocations", content=switchboard_body(action),
                                    headers={"content-type": "application/json"}, timeout=BOUND)

    threads = [threading.Thread(target=send, args=(0, first))]
    threads[0].start()
    deadline = time.monotonic() + 10
    while _in_flight(runtime) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    threads += [threading.Thread(target=send, args=(i + 1, action)) for i, action in enumerate(then)]
    for thread in threads[1:]:
        thread.start()
    while _in_flight(runtime) < 1 + len(then):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for thread in threads:
        thread.join(BOUND)
    return answers[0], [answers[i + 1] for i in range(len(then))]


def test_requests_waiting_for_a_worker_are_predicted_in_one_call(batching: RunningProcess) -> None:
    first, waited = _concurrently(batching, "sleep:1", ["ok"] * 5)

    assert (first.status_code, first.json()) == (200, {"predictions": [{"done": "1"}]})
    assert [(a.status_code, a.json()) for a in waited] == [(200, {"predictions": [{"done": "5"}]})] * 5
    # Server-Timing tells them apart: the first predicted for its 1 s sleep; the five waited in the
    # queue, then shared one predict call.
    timings = [server_timing(a) for a in (first, *waited)]
    assert timings[0]["predict"] >= 1000, timings[0]
    assert len({t["predict"] for t in timings[1:]}) == 1, timings
    assert all(t["queue"] > 0 and t["queue"] + t["worker"] <= t["total"] for t in timings), timings


def test_a_batch_that_overruns_the_timeout_gets_504s_and_its_worker_is_replaced(batching: RunningProcess) -> None:
    first, waited = _concurrently(batching, "sleep:30", ["sleep:30"])
    assert batching.wait_for_ping()[-1:] == [200]
    after = httpx.post(f"{batching.url}/invocations", content=switchboard_body("ok"), headers={"content-type": "application/json"},
                       timeout=BOUND)

    assert [a.status_code for a in (first, *waited)] == [504] * 2
    assert (after.status_code, after.json()) == (200, {"predictions": [{"done": "1"}]})


def test_a_batch_whose_worker_dies_answers_each_of_its_requests_500_and_the_worker_is_replaced(
        batching: RunningProcess) -> None:
    first, waited = _concurrently(batching, "sleep:1", ["exit", "ok"])
    assert batching.wait_for_ping()[-1:] == [200]
    after = httpx.post(f"{batching.url}/invocations", content=switchboard_body("ok"), headers={"content-type": "application/json"},
                       timeout=BOUND)

    assert first.status_code == 200
    assert [(a.status_code, a.json()["error_code"]) for a in waited] == [(500, "INTERNAL_ERROR")] * 2
    assert all("the model process exited while predicting" in a.json()["message"] for a in waited)
    assert after.status_code == 200

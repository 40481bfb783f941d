"""Load generators for the serving benchmark: closed loop (N clients back to back) and open
loop (requests arrive at a fixed rate whether or not earlier ones were answered).

Closed loop measures capacity: each client waits for its answer, so the offered load adapts
to the server. Open loop measures overload, as real traffic behaves: arrivals do not slow
down because the server did, so a server that queues without bound answers late (or never)
and one that refuses early keeps answering what it admits in time. Open-loop latency is
counted from each request's scheduled send time, not from when a connection was free, so
waiting inside the client is not hidden (coordinated omission).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HEADERS = {"Content-Type": "application/json"}
# An open-loop request not answered within this long counts as an error (the server hung).
OPEN_LOOP_TIMEOUT_SECONDS = 30.0
# The open-loop client keeps at most this many requests outstanding; past it an arrival is
# counted as not sent (the client, not the server, would be the bottleneck).
OPEN_LOOP_MAX_OUTSTANDING = 512


@dataclass
class LoadResult:
    phase: str  # "closed, 8 clients" or "open, 800/s"
    requests: int
    successes: int
    refusals: int  # 429 or 503: over the admission budget, or a full queue
    errors: int  # any other status, a timeout, a dropped connection, or not sent (open loop)
    seconds: float
    goodput: float  # 200 answers per second
    p50_ms: float  # of the 200 answers
    p99_ms: float
    offered_per_second: float = 0.0  # open loop: the arrival rate


def summarize(phase: str, statuses: list[int], latencies: list[float], elapsed: float,
              offered_per_second: float = 0.0) -> LoadResult:
    """Counts and percentiles of one phase; latencies are those of the 200 answers, in seconds."""
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else (latencies or [0.0]) * 99
    refusals = sum(status in (429, 503) for status in statuses)
    return LoadResult(phase, len(statuses), len(latencies), refusals, len(statuses) - len(latencies) - refusals,
                      round(elapsed, 3), round(len(latencies) / elapsed, 1) if elapsed else 0.0,
                      round(quantiles[49] * 1000, 2), round(quantiles[98] * 1000, 2), offered_per_second)


def closed_loop(port: int, body: str, clients: int, max_requests: int, max_seconds: float,
                path: str = "/invocations") -> LoadResult:
    """`clients` keep-alive HTTP/1.1 connections, each sending its next request once answered
    (a refused one is sent again at once, as wrk does); stops after `max_requests` or `max_seconds`."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    sent = [0]
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        local: list[float] = []
        local_statuses: list[int] = []
        while time.perf_counter() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    break
                sent[0] += 1
            started = time.perf_counter()
            connection.request("POST", path, body=body, headers=HEADERS)
            response = connection.getresponse()
            response.read()
            local_statuses.append(response.status)
            if response.status == 200:
                local.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(local)
            statuses.extend(local_statuses)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarize(f"closed, {clients} clients", statuses, latencies, time.perf_counter() - started)


# wrk's Lua hooks: POST the body, count refusals (429/503) and other non-200 answers per
# thread, and print one JSON line at the end (durations and latencies in microseconds).
WRK_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) refused = 0; other = 0 end
function response(status, headers, body)
  if status == 429 or status == 503 then refused = refused + 1 elseif status ~= 200 then other = other + 1 end
end
function done(summary, latency, requests)
  local refused_total, other_total = 0, 0
  for _, thread in ipairs(threads) do
    refused_total = refused_total + thread:get("refused"); other_total = other_total + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format('KILN {"requests": %d, "refused": %d, "other": %d, "socket_errors": %d, '
    .. '"duration_us": %d, "p50_us": %d, "p99_us": %d}\\n', summary.requests, refused_total, other_total,
    e.connect + e.read + e.write + e.timeout, summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_closed_loop(port: int, body: str, clients: int, seconds: float, path: str = "/invocations") -> LoadResult:
    """`clients` keep-alive connections from wrk (one thread: C, so the client takes little
    of the CPU the servers share with it) for `seconds`. wrk's percentiles cover every answer,
    so they are those of the 200s only when nothing was refused or failed (the counts say)."""
    with tempfile.TemporaryDirectory(prefix="kiln-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n"
                          "wrk.headers['Content-Type'] = 'application/json'\n" + WRK_SCRIPT)
        output = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script),
             f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    line = next(line for line in output.splitlines() if line.startswith("KILN "))
    counts = json.loads(line.removeprefix("KILN "))
    elapsed = counts["duration_us"] / 1e6
    errors = counts["other"] + counts["socket_errors"]
    successes = counts["requests"] - counts["refused"] - counts["other"]
    return LoadResult(f"closed, {clients} clients", counts["requests"], successes, counts["refused"], errors,
                      round(elapsed, 3), round(successes / elapsed, 1) if elapsed else 0.0,
                      round(counts["p50_us"] / 1000, 2), round(counts["p99_us"] / 1000, 2))


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One request on a keep-alive connection; the status, once the whole answer is read."""
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _open_loop(port: int, body: str, rate: float, seconds: float, path: str) -> LoadResult:
    payload = body.encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    statuses: list[int] = []
    latencies: list[float] = []
    outstanding = 0

    async def one(scheduled: float) -> None:
        nonlocal outstanding
        outstanding += 1
        connection = idle.pop() if idle else None
        try:
            async with asyncio.timeout(OPEN_LOOP_TIMEOUT_SECONDS):
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", port)
                status = await _exchange(*connection, request)
            statuses.append(status)
            if status == 200:
                latencies.append(time.perf_counter() - scheduled)
            idle.append(connection)
        except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
            statuses.append(0)
            if connection is not None:
                connection[1].close()
        finally:
            outstanding -= 1

    tasks = []
    started = time.perf_counter()
    total = int(rate * seconds)
    for index in range(total):
        scheduled = started + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        if outstanding >= OPEN_LOOP_MAX_OUTSTANDING:
            statuses.append(-1)
            continue
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for _, writer in idle:
        writer.close()
    return summarize(f"open, {rate:g}/s", statuses, latencies, elapsed, rate)


def open_loop(port: int, body: str, rate: float, seconds: float, path: str = "/invocations") -> LoadResult:
    """Requests at `rate` per second, evenly spaced, for `seconds`, on as many keep-alive
    connections as are outstanding (at most OPEN_LOOP_MAX_OUTSTANDING); waits for the last answers."""
    return asyncio.run(_open_loop(port, body, rate, seconds, path))

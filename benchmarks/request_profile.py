"""Where one request's time goes in the Kiln runtime: HTTP → admission → pipe → parse →
predict → serialize, on the iris model, one client, one worker.

Timing hooks, not a sampling profiler: the worker's three stages are the runtime's own
functions (runtime/scoring.py) timed in this process on the same body; HTTP is a keep-alive
round trip to /ping, which the HTTP process answers without a worker; what remains of an
/invocations round trip is admission, the body, and the pipe to the worker and back.
Medians over many sequential requests, so one slow request does not move them.

    .venv/bin/python -m benchmarks.request_profile [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.runtime_vs_peers import save_iris_model
from benchmarks.servers import start, stop, wait_ready
from runtime import scoring

JSON = "application/json"


def _median_ms(action: Callable[[], Any], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def worker_stages(model: Path, body: str, repeats: int) -> dict[str, float]:
    """Median ms of MLflow's parse, predict (schema enforcement included) and serialize, as the worker runs them."""
    loaded = scoring.load(model)
    raw = body.encode()
    parsed = scoring._prepare(loaded, raw, JSON)
    predictions = scoring._call_predict(loaded, parsed.data, parsed.params)
    return {
        "parse (MLflow's JSON parser, schema)": _median_ms(lambda: scoring._prepare(loaded, raw, JSON), repeats),
        "predict (pyfunc: schema enforcement + sklearn)":
            _median_ms(lambda: scoring._call_predict(loaded, parsed.data, parsed.params), repeats),
        "serialize (MLflow's predictions_to_json)": _median_ms(lambda: scoring._serialize(predictions, False), repeats),
    }


def round_trips(model: Path, body: str, repeats: int, directory: Path) -> dict[str, float]:
    """Median ms of a keep-alive /ping and /invocations round trip against a one-worker runtime."""
    server = start("kiln", model, 1, directory)
    try:
        wait_ready(server)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def call(method: str, path: str, payload: str | None = None) -> None:
            connection.request(method, path, body=payload, headers={"Content-Type": JSON} if payload else {})
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status

        for _ in range(50):
            call("POST", "/invocations", body)
        return {"ping": _median_ms(lambda: call("GET", "/ping"), repeats),
                "invocations": _median_ms(lambda: call("POST", "/invocations", body), repeats)}
    finally:
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 repeats instead of 2000")
    repeats = 200 if parser.parse_args().quick else 2000
    with tempfile.TemporaryDirectory(prefix="kiln-profile-") as tmp:
        model, body = save_iris_model(Path(tmp))
        stages = worker_stages(model, body, repeats)
        trips = round_trips(model, body, repeats, Path(tmp))
    work = sum(stages.values())
    rows = {
        "HTTP (client + server, keep-alive /ping)": trips["ping"],
        "admission + body + pipe to the worker and back": trips["invocations"] - trips["ping"] - work,
        **stages,
    }
    print(f"iris model, 1 worker, {repeats} sequential requests, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for label, ms in rows.items():
        print(f"  {label:50} {ms:7.3f} ms  {ms / trips['invocations']:6.1%}")
    print(f"  {'total (/invocations round trip)':50} {trips['invocations']:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

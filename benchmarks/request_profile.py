"""Where one request's time goes in the Kiln runtime, read from the runtime's own Server-Timing
header on every answer: HTTP → body → admission and the wait for a worker → pipe → parse →
predict → serialize, on the iris model, one client, one worker; with `mlflow models serve`
(one worker, the same client) measured in the same run as the baseline.

Each request is split by what the runtime measured while answering it, so every stage is
counted in the process and on the cache state it really ran in; subtracting stages timed
elsewhere (a hot loop in this process) from a round trip misattributes the difference to the
hop between processes. Medians over many sequential requests, so one slow request does not
move them.

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
from pathlib import Path

from benchmarks.runtime_vs_peers import save_iris_model
from benchmarks.servers import start, stop, wait_ready

JSON = "application/json"
WARM_UP_REQUESTS = 50


def _server_timing(header: str) -> dict[str, float]:
    """Server-Timing's metrics as {name: milliseconds}."""
    spans = [span.strip().split(";dur=") for span in header.split(",")]
    return {name: float(ms) for name, ms in spans}


def _requests(name: str, model: Path, body: str, repeats: int, directory: Path) -> list[tuple[float, dict[str, float]]]:
    """(client round trip ms, the server's Server-Timing) of `repeats` sequential keep-alive
    requests against `name` serving `model` with one worker (MLflow sends no Server-Timing)."""
    server = start(name, model, 1, directory)
    try:
        wait_ready(server)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        results = []
        for index in range(WARM_UP_REQUESTS + repeats):
            started = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers={"Content-Type": JSON})
            response = connection.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status == 200, response.status
            if index >= WARM_UP_REQUESTS:
                results.append((elapsed, _server_timing(response.getheader("server-timing") or "")
                                if name == "kiln" else {}))
        return results
    finally:
        stop(server)


def breakdown(results: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """Median ms of each stage of a request, from the client's round trip and the runtime's timings."""
    stages: dict[str, list[float]] = {}

    def add(label: str, ms: float) -> None:
        stages.setdefault(label, []).append(ms)

    for round_trip, t in results:
        model_work = t["parse"] + t["predict"] + t["serialize"]
        add("client + HTTP (socket, uvicorn, httptools)", round_trip - t["total"])
        add("request body read", t["body"])
        add("admission + wait for a free worker", t["queue"])
        add("runtime's own code (routing, timers, response)", t["total"] - t["body"] - t["queue"] - t["worker"])
        add("pipe to the worker and back (frames, wake-ups)", t["worker"] - model_work)
        add("parse (MLflow's JSON parser, schema)", t["parse"])
        add("predict (pyfunc: schema enforcement + sklearn)", t["predict"])
        add("serialize (MLflow's predictions_to_json)", t["serialize"])
    return {label: statistics.median(values) for label, values in stages.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 repeats instead of 2000")
    repeats = 200 if parser.parse_args().quick else 2000
    with tempfile.TemporaryDirectory(prefix="kiln-profile-") as tmp:
        model, body = save_iris_model(Path(tmp))
        kiln = _requests("kiln", model, body, repeats, Path(tmp))
        mlflow = _requests("mlflow", model, body, repeats, Path(tmp))
    rows = breakdown(kiln)
    total = statistics.median(round_trip for round_trip, _ in kiln)
    baseline = statistics.median(round_trip for round_trip, _ in mlflow)
    model_work = sum(ms for label, ms in rows.items() if label.startswith(("parse", "predict", "serialize")))
    print(f"iris model, 1 worker, {repeats} sequential requests, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for label, ms in rows.items():
        print(f"  {label:50} {ms:7.3f} ms  {ms / total:6.1%}")
    print(f"  {'total (/invocations round trip, median)':50} {total:7.3f} ms")
    print(f"  {'not MLflow parse/predict/serialize':50} {total - model_work:7.3f} ms  {(total - model_work) / total:6.1%}")
    print(f"  {'mlflow models serve, same client (median)':50} {baseline:7.3f} ms  "
          f"Kiln/MLflow {total / baseline:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kiln runtime vs `mlflow models serve` vs MLServer (mlserver-mlflow) on the same model, the
same worker count and the same client, in one run.

Per server, all with default settings: cold start (process start → first ready answer);
closed-loop keep-alive clients (1, 8 and 64 by default: a refused request is sent again at
once, as wrk does); then an open-loop phase at twice that server's best closed-loop goodput
(its capacity), which is overload as real traffic makes it. Each phase reports goodput (200
answers per second), p50/p99 of the 200 answers, refusals (429/503) and other errors. A last
phase runs every server on a model whose predict costs a fixed 5 ms per call whatever its
rows (as a GPU call mostly does) at 8 clients; the Kiln runtime runs it with batching off
(its default) and on (KILN_MAX_BATCH_SIZE=8). Bounded: each load phase stops after
--requests requests or --seconds seconds, and every process it starts is stopped.

    .venv/bin/python -m benchmarks.runtime_vs_peers [--quick] [--workers 2] [--clients 1,8,64] [--client auto|wrk|python] [--json out.json]

Closed-loop clients are wrk's when wrk is installed (`apt-get install wrk`: C, one thread,
so it takes little of the two cores the servers run on) or Python threads otherwise; the
open-loop phase is always Python's (benchmarks/load.py).

The first run creates MLServer's virtualenv (benchmarks/servers.py; a few minutes). Numbers
are only worth quoting from a quiet machine: the report prints the load average it ran under.
The main model is a scikit-learn logistic regression on iris (predict well under 1 ms), so
the numbers measure the serving overhead, which is what a server controls.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.load import LoadResult, closed_loop, open_loop, wrk_available, wrk_closed_loop
from benchmarks.servers import SERVERS, start, stop, wait_ready

PER_CALL_SECONDS = 0.005
BATCHING_CLIENTS = 8
# Twice the capacity a server showed closed-loop: overloaded, not swamped past the client's reach.
OVERLOAD_FACTOR = 2
# --quick: a smoke run that shows every phase works (minutes, not a measurement).
QUICK = {"requests": 300, "seconds": 3.0}


@dataclass
class ServerResult:
    name: str
    cold_start_seconds: float
    load: list[LoadResult]


def save_iris_model(directory: Path) -> tuple[Path, str]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame = load_iris(as_frame=True)
    features = frame.data
    model = LogisticRegression(max_iter=500).fit(features, frame.target)
    example = features.head(5)
    path = directory / "iris"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(example, model.predict(example)),
                              input_example=example, serialization_format="cloudpickle")
    body = json.dumps({"dataframe_split": {"columns": list(example.columns), "data": example.values.tolist()}})
    return path, body


def save_per_call_cost_model(directory: Path) -> tuple[Path, str]:
    """A model whose predict costs PER_CALL_SECONDS per call, however many rows: what batching is for."""
    import mlflow.pyfunc
    import pandas as pd

    class PerCallCost(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:  # noqa: ANN001
            time.sleep(PER_CALL_SECONDS)
            return model_input["x"] * 2

    example = pd.DataFrame({"x": [1.0]})
    path = directory / "per-call-cost"
    mlflow.pyfunc.save_model(str(path), python_model=PerCallCost(), input_example=example)
    return path, json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})


ClosedLoop = Callable[[int, str, int, int, float], LoadResult]


def wrk_client(port: int, body: str, clients: int, requests: int, seconds: float) -> LoadResult:
    """The closed loop from wrk, bounded by `seconds` (wrk has no request bound)."""
    return wrk_closed_loop(port, body, clients, seconds)


CLIENTS: dict[str, ClosedLoop] = {"python": closed_loop, "wrk": wrk_client}


def measure(name: str, model: Path, body: str, workers: int, clients: list[int], requests: int, seconds: float,
            directory: Path, client: ClosedLoop) -> ServerResult:
    server = start(name, model, workers, directory)
    try:
        cold = wait_ready(server)
        closed_loop(server.port, body, 1, 50, 5)  # warm the connection path (imports, first-call caches)
        results = [client(server.port, body, c, requests, seconds) for c in clients]
        capacity = max(r.goodput for r in results)
        results.append(open_loop(server.port, body, max(1.0, round(OVERLOAD_FACTOR * capacity)), seconds))
    finally:
        stop(server)
    return ServerResult(name, round(cold, 2), results)


def batching_phase(workers: int, requests: int, seconds: float, directory: Path,
                   client: ClosedLoop) -> dict[str, LoadResult]:
    """Goodput of the per-call-cost model at BATCHING_CLIENTS clients on every server, the Kiln
    runtime with batching off and on."""
    model, body = save_per_call_cost_model(directory)
    runs = [(name, name, None) for name in SERVERS if name != "kiln"]
    runs += [("kiln, batching off", "kiln", "1"), ("kiln, batching on", "kiln", "8")]
    results = {}
    for label, name, size in runs:
        server = start(name, model, workers, directory, {"KILN_MAX_BATCH_SIZE": size} if size else None)
        try:
            wait_ready(server)
            closed_loop(server.port, body, 1, 50, 5)
            results[label] = client(server.port, body, BATCHING_CLIENTS, requests, seconds)
        finally:
            stop(server)
    return results


def _ratio(label: str, ours: float, peers: list[float]) -> str:
    """Kiln's advantage over the best peer: goodput ours/best, anything else best/ours."""
    peers = [p for p in peers if p]
    if not ours or not peers:
        return ""
    if "200/s" in label:
        return f"{ours / max(peers):.1f}x"
    return f"{min(peers) / ours:.1f}x"


def report(results: dict[str, ServerResult], batching: dict[str, LoadResult], workers: int, client: str) -> None:
    names = list(results)
    print(f"model: sklearn iris, workers: {workers}, closed-loop client: {client}, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'metric':44}" + "".join(f"{name:>12}" for name in names) + f"{'kiln/best':>11}")
    rows: list[tuple[str, list[float]]] = [("cold start to ready (s)", [results[n].cold_start_seconds for n in names])]
    for index, phase in enumerate(results["kiln"].load):
        loads = [results[n].load[index] for n in names]
        where = phase.phase if phase.phase.startswith("closed") else "open, 2x capacity"
        rows += [
            (f"goodput, {where} (200/s)", [r.goodput for r in loads]),
            (f"p50 of 200s, {where} (ms)", [r.p50_ms for r in loads]),
            (f"p99 of 200s, {where} (ms)", [r.p99_ms for r in loads]),
            (f"refusals (429/503), {where}", [r.refusals for r in loads]),
            (f"other non-200, {where}", [r.errors for r in loads]),
        ]
    rows.append(("offered rate, open loop (req/s)", [results[n].load[-1].offered_per_second for n in names]))
    for label, values in rows:
        ours, peers = values[names.index("kiln")], [v for n, v in zip(names, values) if n != "kiln"]
        ratio = "" if label.startswith(("refusals", "other", "offered")) else _ratio(label, ours, peers)
        print(f"{label:44}" + "".join(f"{v:>12}" for v in values) + f"{ratio:>11}")
    print(f"\n{PER_CALL_SECONDS * 1000:g} ms per predict call, {BATCHING_CLIENTS} clients:")
    for label, result in batching.items():
        print(f"  {label:22} goodput {result.goodput:>8}/s  p50 {result.p50_ms:>8} ms  p99 {result.p99_ms:>8} ms  "
              f"refusals {result.refusals}  errors {result.errors}")
    off, on = batching["kiln, batching off"], batching["kiln, batching on"]
    if off.goodput:
        print(f"  batching on / off: {on.goodput / off.goodput:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK['requests']} requests or {QUICK['seconds']:g} s per phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", default="1,8,64", help="closed-loop client counts, one load phase each")
    parser.add_argument("--requests", type=int, default=3000, help="most requests per load phase")
    parser.add_argument("--seconds", type=float, default=10, help="most seconds per load phase")
    parser.add_argument("--client", choices=("auto", *CLIENTS), default="auto",
                        help="closed-loop client: wrk (C, little CPU; the issue's method) or python (benchmarks/load.py); "
                             "auto: wrk when it is on PATH")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    client_name = ("wrk" if wrk_available() else "python") if args.client == "auto" else args.client
    requests, seconds = (QUICK["requests"], QUICK["seconds"]) if args.quick else (args.requests, args.seconds)
    clients = [int(count) for count in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        model, body = save_iris_model(Path(tmp))
        client = CLIENTS[client_name]
        results = {name: measure(name, model, body, args.workers, clients, int(requests), seconds, Path(tmp), client)
                   for name in SERVERS}
        batching = batching_phase(args.workers, int(requests), seconds, Path(tmp), client)
    report(results, batching, args.workers, client_name)
    if args.json:
        args.json.write_text(json.dumps({**{name: asdict(result) for name, result in results.items()},
                                         "batching": {k: asdict(v) for k, v in batching.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

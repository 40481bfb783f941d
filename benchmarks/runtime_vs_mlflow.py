"""Kiln runtime vs `mlflow models serve` on the same model, same worker count, same client.

Reports, side by side and as ratios: goodput (200 answers per second) of closed-loop
keep-alive clients (1, 8 and 64 by default: a refused request is sent again at once, as wrk
does), p50/p99 latency of the 200 answers, the refusals (429 or 503), and cold start
(process start → first 200 on /ping). Both servers run with their default settings. A last
phase runs the Kiln runtime alone on a model whose predict costs a fixed 5 ms per call
whatever its rows (as a GPU call mostly does), with batching off and on
(KILN_MAX_BATCH_SIZE=8), and reports both goodputs at 8 clients.
Bounded: each load phase stops after --requests requests or --seconds seconds, whichever
comes first, and every process it starts is stopped before it exits.

    PYTHONPATH=. python benchmarks/runtime_vs_mlflow.py [--workers 2] [--clients 1,8,64] [--json out.json]

Numbers are only worth quoting from a quiet machine: check `uptime` first.

The model is a scikit-learn logistic regression on iris (predict itself well under 1 ms),
so the numbers measure the serving overhead, which is what the runtime controls.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 120


@dataclass
class LoadResult:
    connections: int
    requests: int
    successes: int
    refusals: int  # 429 or 503: over the admission budget, or a full queue
    errors: int  # any other status
    seconds: float
    goodput: float  # 200 answers per second
    p50_ms: float  # of the 200 answers
    p99_ms: float


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


PER_CALL_SECONDS = 0.005
BATCHING_CLIENTS = 8


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(name: str, model: Path, port: int, workers: int, log_dir: Path,
                 kiln_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(PROJECT_ROOT)}
    if name == "mlflow":
        command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model), "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    else:
        command = [sys.executable, "-m", "runtime"]
        # Default settings, as issue 13 asks: admission by latency budget queues what fits.
        env.update(KILN_MODEL_URI=str(model), KILN_HOST="127.0.0.1", KILN_PORT=str(port),
                   KILN_WORKERS=str(workers), **(kiln_env or {}))
    log = (log_dir / f"{name}.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(process: subprocess.Popen[bytes], port: int) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < READY_TIMEOUT_SECONDS:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before it was ready")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"not ready within {READY_TIMEOUT_SECONDS} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def load(port: int, body: str, connections: int, max_requests: int, max_seconds: float) -> LoadResult:
    """Each connection is one keep-alive HTTP/1.1 connection sending requests back to back."""
    latencies: list[float] = []  # of the 200 answers
    statuses: list[int] = []
    lock = threading.Lock()
    sent = [0]
    deadline = time.perf_counter() + max_seconds
    headers = {"Content-Type": "application/json"}

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
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            local_statuses.append(response.status)
            if response.status == 200:
                local.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(local)
            statuses.extend(local_statuses)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else (latencies or [0.0]) * 99
    refusals = sum(status in (429, 503) for status in statuses)
    return LoadResult(connections, len(statuses), len(latencies), refusals, len(statuses) - len(latencies) - refusals,
                      round(elapsed, 3), round(len(latencies) / elapsed, 1),
                      round(quantiles[49] * 1000, 2), round(quantiles[98] * 1000, 2))


def measure(name: str, model: Path, body: str, workers: int, clients: list[int], requests: int, seconds: float,
            log_dir: Path) -> ServerResult:
    port = free_port()
    process = start_server(name, model, port, workers, log_dir)
    try:
        cold = wait_ready(process, port)
        load(port, body, 1, 50, 5)  # warm the connection path (imports, first-call caches)
        results = [load(port, body, c, requests, seconds) for c in clients]
    finally:
        stop(process)
    return ServerResult(name, round(cold, 2), results)


def batching_phase(workers: int, requests: int, seconds: float, directory: Path) -> dict[str, LoadResult]:
    """Goodput of the per-call-cost model at BATCHING_CLIENTS clients, batching off and on."""
    model, body = save_per_call_cost_model(directory)
    results = {}
    for label, size in (("off", "1"), ("on", "8")):
        port = free_port()
        process = start_server("kiln", model, port, workers, directory, {"KILN_MAX_BATCH_SIZE": size})
        try:
            wait_ready(process, port)
            load(port, body, 1, 50, 5)
            results[label] = load(port, body, BATCHING_CLIENTS, requests, seconds)
        finally:
            stop(process)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", default="1,8,64", help="closed-loop client counts, one load phase each")
    parser.add_argument("--requests", type=int, default=3000, help="most requests per load phase")
    parser.add_argument("--seconds", type=float, default=10, help="most seconds per load phase")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        model, body = save_iris_model(Path(tmp))
        clients = [int(count) for count in args.clients.split(",")]
        results = {name: measure(name, model, body, args.workers, clients, args.requests, args.seconds, Path(tmp))
                   for name in ("mlflow", "kiln")}
        batching = batching_phase(args.workers, args.requests, args.seconds, Path(tmp))
    mlflow, kiln = results["mlflow"], results["kiln"]
    print(f"model: sklearn iris, workers: {args.workers}, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'metric':40} {'mlflow serve':>14} {'kiln runtime':>14} {'ratio':>9}")
    rows = [("cold start to /ping 200 (s)", mlflow.cold_start_seconds, kiln.cold_start_seconds)]
    for theirs, ours in zip(mlflow.load, kiln.load):
        c = theirs.connections
        rows += [
            (f"goodput, {c} clients (200/s)", theirs.goodput, ours.goodput),
            (f"p50 latency of 200s, {c} clients (ms)", theirs.p50_ms, ours.p50_ms),
            (f"p99 latency of 200s, {c} clients (ms)", theirs.p99_ms, ours.p99_ms),
            (f"refusals (429/503), {c} clients", theirs.refusals, ours.refusals),
            (f"other non-200, {c} clients", theirs.errors, ours.errors),
        ]
    for label, theirs, ours in rows:
        ratio = "" if not theirs or not ours else (
            f"{ours / theirs:.1f}x" if "200/s" in label else f"{theirs / ours:.1f}x")
        print(f"{label:40} {theirs:>14} {ours:>14} {ratio:>9}")
    print("ratio: kiln's advantage (goodput kiln/mlflow; latency, refusals and cold start mlflow/kiln)")
    off, on = batching["off"], batching["on"]
    print(f"\nkiln, {PER_CALL_SECONDS * 1000:g} ms per predict call, {BATCHING_CLIENTS} clients: goodput batching off "
          f"{off.goodput}/s (p99 {off.p99_ms} ms), on {on.goodput}/s (p99 {on.p99_ms} ms), "
          f"{on.goodput / off.goodput if off.goodput else float('nan'):.1f}x")
    if args.json:
        args.json.write_text(json.dumps({**{k: asdict(v) for k, v in results.items()},
                                         "batching": {k: asdict(v) for k, v in batching.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

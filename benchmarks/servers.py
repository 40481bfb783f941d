"""The servers the benchmark compares, each started with its default settings on 127.0.0.1:
the Kiln runtime, `mlflow models serve`, and MLServer with mlserver-mlflow.

MLServer runs from its own virtualenv (created once under .kiln/benchmarks/, from PyPI), with
the same MLflow, scikit-learn, pandas, numpy and cloudpickle as this environment so it loads
the same model files; MLServer 1.7.1's parallel workers need `uvloop<0.22` (0.22 changed the
event loop policy API it uses). Docs: https://mlserver.readthedocs.io/en/latest/runtimes/mlflow.html
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 180
MLSERVER_VERSION = "1.7.1"
# The packages that must match between this environment (which saved the model) and MLServer's.
SHARED_PACKAGES = ("mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle")
MLSERVER_VENV = PROJECT_ROOT / ".kiln" / "benchmarks" / f"mlserver-{MLSERVER_VERSION}"
INSTALL_TIMEOUT_SECONDS = 900
SERVERS = ("kiln", "mlflow", "mlserver")


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    port: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mlserver_requirements() -> list[str]:
    return [f"mlserver=={MLSERVER_VERSION}", f"mlserver-mlflow=={MLSERVER_VERSION}", "uvloop<0.22",
            *(f"{name}=={version(name)}" for name in SHARED_PACKAGES)]


def ensure_mlserver_venv(log: Path) -> Path:
    """MLServer's virtualenv, created (with uv when this environment has it, else pip) on first use."""
    requirements = mlserver_requirements()
    marker = MLSERVER_VENV / "kiln-requirements.txt"
    if marker.is_file() and marker.read_text().splitlines() == requirements:
        return MLSERVER_VENV
    uv = Path(sys.executable).parent / "uv"
    with log.open("ab") as out:
        if uv.is_file():
            steps = [[str(uv), "venv", "--python", sys.executable, str(MLSERVER_VENV)],
                     [str(uv), "pip", "install", "--python", str(MLSERVER_VENV / "bin" / "python"), *requirements]]
        else:
            steps = [[sys.executable, "-m", "venv", "--clear", str(MLSERVER_VENV)],
                     [str(MLSERVER_VENV / "bin" / "pip"), "install", "--quiet", *requirements]]
        for step in steps:
            subprocess.run(step, check=True, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_SECONDS)
    marker.write_text("\n".join(requirements) + "\n")
    return MLSERVER_VENV


def _mlserver_folder(model: Path, workers: int, port: int, directory: Path) -> Path:
    """MLServer's model repository: settings.json (ports, parallel workers) and one model."""
    folder = directory / f"mlserver-{model.name}"
    (folder / "model").mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": workers,
    }))
    (folder / "model" / "model-settings.json").write_text(json.dumps({
        "name": "model", "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": str(model)},
    }))
    return folder


def start(name: str, model: Path, workers: int, directory: Path, kiln_env: dict[str, str] | None = None) -> Started:
    """Start `name` serving `model` with `workers` model processes, its log in `directory`."""
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(PROJECT_ROOT)}
    if name == "mlflow":
        command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model), "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    elif name == "mlserver":
        venv = ensure_mlserver_venv(directory / "mlserver-install.log")
        env.pop("PYTHONPATH")
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        command = [str(venv / "bin" / "mlserver"), "start", str(_mlserver_folder(model, workers, port, directory))]
    else:
        command = [sys.executable, "-m", "runtime"]
        env.update(KILN_MODEL_URI=str(model), KILN_HOST="127.0.0.1", KILN_PORT=str(port),
                   KILN_WORKERS=str(workers), **(kiln_env or {}))
    log = (directory / f"{name}-{model.name}.log").open("ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Started(name, process, port)


def _ready(name: str, port: int) -> bool:
    """Whether the server answers predictions: /ping for Kiln and MLflow, the model's readiness for MLServer."""
    path = "/v2/models/model/ready" if name == "mlserver" else "/ping"
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False


def wait_ready(server: Started) -> float:
    """Seconds from process start to its first ready answer (cold start)."""
    started = time.perf_counter()
    while time.perf_counter() - started < READY_TIMEOUT_SECONDS:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with code {server.process.returncode} before it was ready")
        if _ready(server.name, server.port):
            return time.perf_counter() - started
        time.sleep(0.02)
    raise RuntimeError(f"{server.name} not ready within {READY_TIMEOUT_SECONDS} s")


def stop(server: Started) -> None:
    """SIGTERM to its process group (its workers too), SIGKILL after 30 s."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()

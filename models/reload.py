"""The reload check: load the model in a fresh virtualenv built from its own requirements.

Why: the most common way a custom model fails to serve is an import the data scientist's
notebook had and the model never declared ("No module named …" at container start). A
virtualenv with exactly the model's requirements plus the runtime's, and nothing from
this process, reproduces that in minutes instead of after a 20-minute deployment.

Virtualenvs are cached under the Kiln cache dir, keyed by the hash of what is installed in
them, so checking a new model version with unchanged requirements installs nothing.
Everything runs as subprocesses with a time limit; a limit that is hit kills the whole
process group and says which step ran out of time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models import artifacts
from models.checks import Finding
from models.environment import python_minor, runtime_requirements
from models.manifest import Manifest
from models.measurements import Measurements
from models.reload_probe import RESULT_PREFIX

PROBE_SCRIPT = Path(__file__).resolve().parent / "reload_probe.py"
# Installing torch-sized requirements from PyPI takes minutes; past this something is wrong.
INSTALL_TIMEOUT_SECONDS = 1200
# Loading and one prediction of a model small enough to check on a laptop-sized machine.
PROBE_TIMEOUT_SECONDS = 600
READY_MARKER = ".kiln-ready"


class ReloadError(Exception):
    """The reload check could not run (no interpreter, pip failed, a step timed out)."""


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    stage: str
    message: str
    missing_module: str | None = None
    load_seconds: float | None = None
    predict_seconds: float | None = None
    venv: Path | None = None
    log_tail: str = field(default="", repr=False)
    # Where the model is served (cuda on a GPU compute type) and where the probe loaded it; on
    # a machine without CUDA a GPU target is emulated up to moving the weights (reload_probe).
    target_device: str = "cpu"
    device: str | None = None
    emulated: str | None = None
    # It loads on the CPU but not on the target's device.
    device_failure: bool = False
    # Load time, worker memory and predict latency, when the model loaded (models/measurements.py).
    measurements: Measurements | None = None

    def finding(self) -> Finding | None:
        """The packaging finding this result amounts to (None when the model reloaded)."""
        if self.ok:
            return None
        if self.device_failure:
            return Finding(
                "reload-gpu-device",
                "error",
                f"the model loads on the CPU but not on the GPU it is served on ({self.message}); a PyTorch model "
                "saved as pt2 (torch.export, MLflow 3's default outside Databricks) keeps the device it was exported "
                "on: re-log it with mlflow.pytorch.log_model(..., serialization_format=\"pickle\"), or export it on "
                "the GPU (log_model(model.to(\"cuda\"), ...))",
            )
        if self.missing_module:
            return Finding(
                "reload-missing-module",
                "error",
                f"the model fails to {self.stage} in a clean environment: No module named '{self.missing_module}'; "
                f"add the package that provides {self.missing_module} (pinned) to pip_requirements and re-log it",
            )
        return Finding(
            "reload-failed",
            "error",
            f"the model fails at {self.stage} in a clean environment built from its requirements: {self.message}; "
            "reproduce with mlflow.models.predict(model_uri, input_data, env_manager='virtualenv') and re-log it",
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "stage": self.stage,
            "message": self.message,
            "missingModule": self.missing_module,
            "loadSeconds": self.load_seconds,
            "predictSeconds": self.predict_seconds,
            "venv": str(self.venv) if self.venv else None,
            "targetDevice": self.target_device,
            "device": self.device,
            "emulated": self.emulated,
            "measurements": self.measurements.as_dict() if self.measurements else None,
        }


def venv_requirements(manifest: Manifest) -> tuple[str, ...]:
    """The model's requirements plus the runtime's: what the image will have installed."""
    return (*manifest.requirements, *runtime_requirements())


def venv_key(python_version: str, requirements: tuple[str, ...]) -> str:
    text = "\n".join([python_minor(python_version), *sorted(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def find_interpreter(python_version: str) -> str:
    """An interpreter of the model's Python major.minor: this one, or pythonX.Y on PATH."""
    wanted = python_minor(python_version)
    if wanted in ("", f"{sys.version_info.major}.{sys.version_info.minor}"):
        return sys.executable
    candidate = shutil.which(f"python{wanted}")
    if candidate and _run([candidate, "-c", "import venv"], timeout=30, step="probe interpreter").returncode == 0:
        return candidate
    raise ReloadError(
        f"no Python {wanted} interpreter here (the model was logged with Python {python_version}); "
        f"install python{wanted} to run the reload check, or skip it with --skip-reload"
    )


def _run(command: list[str], timeout: float, step: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command in its own process group, killing the whole group when time runs out."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise ReloadError(f"{step} did not finish within {timeout:.0f} s") from None
    return subprocess.CompletedProcess(command, process.returncode, output, None)


def _clean_env() -> dict[str, str]:
    """This process's environment minus anything that would leak its packages into the venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER")}


def ensure_venv(python_version: str, requirements: tuple[str, ...], timeout: float = INSTALL_TIMEOUT_SECONDS) -> Path:
    """A virtualenv with exactly `requirements`, reused when one with the same key exists.

    A lock file serializes concurrent checks of the same requirements; a marker written last
    means a half-built venv (killed, out of disk) is rebuilt instead of trusted.
    """
    root = artifacts.CACHE_DIR / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    venv = root / venv_key(python_version, requirements)
    with open(root / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / READY_MARKER).is_file():
            # Marks the last use, which `kiln cache prune --older-than` reads.
            (venv / READY_MARKER).touch()
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        interpreter = find_interpreter(python_version)
        created = _run([interpreter, "-m", "venv", str(venv)], timeout=120, step="creating the virtualenv", env=_clean_env())
        if created.returncode != 0:
            raise ReloadError(f"cannot create a virtualenv with {interpreter}: {created.stdout[-2000:]}")
        requirements_file = venv / "kiln-requirements.txt"
        requirements_file.write_text("\n".join(requirements) + "\n")
        installed = _run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
             "-r", str(requirements_file)],
            timeout=timeout,
            step=f"pip install of the model's requirements ({len(requirements)} lines)",
            env=_clean_env(),
        )
        if installed.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise ReloadError(f"pip cannot install the model's requirements:\n{installed.stdout[-3000:]}")
        (venv / READY_MARKER).write_text("\n".join(requirements) + "\n")
        return venv


def reload_check(
    model_dir: Path,
    manifest: Manifest,
    gpu: bool = False,
    install_timeout: float = INSTALL_TIMEOUT_SECONDS,
    probe_timeout: float = PROBE_TIMEOUT_SECONDS,
) -> ReloadResult:
    """Build (or reuse) the venv, then load + predict + validate in it; never raises for model faults.
    With `gpu` (a GPU compute type) the model is loaded on the device a GPU instance gives it."""
    target = "cuda" if gpu else "cpu"
    try:
        venv = ensure_venv(manifest.python_version, venv_requirements(manifest), timeout=install_timeout)
    except ReloadError as error:
        return ReloadResult(ok=False, stage="install", message=str(error), target_device=target)
    try:
        completed = _run(
            [str(venv / "bin" / "python"), str(PROBE_SCRIPT), str(model_dir), target],
            timeout=probe_timeout,
            step="loading the model and predicting its input example",
            env={**_clean_env(), "MLFLOW_DISABLE_ENV_MANAGER_CONDA_WARNING": "true"},
        )
    except ReloadError as error:
        return ReloadResult(ok=False, stage="load", message=str(error), venv=venv, target_device=target)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        tail = completed.stdout[-2000:]
        return ReloadResult(
            ok=False, stage="load", message=f"the probe exited {completed.returncode} without a result: {tail}",
            venv=venv, log_tail=tail, target_device=target,
        )
    return result_from_probe(json.loads(lines[-1].removeprefix(RESULT_PREFIX)), venv, completed.stdout[-2000:])


def result_from_probe(outcome: dict[str, Any], venv: Path | None = None, log_tail: str = "") -> ReloadResult:
    """The probe's JSON line as a result (benchmarks/gpu_check runs the probe alone on a GPU host)."""
    return ReloadResult(
        ok=bool(outcome["ok"]),
        stage=str(outcome["stage"]),
        message=str(outcome["message"]),
        missing_module=outcome.get("missing_module"),
        load_seconds=outcome.get("load_seconds"),
        predict_seconds=outcome.get("predict_seconds"),
        venv=venv,
        log_tail=log_tail,
        target_device=str(outcome.get("target_device", "cpu")),
        device=outcome.get("device"),
        emulated=outcome.get("emulated"),
        device_failure=bool(outcome.get("device_failure")),
        measurements=Measurements.from_probe(outcome["measurements"]) if outcome.get("measurements") else None,
    )

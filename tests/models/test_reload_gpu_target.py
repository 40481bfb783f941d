"""The reload check loads a model the way its target device will (issue 18).

Real PyTorch models, saved by MLflow in a virtualenv that has torch (the reload check's own
venv for these requirements, built once and reused by every check below), the default way
(`pt2`, torch.export) and pickled. On this machine there is no CUDA: MLflow's device choice
and its checks before touching CUDA run for real; moving the weights to a GPU cannot, and
the result says so. PyPI's default torch wheel carries CUDA (about 3 GB with its nvidia-*
wheels), so the models pin the CPU build this machine's pip finds on its local wheel shelf.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.environment import runtime_requirements
from models.examples.seed import pinned
from models.manifest import read_manifest
from models.reload import ReloadResult, ensure_venv, reload_check

TORCH_CPU = "torch==2.13.0+cpu"
MODEL_REQUIREMENTS = (*pinned("mlflow"), TORCH_CPU)
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A tiny MLP built and saved on the CPU, as on a data scientist's laptop.
SAVE_SCRIPT = """
import sys

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

path, serialization, requirements = sys.argv[1], sys.argv[2], sys.argv[3:]
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
example = np.random.default_rng(0).random((5, 4), dtype=np.float32)
with torch.no_grad():
    signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
options = {} if serialization == "default" else {"serialization_format": serialization}
mlflow.pytorch.save_model(model, path, signature=signature, input_example=example, pip_requirements=requirements,
                          **options)
"""


@pytest.fixture(scope="module")
def torch_venv() -> Path:
    python = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    return ensure_venv(python, (*MODEL_REQUIREMENTS, *runtime_requirements()))


def _saved(venv: Path, path: Path, serialization: str) -> Path:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(venv / "bin" / "python"), "-c", SAVE_SCRIPT, str(path), serialization, *MODEL_REQUIREMENTS],
                   check=True, env=env, timeout=300, capture_output=True)
    return path


@pytest.fixture(scope="module")
def default_logged(torch_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(torch_venv, tmp_path_factory.mktemp("pt2") / "model", "default")


@pytest.fixture(scope="module")
def pickled(torch_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(torch_venv, tmp_path_factory.mktemp("pickle") / "model", "pickle")


def _check(model_dir: Path, gpu: bool) -> ReloadResult:
    return reload_check(model_dir, read_manifest(model_dir), gpu=gpu)


def test_a_default_logged_pytorch_model_fails_the_reload_check_for_a_gpu(default_logged: Path) -> None:
    assert (default_logged / "data" / "model.pt2").is_file()  # MLflow's default: torch.export

    result = _check(default_logged, gpu=True)

    assert (result.ok, result.stage, result.target_device, result.device_failure) == (False, "load", "cuda", True)
    assert "weights / buffers on 'cpu' device, it can't be loaded on 'cuda' device" in result.message
    finding = result.finding()
    assert finding is not None and (finding.id, finding.level) == ("reload-gpu-device", "error")
    assert 'serialization_format="pickle"' in finding.message and 'model.to("cuda")' in finding.message


def test_the_same_model_passes_the_reload_check_for_a_cpu(default_logged: Path) -> None:
    result = _check(default_logged, gpu=False)

    assert (result.ok, result.device, result.emulated) == (True, "cpu", None), result.message


def test_a_pickled_model_passes_for_a_gpu_up_to_the_move_only_a_gpu_can_make(pickled: Path) -> None:
    result = _check(pickled, gpu=True)

    assert (result.ok, result.stage, result.target_device, result.device) == (True, "done", "cuda", "cpu"), result.message
    assert result.emulated is not None and result.emulated.startswith("no cuda here (")
    assert result.finding() is None


def test_the_runtime_names_a_cpu_only_torch_as_the_reason_for_no_gpu(torch_venv: Path) -> None:
    """runtime.device asks torch when the image has it (the runtime venv here has the model's torch)."""
    code = "import json; from runtime.device import detect; print(json.dumps(detect().as_dict()))"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run([str(torch_venv / "bin" / "python"), "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)

    report = json.loads(done.stdout)

    assert report == {"device": "cpu", "framework": "torch 2.13.0+cpu", "gpus": [],
                      "reason": "torch 2.13.0+cpu is a CPU-only build", "cuda_visible_devices": None}

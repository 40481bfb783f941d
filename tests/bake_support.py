"""Helpers for the bake tests: real MLflow models saved to temp folders, and a moto server.

Models are saved with mlflow.pyfunc.save_model (a real MLmodel, requirements.txt,
python_env.yaml, conda.yaml and input example, exactly what log_model uploads), then
bent where a test needs an old or broken model (an MLflow 1.17 MLmodel, no
requirements.txt) because those cannot be produced with today's MLflow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import models.environment as environment_module
from models.bake import bake
from models.examples.seed import LocalStore, pinned
from models.measurements import Measurements, record_measurements
from models.reload import PROBE_SCRIPT, result_from_probe
from models.reload_probe import RESULT_PREFIX
from models.resolved import site_packages
from tests.fakes import moto_server


def _pyfunc_arguments(
    requirements: list[str] | None, signature: bool, input_example: bool, conda_env: dict[str, Any] | None,
) -> dict[str, Any]:
    """The model and log/save arguments of a pyfunc that returns the length of each text."""
    from mlflow.models import infer_signature
    from mlflow.pyfunc import PythonModel

    # Defined in the function, so cloudpickle stores it by value: it loads without Kiln.
    class TextLength(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["text"].str.len().rename("length")

    example = pd.DataFrame({"text": ["refund please", "locked out"]})
    kwargs: dict[str, Any] = {"python_model": TextLength()}
    if conda_env is not None:
        kwargs["conda_env"] = conda_env
    else:
        kwargs["pip_requirements"] = requirements if requirements is not None else pinned("mlflow", "pandas")
    if signature:
        kwargs["signature"] = infer_signature(example, TextLength().predict(None, example))
    if input_example:
        kwargs["input_example"] = example
    return kwargs


def save_pyfunc(
    path: Path,
    requirements: list[str] | None = None,
    signature: bool = True,
    input_example: bool = True,
    conda_env: dict[str, Any] | None = None,
) -> Path:
    """A real pyfunc model that returns the length of each text; options bend its packaging."""
    import mlflow

    mlflow.pyfunc.save_model(str(path), **_pyfunc_arguments(requirements, signature, input_example, conda_env))
    return path


def register_pyfunc(store: LocalStore, name: str, signature: bool = True, input_example: bool = True) -> str:
    """save_pyfunc's model logged in a run of `store` and registered as `name`: its models:/ URI. MLflow
    infers a signature from an input example, so an unsigned model needs input_example=False too."""
    import mlflow

    store.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    # The default experiment would put the files in ./mlruns of the working directory.
    experiment = mlflow.get_experiment_by_name("kiln-tests")
    experiment_id = (experiment.experiment_id if experiment
                     else mlflow.create_experiment("kiln-tests", artifact_location=store.artifact_location))
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(name="model", registered_model_name=name,
                                       **_pyfunc_arguments(None, signature, input_example, None))
    return f"models:/{name}/{info.registered_model_version}"


def measure_here(model_dir: Path, tracking_uri: str) -> Measurements:
    """The reload probe run on a model in a subprocess of this interpreter (the project's
    virtualenv has MLflow and pandas), recorded for its digest and image tag as `kiln bake`
    records it: real measurements without building the model's own virtualenv."""
    completed = subprocess.run([sys.executable, str(PROBE_SCRIPT), str(model_dir)], capture_output=True, text=True,
                               timeout=300, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert lines, completed.stdout[-2000:] + completed.stderr[-2000:]
    measured = result_from_probe(json.loads(lines[-1].removeprefix(RESULT_PREFIX))).measurements
    assert measured is not None, lines[-1]
    baked = bake(str(model_dir), tracking_uri, gpu=False)
    record_measurements(baked.artifact_digest, baked.image_tag, str(model_dir), measured)
    return measured


def venv_with_distributions(directory: Path, *installed: tuple[str, str]) -> Path:
    """A real virtualenv whose site-packages holds the `.dist-info` metadata pip writes for each
    (name, version): what `pip install` of a torch+cpu wheel leaves behind, without its 200 MB."""
    venv = directory / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    for name, version in installed:
        info = site_packages(venv) / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return venv


def edit_yaml(path: Path, **changes: Any) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture
def kiln_runtime(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the runtime package the image runs, so a test may change it
    without touching the source tree."""
    copy = tmp_path_factory.mktemp("runtime") / "runtime"
    shutil.copytree(environment_module.RUNTIME_PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(environment_module, "RUNTIME_PACKAGE_DIR", copy)
    return copy


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server on 127.0.0.1 (an ephemeral port), for boto3 through its HTTP API."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake credentials and the moto endpoint for every boto3 client built in the test."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return moto_endpoint

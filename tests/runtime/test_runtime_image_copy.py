"""The image's copy of the runtime is self-contained: rendered from a real example model's
environment, laid out as the Dockerfile copies it (/opt/kiln/app/runtime/), and started with
the rest of the project hidden, every runtime module imports, and it loads the model and
serves predictions.

What this proves: the runtime package imports nothing of infra/, models/ or policies/, and
every module the HTTP process and its workers import at start and on a prediction is inside
the build context (the runtime package, copied whole) or installed from the image's
requirements. What it does not: that the
requirements themselves install (the bake reload check does that) or the s3:// fetch path
(test_runtime_lifecycle.py covers it against moto, with the project importable).

The shared venv has the project installed editable, through a meta-path finder that
resolves `infra`, `models`, `policies` and `runtime` to the source tree. The test hides it with a sitecustomize on PYTHONPATH, which Python
runs at start-up after the venv's .pth files, in the runtime and (PYTHONPATH is inherited)
in each worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.build_context import render_files
from models.environment import environment_for
from models.manifest import read_manifest
from runtime.digest import tree_digest
from tests.runtime_support import RunningProcess, fraud_model_dir, free_port

__all__ = ["fraud_model_dir"]

HIDE_EDITABLE_INSTALL = '''"""Test-only: hide the editable install of the Kiln project, as it is absent from the image."""
import sys

def _editable(hook):
    return getattr(hook, "__module__", "").startswith("__editable__")

sys.meta_path[:] = [finder for finder in sys.meta_path if not _editable(finder)]
sys.path_hooks[:] = [hook for hook in sys.path_hooks if not _editable(hook)]
sys.path_importer_cache.clear()
'''
BODY = json.dumps({"dataframe_split": {"columns": ["amount", "merchant_risk", "hour", "card_age_days"],
                                       "data": [[100.0, 0.7, 5.0, 970.0]]}})


def _image_app_root(model_dir: Path, destination: Path) -> Path:
    """The files the Dockerfile copies into /opt/kiln/app, from the rendered build context."""
    files = render_files(environment_for(read_manifest(model_dir), gpu=False))
    dockerfile = files["Dockerfile"].decode()
    assert "COPY runtime/ /opt/kiln/app/runtime/" in dockerfile and "WORKDIR /opt/kiln/app" in dockerfile
    for name, content in files.items():
        if name.startswith("runtime/"):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            (destination / name).write_bytes(content)
    return destination


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory, fraud_model_dir: Path) -> dict[str, str]:  # noqa: F811
    """Environment and working directory of a process that sees only the image's copy."""
    tmp = tmp_path_factory.mktemp("image-copy")
    app = _image_app_root(fraud_model_dir, tmp / "app")
    hide = tmp / "hide-editable"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_EDITABLE_INSTALL)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "KILN_"))}
    return {**env, "PYTHONPATH": f"{app}{os.pathsep}{hide}", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "KILN_CACHE_DIR": str(tmp / "cache"), "APP_ROOT": str(app)}


def _python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], check=False, env=env, cwd=env["APP_ROOT"],
                          capture_output=True, text=True, timeout=60)


def test_only_the_copied_tree_is_importable(image_env: dict[str, str]) -> None:
    with_project = _python({**image_env, "PYTHONPATH": image_env["APP_ROOT"]}, "import infra")
    runtime_file = _python(image_env, "import runtime; print(runtime.__file__)")
    hidden = {package: _python(image_env, f"import {package}") for package in ("infra", "models", "policies")}

    assert with_project.returncode == 0  # the editable install would have leaked it
    assert runtime_file.stdout.strip() == str(Path(image_env["APP_ROOT"]) / "runtime" / "__init__.py")
    for package, result in hidden.items():
        assert f"No module named '{package}'" in result.stderr


def test_every_runtime_module_imports_with_the_rest_of_the_project_hidden(image_env: dict[str, str]) -> None:
    """Not only the modules a start happens to reach: a later import of infra/ or models/ in
    any runtime module (a helper, an error path) would fail in the image."""
    code = ("import importlib, pkgutil, runtime\n"
            "names = [m.name for m in pkgutil.walk_packages(runtime.__path__, 'runtime.') if m.name != 'runtime.__main__']\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names))")
    result = _python(image_env, code)
    copied = [p for p in (Path(image_env["APP_ROOT"]) / "runtime").glob("*.py") if p.name not in ("__init__.py", "__main__.py")]

    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(copied)


@pytest.fixture(scope="module")
def image_runtime(tmp_path_factory: pytest.TempPathFactory, image_env: dict[str, str],
                  fraud_model_dir: Path) -> Iterator[RunningProcess]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("image-runtime")
    port = free_port()
    env = {**image_env, "KILN_HOST": "127.0.0.1", "KILN_PORT": str(port), "KILN_MODEL_URI": str(fraud_model_dir),
           "KILN_MODEL_DIGEST": tree_digest(fraud_model_dir)}
    log = (tmp / "runtime.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "runtime"], env=env, cwd=image_env["APP_ROOT"],
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    runtime = RunningProcess(process, f"http://127.0.0.1:{port}", tmp / "runtime.log")
    try:
        yield runtime
    finally:
        runtime.stop()


def test_the_copied_runtime_becomes_ready_and_predicts(image_runtime: RunningProcess, fraud_model_dir: Path) -> None:  # noqa: F811
    statuses = image_runtime.wait_for_ping()
    reply = httpx.post(f"{image_runtime.url}/invocations", content=BODY,
                       headers={"content-type": "application/json"}, timeout=30)
    version = httpx.get(f"{image_runtime.url}/version").json()

    assert statuses[-1:] == [200], image_runtime.log()
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["predictions"]) == 1
    assert version["model_digest"] == tree_digest(fraud_model_dir)

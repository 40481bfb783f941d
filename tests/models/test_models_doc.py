"""docs/models.md's logging snippet, run as a data scientist runs it: from this project's
virtualenv, into a local store in an empty folder, then checked with `kiln bake MODEL_URI`.

The snippet is the first thing a data scientist copies; it must log a model Kiln finds
nothing wrong with, and what the page says about requirements MLflow infers from this
virtualenv (pytest leaks in) must stay true, or the advice is wrong.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from click.testing import CliRunner

from infra.commands.cli import main
from infra.plan.config import PROJECT_ROOT

MODELS_DOC = PROJECT_ROOT / "docs" / "models.md"
PIP_REQUIREMENTS = re.compile(r"\n\s*pip_requirements=\[.*?\],[^\n]*", re.S)


def models_doc_snippet() -> str:
    """The page's first Python block: the one that logs a model."""
    found = re.search(r"```python\n(.*?)```", MODELS_DOC.read_text(), re.S)
    assert found, "docs/models.md has no python block"
    return found[1]


def log_model(code: str, folder: Path) -> str:
    """Run `code` as a script in `folder` with this virtualenv's Python (from stdin: the folder
    keeps only what the script writes); the model URI it prints."""
    folder.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-"], input=code, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _bake(uri: str, folder: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["bake", uri, "--mlflow-tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                                       "--skip-reload", "--json", "-o", str(folder / "contexts")])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)["servedModels"][0]


def test_the_pins_in_the_snippet_are_what_this_project_installs() -> None:
    pins = dict(re.findall(r'"([a-z-]+)==([^"]+)"', PIP_REQUIREMENTS.search(models_doc_snippet())[0]))

    assert pins and pins == {name: version(name) for name in pins}


def test_the_logging_snippet_logs_a_model_kiln_bake_finds_nothing_wrong_with(tmp_path: Path) -> None:
    uri = log_model(models_doc_snippet(), tmp_path / "ds")

    code, report = _bake(uri, tmp_path / "ds")

    assert uri == "models:/iris/1" and code == 0
    assert report["findings"] == []
    # The artifacts stay in the folder the script ran from, which .gitignore covers in this repository.
    assert any((tmp_path / "ds" / "mlruns").rglob("MLmodel"))


def test_without_pip_requirements_mlflow_infers_pytest_from_this_virtualenv_as_the_page_says(tmp_path: Path) -> None:
    inferred = PIP_REQUIREMENTS.sub("", models_doc_snippet())
    assert "pip_requirements" not in inferred

    code, report = _bake(log_model(inferred, tmp_path / "ds"), tmp_path / "ds")

    [leak] = [f for f in report["findings"] if f["id"] == "dev-packages"]
    assert code == 0 and "pytest" in leak["message"]

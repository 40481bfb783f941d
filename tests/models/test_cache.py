"""`kiln cache show | prune` over a real cache: a fetched model, virtualenv folders, contexts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from models import artifacts
from models.artifacts import fetch_model
from models.bake import bake
from models.build_context import render_build_context
from models.measurements import Measurements, record_measurements, recorded_measurements
from models.reload import READY_MARKER, ensure_venv, venv_key
from tests.bake_support import save_pyfunc

DAY = 86400


def _age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setattr(artifacts, "CACHE_DIR", root)
    return root


def _venv(cache: Path, name: str, days: float) -> Path:
    venv = cache / "venvs" / name
    (venv / "lib").mkdir(parents=True)
    (venv / "lib" / "wheel.so").write_bytes(b"\0" * 4096)
    (venv / READY_MARKER).write_text("mlflow==3.17.2\n")
    _age(venv / READY_MARKER, days)
    return venv


def test_show_lists_models_virtualenvs_and_build_contexts_with_their_sizes(cache: Path, tmp_path: Path) -> None:
    files = fetch_model(str(save_pyfunc(tmp_path / "model")), (tmp_path / "mlruns").as_uri())
    context = render_build_context(bake(str(files.directory), (tmp_path / "mlruns").as_uri(), gpu=False).environment)
    _venv(cache, "abc", days=1)

    result = CliRunner().invoke(main, ["cache", "show", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    kinds = {(e["kind"], Path(e["path"]).name): e for e in report["entries"]}
    assert ("model", files.digest) in kinds and ("venv", "abc") in kinds
    assert {("context", context.directory.name), ("context", context.archive.name)} <= set(kinds)
    assert kinds[("venv", "abc")]["sizeBytes"] >= 4096 and kinds[("venv", "abc")]["ageDays"] >= 1
    assert report["totalBytes"] == sum(e["sizeBytes"] for e in report["entries"])


def test_prune_removes_only_the_kinds_unused_for_longer_than_asked(cache: Path, tmp_path: Path) -> None:
    files = fetch_model(str(save_pyfunc(tmp_path / "model")), (tmp_path / "mlruns").as_uri())
    _age(files.directory, 30)
    stale, fresh = _venv(cache, "stale", days=30), _venv(cache, "fresh", days=1)

    dry = CliRunner().invoke(main, ["cache", "prune", "--older-than", "7", "--kind", "venv", "--dry-run"])
    assert dry.exit_code == 0 and stale.is_dir()
    result = CliRunner().invoke(main, ["cache", "prune", "--older-than", "7", "--kind", "venv"])

    assert result.exit_code == 0, result.output
    assert not stale.exists() and fresh.is_dir() and files.directory.is_dir()
    assert "removed 1 entries" in result.output


def test_reusing_a_virtualenv_marks_it_used_so_prune_keeps_it(cache: Path) -> None:
    requirements = ("mlflow==3.17.2",)
    venv = _venv(cache, venv_key("", requirements), days=30)

    assert ensure_venv("", requirements) == venv

    assert time.time() - (venv / READY_MARKER).stat().st_mtime < DAY


def _measured(digest: str, days: float) -> Path:
    measured = Measurements(load_seconds=1.0, baseline_rss_mib=200.0, peak_rss_mib=260.0, example=None, batch=None,
                            cpus=2)
    path = record_measurements(digest, "env-abc", f"models:/m/{digest}", measured)
    _age(path, days)
    return path


def test_prune_removes_each_stale_measurement_and_keeps_the_ones_a_plan_still_reads(cache: Path) -> None:
    """A `sizing: measured` plan stops without its model's measurements: only those unused go."""
    stale, read, fresh = _measured("a1", days=30), _measured("b2", days=30), _measured("c3", days=1)
    assert recorded_measurements("b2", "env-abc") is not None  # what planning a measured served model does

    shown = json.loads(CliRunner().invoke(main, ["cache", "show", "--json"]).stdout)["entries"]
    result = CliRunner().invoke(main, ["cache", "prune", "--older-than", "7", "--kind", "measurements"])

    assert result.exit_code == 0, result.output
    assert {Path(e["path"]).name for e in shown if e["kind"] == "measurements"} == {stale.name, read.name, fresh.name}
    assert not stale.exists() and read.is_file() and fresh.is_file()
    assert "removed 1 entries" in result.output

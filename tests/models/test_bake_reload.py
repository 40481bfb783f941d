"""The reload check: a clean virtualenv from the model's own requirements, load, predict, validate.

Two real reloads (they install MLflow and pandas from PyPI, or pip's cache, into a venv
under the test's Kiln cache): a good model, and one that imports a package it never
declared. Both declare the same requirements, so the second reuses the first's venv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from models.bake import bake
from models.reload import ReloadResult, reload_check
from models.reload_probe import BATCH_ROWS, batch_of, output_problems, probe
from tests.bake_support import save_pyfunc


@pytest.fixture(scope="module")
def good_reload(example_store) -> ReloadResult:
    baked = bake("models:/ticket-router@champion", example_store.tracking_uri, gpu=False)
    return reload_check(baked.model_dir, baked.manifest)


def test_a_well_packaged_model_reloads_predicts_and_is_timed(good_reload: ReloadResult) -> None:
    assert (good_reload.ok, good_reload.stage) == (True, "done"), good_reload.message
    assert good_reload.load_seconds is not None and good_reload.predict_seconds is not None
    assert good_reload.finding() is None


def test_the_reload_check_measures_the_worker_in_the_models_own_environment(good_reload: ReloadResult) -> None:
    measured = good_reload.measurements

    assert measured is not None and measured.load_seconds == good_reload.load_seconds
    assert 0 < measured.baseline_rss_mib <= measured.peak_rss_mib
    assert measured.example is not None and measured.example.rows == 2
    assert measured.batch is not None and measured.batch.rows == BATCH_ROWS


def test_the_probe_times_predictions_of_the_example_and_of_a_batch_in_percentiles(tmp_path: Path) -> None:
    outcome = probe(str(save_pyfunc(tmp_path / "model")))

    measured = outcome["measurements"]
    assert outcome["ok"], outcome["message"]
    for one, rows in ((measured["example"], 2), (measured["batch"], BATCH_ROWS)):
        assert one["rows"] == rows and one["runs"] >= 1
        assert 0 < one["p50_ms"] <= one["p90_ms"] <= one["p99_ms"]


def test_a_model_without_an_input_example_is_measured_without_latencies(tmp_path: Path) -> None:
    outcome = probe(str(save_pyfunc(tmp_path / "model", input_example=False)))

    measured = outcome["measurements"]
    assert (measured["example"], measured["batch"]) == (None, None)
    assert measured["peak_rss_mib"] > 0 and measured["load_seconds"] >= 0


def test_a_batch_repeats_the_examples_rows_and_an_input_without_rows_has_none() -> None:
    frame = pd.DataFrame({"text": ["a", "bb", "ccc"]})

    batch = batch_of(frame, 8)

    assert list(batch["text"]) == ["a", "bb", "ccc", "a", "bb", "ccc", "a", "bb"]
    assert len(batch_of(np.zeros((3, 4)), 8)) == 8 and batch_of([1, 2], 5) == [1, 2, 1, 2, 1]
    assert batch_of({"input_ids": np.zeros(3)}, 8) is None


def _save_undeclared_import_model(path: Path) -> Path:
    import mlflow
    from mlflow.pyfunc import PythonModel

    from models.examples.seed import pinned

    class ValidatingRouter(PythonModel):
        def load_context(self, context):
            import jsonschema  # used by the model, never declared in its requirements

            self.validator = jsonschema.Draft7Validator({"type": "string"})

        def predict(self, context, model_input, params=None):
            return model_input["text"].str.len().rename("length")

    example = pd.DataFrame({"text": ["refund please"]})
    mlflow.pyfunc.save_model(
        str(path),
        python_model=ValidatingRouter(),
        pip_requirements=pinned("mlflow", "pandas"),
        signature=infer_signature(example, example["text"].str.len().rename("length")),
        input_example=example,
    )
    return path


def test_a_model_importing_an_undeclared_package_fails_naming_the_module(
    example_store, good_reload: ReloadResult, tmp_path: Path
) -> None:
    baked = bake(str(_save_undeclared_import_model(tmp_path / "model")), example_store.tracking_uri, gpu=False)

    result = reload_check(baked.model_dir, baked.manifest)

    assert (result.ok, result.stage, result.missing_module) == (False, "load", "jsonschema")
    finding = result.finding()
    assert finding is not None and finding.id == "reload-missing-module" and "'jsonschema'" in finding.message
    assert result.venv == good_reload.venv  # same requirements: the venv was reused, nothing installed


def test_output_that_contradicts_the_signature_is_reported(tmp_path: Path) -> None:
    example = pd.DataFrame({"text": ["a", "bb"]})
    signature = infer_signature(example, pd.Series([1, 2], name="length"))

    problems = output_problems(pd.Series(["one", "two"], name="length"), signature.outputs)

    assert len(problems) == 1
    assert problems[0].startswith("output length has dtype") and problems[0].endswith("signature says long")


def test_requirements_pip_cannot_install_fail_at_install_with_pips_reason(example_store, tmp_path: Path) -> None:
    model = save_pyfunc(tmp_path / "model", requirements=["kiln-no-such-package-anywhere==0.0.1"])
    baked = bake(str(model), example_store.tracking_uri, gpu=False)

    result = reload_check(baked.model_dir, baked.manifest)

    assert (result.ok, result.stage) == (False, "install")
    assert "kiln-no-such-package-anywhere" in result.message
    assert result.finding() is not None and result.finding().id == "reload-failed"

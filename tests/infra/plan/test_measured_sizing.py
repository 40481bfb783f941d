"""`sizing: measured`: workers sized from what the reload probe measured, beside the nominal plan.

The models are real (saved with MLflow in the test), measured by the real probe script in a
subprocess, and planned through `kiln plan`'s own program run.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from click.testing import CliRunner
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from infra.commands.cli import main
from infra.plan.capacity import MIN_MEASURED_LATENCY_MS
from infra.plan.config import ConfigError
from infra.preview.report import build_plan_report
from models.examples.seed import LocalStore, pinned
from tests.bake_support import kiln_runtime, measure_here, save_pyfunc  # noqa: F401 (fixture)
from tests.conftest import stack_config, write_stack

# A worker that holds this much more than MLflow itself measures above CPU_MEDIUM's 8 GiB per
# concurrency once the 25 % headroom is added (6.5 GiB + ~0.35 GiB interpreter) × 1.25 > 8.
HEAVY_GIB = 6.5


def _save_heavy(path: Path, gib: float) -> Path:
    """A model that holds `gib` GiB of weights once loaded (written, so resident, not lazily mapped)."""

    class Ballast(PythonModel):
        def __init__(self, gib: float) -> None:
            self.gib = gib

        def load_context(self, context):
            self.weights = np.ones(int(self.gib * 2**30 / 8))

        def predict(self, context, model_input, params=None):
            return model_input["text"].str.len().rename("length")

    example = pd.DataFrame({"text": ["refund please"]})
    mlflow.pyfunc.save_model(str(path), python_model=Ballast(gib), pip_requirements=pinned("mlflow", "pandas", "numpy"),
                             signature=infer_signature(example, example["text"].str.len().rename("length")),
                             input_example=example)
    return path


def _measured_stack(tmp_path: Path, store: LocalStore, model: Path, compute_type: str = "CPU_MEDIUM",
                    scale_to_zero: bool = False) -> Path:
    """The dev stack with its one served model always on (workloadSize Small: 4 concurrency)
    unless `scale_to_zero`, serving `model`, sized from measurements."""
    config: dict[str, Any] = copy.deepcopy(stack_config("dev", store))
    served = config["kiln:endpoints"][0]["servedModels"][0]
    served.update(modelUri=str(model), computeType=compute_type, scaleToZeroEnabled=scale_to_zero, sizing="measured")
    return write_stack(tmp_path, config)


def test_a_tiny_measured_model_plans_fewer_and_cheaper_instances_than_nominal(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    model = save_pyfunc(tmp_path / "tiny")
    measured = measure_here(model, example_store.tracking_uri)

    [served] = build_plan_report(str(_measured_stack(tmp_path, example_store, model)), example_store.tracking_uri,
                                 policies=False).plan.served_models

    nominal = served.nominal_capacity
    assert nominal is not None and served.capacity.measured is not None
    assert served.capacity.measured.peak_gib == measured.worker_gib
    # Fewer or smaller instances, whichever the measured worker memory on this machine allows.
    smaller = served.capacity.sizing.instance.memory_gib < nominal.sizing.instance.memory_gib
    fewer = served.capacity.sizing.max_instances < nominal.sizing.max_instances
    assert smaller or fewer
    assert served.capacity.sizing.hourly_cost_min < nominal.sizing.hourly_cost_min
    assert served.capacity.latency_ms == max(measured.example.p90_ms, MIN_MEASURED_LATENCY_MS)


def test_kiln_plan_shows_both_plans_and_the_monthly_difference_with_the_arithmetic(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    model = save_pyfunc(tmp_path / "tiny")
    measure_here(model, example_store.tracking_uri)

    result = CliRunner().invoke(main, ["plan", str(_measured_stack(tmp_path, example_store, model)),
                                       "--mlflow-tracking-uri", example_store.tracking_uri])

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "sizing nominal:" in text and "sizing measured:" in text
    assert "GiB measured per worker" in text and "GiB peak × 1.25" in text
    assert "measured - nominal at minimum:" in text and "× 730 h = $-" in text


def _monthly(text: str, at: str) -> tuple[float, float, float]:
    """(measured $/h, nominal $/h, $/month) from the `measured - nominal at <at>` line."""
    found = re.search(rf"measured - nominal at {at}: \$([\d.]+)/h - \$([\d.]+)/h = \$[-+\d.]+/h × 730 h = "
                      r"\$([-+\d.,]+)/month", text)
    assert found, text
    return float(found[1]), float(found[2]), float(found[3].replace(",", ""))


def test_a_measured_model_that_scales_to_zero_shows_the_difference_at_its_maximum(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    """At its minimum a scale-to-zero model costs nothing under either plan; the saving is at its maximum."""
    model = save_pyfunc(tmp_path / "tiny")
    measure_here(model, example_store.tracking_uri)
    stack = _measured_stack(tmp_path, example_store, model, scale_to_zero=True)

    result = CliRunner().invoke(main, ["plan", str(stack), "--json", "--mlflow-tracking-uri", example_store.tracking_uri])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [comparison] = report["sizingComparisons"]
    [served] = report["servedModels"]
    text = " ".join(comparison["arithmetic"])
    assert _monthly(text, "minimum") == (0.0, 0.0, 0.0)
    measured_hourly, nominal_hourly, monthly = _monthly(text, "maximum")
    assert measured_hourly == round(served["hourlyCostMax"], 4) and measured_hourly < nominal_hourly
    assert monthly < 0 and abs(monthly - (measured_hourly - nominal_hourly) * 730) < 0.05


def test_a_measured_model_never_measured_here_names_kiln_bake(example_store, tmp_path: Path, kiln_runtime) -> None:  # noqa: F811
    model = save_pyfunc(tmp_path / "unmeasured")

    result = CliRunner().invoke(main, ["plan", str(_measured_stack(tmp_path, example_store, model)),
                                       "--mlflow-tracking-uri", example_store.tracking_uri])

    assert result.exit_code == 2
    assert "servedModels[0]" in result.output and "kiln bake STACK" in result.output


def test_a_memory_heavy_measured_model_is_refused_on_a_compute_type_too_small_per_worker(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    model = _save_heavy(tmp_path / "heavy", HEAVY_GIB)
    measured = measure_here(model, example_store.tracking_uri)
    assert measured.worker_gib > HEAVY_GIB

    try:
        build_plan_report(str(_measured_stack(tmp_path, example_store, model)), example_store.tracking_uri,
                          policies=False)
        refused = None
    except ConfigError as error:
        refused = str(error)
    [served] = build_plan_report(str(_measured_stack(tmp_path, example_store, model, "CPU_LARGE")),
                                 example_store.tracking_uri, policies=False).plan.served_models

    assert refused is not None and "CPU_MEDIUM gives 8 GiB per concurrency" in refused and "CPU_LARGE" in refused
    assert served.capacity.sizing.workers_per_instance * served.capacity.measured.memory_gib <= (
        served.capacity.sizing.instance.memory_gib)


def test_kiln_plan_json_carries_the_comparison_of_measured_served_models(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    model = save_pyfunc(tmp_path / "tiny")
    measure_here(model, example_store.tracking_uri)

    result = CliRunner().invoke(main, ["plan", str(_measured_stack(tmp_path, example_store, model)), "--json",
                                       "--mlflow-tracking-uri", example_store.tracking_uri])

    assert result.exit_code == 0, result.output
    [comparison] = json.loads(result.stdout)["sizingComparisons"]
    assert (comparison["endpoint"], comparison["servedModelName"]) == ("fraud-scorer", "champion")
    assert [line.split(":")[0] for line in comparison["arithmetic"]] == [
        "sizing nominal", "sizing measured", "measured - nominal at minimum", "measured - nominal at maximum"]


def test_kiln_review_shows_both_plans_and_the_monthly_difference_in_markdown_and_html(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    model = save_pyfunc(tmp_path / "tiny")
    measure_here(model, example_store.tracking_uri)
    stack = _measured_stack(tmp_path, example_store, model)
    reports = {}
    for fmt in ("md", "html"):
        out = tmp_path / f"review.{fmt}"
        result = CliRunner().invoke(main, ["review", str(stack), "--format", fmt, "-o", str(out),
                                           "--mlflow-tracking-uri", example_store.tracking_uri])
        assert result.exit_code == 0, result.output
        reports[fmt] = out.read_text()

    markdown, html = reports["md"], reports["html"]
    section = markdown.split("### Sizing: nominal vs measured", 1)[1].split("###", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip()]
    assert lines[0] == "- **fraud-scorer/champion**:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "- sizing nominal", "- sizing measured", "- measured - nominal at minimum", "- measured - nominal at maximum"]
    assert "GiB measured per worker" in section and "× 730 h = $-" in section
    # In the HTML the three lines are nested under their served model, not loose paragraphs.
    assert re.search(r"<li><strong>fraud-scorer/champion</strong>:\s*<ul>\s*<li>sizing nominal: ", html)
    assert "<li>measured - nominal at minimum: " in html

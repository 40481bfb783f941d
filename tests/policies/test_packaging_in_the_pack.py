"""Packaging findings and policy violations side by side in `kiln check`, at one set of levels.

Real models saved with MLflow in the test, the dev stack's program run under mocks and the
pack driven over its analyzer protocol, as `kiln check` does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import infra.commands.bake as bake_command_module
from infra.commands.cli import main
from models import artifacts
from models.examples.seed import pinned
from models.reload import ReloadResult
from tests.bake_support import kiln_runtime, save_pyfunc, venv_with_distributions  # noqa: F401 (fixture)
from tests.conftest import stack_config, write_stack


def _dev_serving(tmp_path: Path, store: Any, model: Path) -> Path:
    """The dev stack (its endpoint scales to zero) serving `model`."""
    config: dict[str, Any] = copy.deepcopy(stack_config("dev", store))
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = str(model)
    return write_stack(tmp_path, config, stack="dev")


def _check(stack_file: Path, store: Any) -> Any:
    """`kiln check STACK --json`, its models resolved against `store`."""
    return CliRunner().invoke(main, ["check", str(stack_file), "--json", "--mlflow-tracking-uri", store.tracking_uri])


def _violations(result: Any) -> set[tuple[str, str]]:
    return {(v["policy"], v["level"]) for v in json.loads(result.stdout)["violations"]}


def test_a_conda_defaults_model_in_dev_is_advised_by_the_pack_beside_scale_to_zero(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    """Before, the packaging check made the channel an error everywhere: the program stopped
    (exit 2) and the pack's advisory rule for dev could never fire."""
    conda_env = {"name": "legacy", "channels": ["defaults"],
                 "dependencies": ["python=3.11.7", "pip", {"pip": pinned("mlflow", "pandas")}]}
    model = save_pyfunc(tmp_path / "model", conda_env=conda_env)

    result = _check(_dev_serving(tmp_path, example_store, model), example_store)

    assert result.exit_code == 0, result.output
    assert _violations(result) >= {("no-conda-defaults-channel", "advisory"), ("no-scale-to-zero", "advisory")}


def test_an_unsigned_model_in_dev_is_advised_by_the_pack_beside_scale_to_zero(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    model = save_pyfunc(tmp_path / "model", signature=False, input_example=False)

    result = _check(_dev_serving(tmp_path, example_store, model), example_store)

    assert result.exit_code == 0, result.output
    assert _violations(result) >= {("model-signature", "advisory"), ("no-scale-to-zero", "advisory")}


def _prod_serving(tmp_path: Path, store: Any, model: Path) -> Path:
    """The prod stack serving `model` first, its second served model scaling to zero."""
    config: dict[str, Any] = copy.deepcopy(stack_config("prod", store))
    served_models = config["kiln:endpoints"][0]["servedModels"]
    served_models[0]["modelUri"] = str(model)
    served_models[1]["scaleToZeroEnabled"] = True
    return write_stack(tmp_path, config, stack="prod")


def test_an_unsigned_model_and_scale_to_zero_in_prod_are_both_mandatory_violations(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    """Before, the program stopped on the packaging error (exit 2) and the pack never ran."""
    model = save_pyfunc(tmp_path / "model", signature=False, input_example=False)

    result = _check(_prod_serving(tmp_path, example_store, model), example_store)

    assert result.exit_code == 1, result.output
    assert _violations(result) >= {("model-signature", "mandatory"), ("no-scale-to-zero", "mandatory")}


def test_an_unpinned_requirement_in_prod_is_a_mandatory_violation_beside_the_others(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    model = save_pyfunc(tmp_path / "model", requirements=["mlflow", "pandas"])

    result = _check(_prod_serving(tmp_path, example_store, model), example_store)

    assert result.exit_code == 1, result.output
    assert _violations(result) >= {("requirements-unpinned", "mandatory"), ("no-scale-to-zero", "mandatory")}


@pytest.mark.parametrize("rule", ["model-signature", "no-conda-defaults-channel"])
def test_the_pulumi_program_stops_on_a_mandatory_finding_with_the_message_kiln_check_reports(
    rule: str, example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    """One check, one message: the pack reports the bake's finding, the program stops on it."""
    if rule == "model-signature":
        model = save_pyfunc(tmp_path / "model", signature=False, input_example=False)
    else:
        model = save_pyfunc(tmp_path / "model", conda_env={
            "name": "legacy", "channels": ["defaults"],
            "dependencies": ["python=3.11.7", "pip", {"pip": pinned("mlflow", "pandas")}]})
    stack = _prod_serving(tmp_path, example_store, model)

    planned = CliRunner().invoke(main, ["plan", str(stack), "--mlflow-tracking-uri", example_store.tracking_uri])
    checked = _check(stack, example_store)

    [violation] = [v for v in json.loads(checked.stdout)["violations"] if v["policy"] == rule]
    [stopped] = [line.strip() for line in planned.output.splitlines() if line.strip().startswith(f"[{rule}]")]
    assert planned.exit_code == 2 and checked.exit_code == 1 and violation["level"] == "mandatory"
    assert stopped == f"[{rule}] " + violation["message"].split("): ", 1)[1]


def _dev_building(tmp_path: Path, store: Any, timeout_minutes: int) -> Path:
    """The dev stack serving a model whose image takes ~10 min to build (torch's CUDA wheels,
    estimated), under a build timeout of `timeout_minutes`."""
    model = save_pyfunc(tmp_path / "model", requirements=[*pinned("mlflow", "pandas"), "torch==2.4.0"])
    config: dict[str, Any] = copy.deepcopy(stack_config("dev", store))
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = str(model)
    config["kiln:build"] = {**config.get("kiln:build", {}), "timeoutMinutes": timeout_minutes}
    return write_stack(tmp_path, config, stack="dev")


def test_a_build_over_its_timeout_is_a_mandatory_violation_beside_the_others(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    """Before, the build-time estimate was not a rule: the program stopped (exit 2) and the pack never ran."""
    result = _check(_dev_building(tmp_path, example_store, 5), example_store)

    assert result.exit_code == 1, result.output
    assert _violations(result) >= {("build-time", "mandatory"), ("no-scale-to-zero", "advisory")}
    [message] = [v["message"] for v in json.loads(result.stdout)["violations"] if v["policy"] == "build-time"]
    assert "exceeds build.timeoutMinutes 5" in message


def test_a_build_close_to_its_timeout_is_advised_and_does_not_fail_the_check(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    result = _check(_dev_building(tmp_path, example_store, 12), example_store)

    assert result.exit_code == 0, result.output
    assert ("build-time-margin", "advisory") in _violations(result)
    assert "build-time" not in {policy for policy, _ in _violations(result)}


def test_the_install_kiln_bake_measured_replaces_the_package_table_in_kiln_checks_build_time(
    example_store, tmp_path: Path, kiln_runtime, monkeypatch  # noqa: F811
) -> None:
    """The table puts torch at its CUDA wheels' 6.5 GiB; the reload check's virtualenv (stood in
    for by one holding what pip records for a +cpu torch) is what the image's layer will hold,
    and `kiln check`, which runs no reload check, sizes the image from it once `kiln bake` ran."""
    # A cache of its own: what this test measures must not calibrate the other tests' estimates.
    monkeypatch.setattr(artifacts, "CACHE_DIR", tmp_path / "cache")
    stack = _dev_building(tmp_path, example_store, 5)
    before = _check(stack, example_store)
    venv = venv_with_distributions(tmp_path, ("torch", "2.4.0+cpu"), *(tuple(p.split("==")) for p in pinned("mlflow")))
    monkeypatch.setattr(bake_command_module, "reload_check", lambda *_, **__: ReloadResult(True, "predict", "", venv=venv))

    baked = CliRunner().invoke(main, ["bake", str(stack), "--json", "--mlflow-tracking-uri", example_store.tracking_uri,
                                      "-o", str(tmp_path / "contexts")])
    after = _check(stack, example_store)

    [report] = json.loads(baked.stdout)["servedModels"]
    assert baked.exit_code == 0, baked.output
    assert report["estimate"]["dependenciesMeasured"] and report["estimate"]["buildMinutes"] < 5
    assert report["estimate"]["fromPackageTable"]["buildMinutes"] > 5
    assert before.exit_code == 1 and ("build-time", "mandatory") in _violations(before)
    assert after.exit_code == 0, after.output
    assert not {"build-time", "build-time-margin"} & {policy for policy, _ in _violations(after)}

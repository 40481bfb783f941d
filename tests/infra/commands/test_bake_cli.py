"""`kiln bake`: findings per served model, rendered build contexts, exit codes."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import infra.commands.bake as bake_command_module
from infra.commands.cli import main
from models import artifacts
from models.examples.seed import LocalStore
from models.reload import ReloadResult
from tests.bake_support import kiln_runtime, register_pyfunc, save_pyfunc, venv_with_distributions  # noqa: F401 (fixture)
from tests.conftest import stack_config, write_stack


def test_a_clean_stack_exits_0_with_a_build_context_per_served_model(example_store, tmp_path: Path, kiln_runtime) -> None:  # noqa: F811
    stack_file = write_stack(tmp_path, stack_config("staging", example_store))

    result = CliRunner().invoke(main, ["bake", str(stack_file), "--skip-reload", "--json", "-o", str(tmp_path / "contexts")])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    served = {s["servedModel"]: s for s in report["servedModels"]}
    assert set(served) == {"fraud-scorer/champion", "fraud-scorer/challenger"}
    assert served["fraud-scorer/champion"]["imageTag"] == served["fraud-scorer/challenger"]["imageTag"]
    assert (Path(served["fraud-scorer/champion"]["buildContext"]) / "Dockerfile").is_file()
    assert all(s["reload"] is None for s in served.values())


def test_an_error_finding_exits_1_and_names_the_check(example_store, tmp_path: Path, kiln_runtime) -> None:  # noqa: F811
    config = copy.deepcopy(stack_config("prod", example_store))
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = str(
        save_pyfunc(tmp_path / "unsigned", signature=False, input_example=False)
    )
    stack_file = write_stack(tmp_path, config)
    served = f"{config['kiln:endpoints'][0]['name']}/{config['kiln:endpoints'][0]['servedModels'][0]['name']}"

    result = CliRunner().invoke(main, ["bake", str(stack_file), "--served-model", served, "--skip-reload"])

    assert result.exit_code == 1
    assert "model-signature" in result.output and "infer_signature" in result.output


def test_an_unknown_served_model_is_a_usage_error(example_store, tmp_path: Path) -> None:
    stack_file = write_stack(tmp_path, stack_config("dev", example_store))

    result = CliRunner().invoke(main, ["bake", str(stack_file), "--served-model", "nope", "--skip-reload"])

    assert result.exit_code == 2 and "fraud-scorer/champion" in result.output


def test_a_gpu_model_whose_requirements_resolve_to_a_cpu_torch_exits_1(
    example_store, tmp_path: Path, kiln_runtime, monkeypatch  # noqa: F811
) -> None:
    # `torch==2.9.0` behind the CPU wheel index: the text looks like a CUDA build, pip installs 2.9.0+cpu.
    # The reload check's virtualenv is stood in for by one holding what that pip run installs.
    requirements = ["--extra-index-url https://download.pytorch.org/whl/cpu", "mlflow==3.17.2", "torch==2.9.0"]
    config = copy.deepcopy(stack_config("prod", example_store))
    endpoint = next(e for e in config["kiln:endpoints"] if e["servedModels"][0]["computeType"].startswith("GPU"))
    endpoint["servedModels"][0]["modelUri"] = str(save_pyfunc(tmp_path / "model", requirements=requirements))
    venv = venv_with_distributions(tmp_path, ("torch", "2.9.0+cpu"), ("mlflow", "3.17.2"))
    monkeypatch.setattr(bake_command_module, "reload_check", lambda *_, **__: ReloadResult(True, "predict", "", venv=venv))
    # A cache of its own: the stand-in's install size is recorded, and must calibrate no other test's estimate.
    monkeypatch.setattr(artifacts, "CACHE_DIR", tmp_path / "cache")
    served = f"{endpoint['name']}/{endpoint['servedModels'][0]['name']}"

    result = CliRunner().invoke(main, ["bake", str(write_stack(tmp_path, config)), "--served-model", served, "--json"])

    assert result.exit_code == 1, result.output
    [report] = json.loads(result.stdout)["servedModels"]
    assert {f["id"]: f["level"] for f in report["findings"]}["cpu-torch-on-gpu"] == "error"


def test_a_reload_without_an_input_example_says_so_instead_of_a_none_timing(capsys: pytest.CaptureFixture[str]) -> None:
    from infra.commands.bake import BakeReport, _print

    _print(BakeReport("e/m", "models:/m/1", reload=ReloadResult(ok=True, stage="done", message="", load_seconds=1.5)))

    assert "reload check: ok (load 1.5 s, no input example to predict) on cpu" in capsys.readouterr().out


def test_each_step_shows_its_elapsed_time_on_stderr_unless_json(example_store, tmp_path: Path) -> None:
    stack_file = write_stack(tmp_path, stack_config("dev", example_store))
    args = ["bake", str(stack_file), "--skip-reload", "-o", str(tmp_path / "contexts")]

    tables, as_json = CliRunner().invoke(main, args), CliRunner().invoke(main, [*args, "--json"])

    assert tables.exit_code == as_json.exit_code == 0, tables.output
    assert re.search(r"fraud-scorer/champion: resolve the model, packaging checks +0:00:\d\d", tables.stderr)
    assert re.search(r"fraud-scorer/champion: build context +0:00:\d\d", tables.stderr)
    assert "packaging checks" not in as_json.stderr


def _bake_json(*arguments: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["bake", *arguments, "--skip-reload", "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_a_model_uri_alone_is_baked_with_the_findings_its_stack_form_reports(tmp_path: Path, kiln_runtime) -> None:  # noqa: F811
    store = LocalStore(tmp_path / "store")
    model_uri = register_pyfunc(store, "unsigned", signature=False, input_example=False)
    config = copy.deepcopy(stack_config("prod", store))
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = model_uri
    compute_type = config["kiln:endpoints"][0]["servedModels"][0]["computeType"]
    served = f"{config['kiln:endpoints'][0]['name']}/{config['kiln:endpoints'][0]['servedModels'][0]['name']}"

    stack_code, stack_report = _bake_json(str(write_stack(tmp_path, config)), "--served-model", served)
    uri_code, uri_report = _bake_json(model_uri, "--mlflow-tracking-uri", store.tracking_uri,
                                      "--compute-type", compute_type, "--environment", "prod")

    [from_stack], [alone] = stack_report["servedModels"], uri_report["servedModels"]
    assert (uri_code, stack_code) == (1, 1)
    assert alone["findings"] == from_stack["findings"]
    assert {"model-signature", "input-example-missing"} <= {f["id"] for f in alone["findings"]}
    assert (alone["imageTag"], alone["resolvedUri"]) == (from_stack["imageTag"], model_uri)
    assert uri_report["environment"] == "prod" and uri_report["computeType"] == compute_type


def test_a_model_uri_alone_takes_the_levels_of_the_environment_given(tmp_path: Path, kiln_runtime) -> None:  # noqa: F811
    store = LocalStore(tmp_path / "store")
    model_uri = register_pyfunc(store, "unsigned", signature=False, input_example=False)

    dev_code, dev = _bake_json(model_uri, "--mlflow-tracking-uri", store.tracking_uri, "--environment", "dev")
    prod_code, prod = _bake_json(model_uri, "--mlflow-tracking-uri", store.tracking_uri)

    def level(report: dict) -> str:
        return {f["id"]: f["level"] for f in report["servedModels"][0]["findings"]}["model-signature"]

    assert (dev_code, level(dev)) == (0, "warning")
    assert (prod_code, level(prod), prod["environment"]) == (1, "error", "prod")


def test_a_good_model_uri_alone_exits_0_with_its_image_tag_and_build_context(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    code, report = _bake_json("models:/fraud-scorer@champion", "--mlflow-tracking-uri", example_store.tracking_uri,
                              "-o", str(tmp_path / "contexts"))

    [alone] = report["servedModels"]
    assert code == 0, alone["findings"]
    assert alone["resolvedUri"].startswith("models:/fraud-scorer/") and len(alone["imageTag"]) > 8
    assert (Path(alone["buildContext"]) / "Dockerfile").is_file()


def test_a_model_uri_that_does_not_resolve_is_invalid_input(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    register_pyfunc(store, "present")

    result = CliRunner().invoke(main, ["bake", "models:/absent/1", "--mlflow-tracking-uri", store.tracking_uri,
                                       "--skip-reload"])

    assert result.exit_code == 2 and "models:/absent/1" in result.output


def test_stack_options_and_model_uri_options_do_not_mix(example_store, tmp_path: Path) -> None:
    stack_file = write_stack(tmp_path, stack_config("dev", example_store))

    on_stack = CliRunner().invoke(main, ["bake", str(stack_file), "--compute-type", "CPU_LARGE", "--skip-reload"])
    on_uri = CliRunner().invoke(main, ["bake", "models:/fraud-scorer/1", "--served-model", "x", "--skip-reload"])

    assert on_stack.exit_code == 2 and "--compute-type" in on_stack.output
    assert on_uri.exit_code == 2 and "--served-model" in on_uri.output


def test_a_model_uri_alone_runs_the_reload_check_and_records_its_measurements_with_the_image_tag(
    example_store, tmp_path: Path, kiln_runtime  # noqa: F811
) -> None:
    result = CliRunner().invoke(main, ["bake", "models:/ticket-router@champion", "--mlflow-tracking-uri",
                                       example_store.tracking_uri, "--json", "-o", str(tmp_path / "contexts")])

    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)["servedModels"]
    measured = report["reload"]["measurements"]
    recorded = json.loads(Path(report["measurementsFile"]).read_text())
    assert report["reload"]["ok"] and measured["peakRssMiB"] > 0 and measured["batch"]["rows"] > 2
    assert (recorded["imageTag"], recorded["artifactDigest"]) == (report["imageTag"], report["artifactDigest"])
    assert recorded["peakRssMiB"] == measured["peakRssMiB"]
    # The virtualenv (mlflow, pandas and the runtime's requirements) sized the image's Python layer.
    assert report["estimate"]["dependenciesMeasured"] and report["estimate"]["dependenciesGiB"] > 0.05


def test_the_reload_checks_virtualenv_calibrates_the_image_estimate_and_both_are_shown(
    example_store, tmp_path: Path, kiln_runtime, monkeypatch  # noqa: F811
) -> None:
    # The table puts a CUDA torch at 6.5 GiB; the virtualenv pip left (stood in for by one
    # holding what `pip install` of a +cpu torch records) is what the image's layer will hold.
    model = save_pyfunc(tmp_path / "model", requirements=["mlflow==3.17.2", "torch==2.9.0"])
    venv = venv_with_distributions(tmp_path, ("torch", "2.9.0+cpu"), ("mlflow", "3.17.2"))
    monkeypatch.setattr(bake_command_module, "reload_check", lambda *_, **__: ReloadResult(True, "predict", "", venv=venv))
    monkeypatch.setattr(artifacts, "CACHE_DIR", tmp_path / "cache")  # as above

    result = CliRunner().invoke(main, ["bake", str(model), "--environment", "dev", "--json"])
    tables = CliRunner().invoke(main, ["bake", str(model), "--environment", "dev"])

    estimate = json.loads(result.stdout)["servedModels"][0]["estimate"]
    assert result.exit_code == 0, result.output
    assert (f"(Python layer {estimate['dependenciesGiB']} GiB measured, "
            f"table {estimate['fromPackageTable']['dependenciesGiB']} GiB)") in " ".join(tables.stdout.split())
    assert estimate["dependenciesMeasured"] and not estimate["fromPackageTable"]["dependenciesMeasured"]
    assert estimate["dependenciesGiB"] < 0.1 < 6 < estimate["fromPackageTable"]["dependenciesGiB"]
    assert estimate["imageGiB"] < estimate["fromPackageTable"]["imageGiB"]

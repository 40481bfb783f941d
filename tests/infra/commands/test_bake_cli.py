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
from models.reload import ReloadResult
from tests.bake_support import kiln_runtime, save_pyfunc, venv_with_distributions  # noqa: F401 (fixture)
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
    assert "signature-missing" in result.output and "infer_signature" in result.output


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

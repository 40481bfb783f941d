"""`kiln bake`: findings per served model, rendered build contexts, exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from click.testing import CliRunner

from infra.commands.cli import main
from tests.bake_support import kiln_runtime, save_pyfunc  # noqa: F401 (fixture)
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

"""`kiln check` end to end: the real program under mocks, the real pack process, exit codes for CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from infra.commands.cli import main
from infra.plan.config import read_stack_file, resolve_stack_path
from tests.conftest import SHIPPED_STACKS, write_stack
from tests.policies.test_policy_pack import crashing_pack


def kiln_check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_shipped_stacks_pass(stack: str, example_store: Any) -> None:
    result = kiln_check(stack, "--json", "--mlflow-tracking-uri", example_store.tracking_uri)
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.stdout
    assert report["passed"] and report["mandatory"] == 0
    assert all(set(v) >= {"policy", "level", "urn", "message"} for v in report["violations"])


def test_dev_scale_to_zero_is_advice_not_failure(example_store: Any) -> None:
    result = kiln_check("dev", "--mlflow-tracking-uri", example_store.tracking_uri)
    assert result.exit_code == 0
    assert "no-scale-to-zero" in result.stdout and "advisory" in result.stdout and "passed" in result.stdout


def bad_prod(directory: Path) -> Path:
    """Prod with scale to zero, a long request timeout and an internet-facing gateway without TLS."""
    config: dict[str, Any] = read_stack_file(resolve_stack_path("prod"))
    endpoints = json.loads(json.dumps(config["kiln:endpoints"]))
    endpoints[0]["servedModels"][1]["scaleToZeroEnabled"] = True
    endpoints[0]["requestTimeoutSeconds"] = 900
    config["kiln:endpoints"] = endpoints
    config["kiln:gateway"] = {"internetFacing": True, "allowedCidrs": ["0.0.0.0/0"]}
    return write_stack(directory, config, stack="prod")


def test_bad_stack_fails_with_each_violation_named(example_store: Any, tmp_path: Path) -> None:
    budget = tmp_path / "policy-config.json"
    budget.write_text(json.dumps({"hourly-cost-budget": {"maxHourlyCostUsd": 5}}))
    result = kiln_check(
        str(bad_prod(tmp_path)), "--json", "--mlflow-tracking-uri", example_store.tracking_uri,
        "--policy-pack-config", str(budget),
    )
    assert result.exit_code == 1
    found = {(v["policy"], v["level"]) for v in json.loads(result.stdout)["violations"]}
    assert found >= {
        ("no-scale-to-zero", "mandatory"),
        ("internet-facing-requires-https", "mandatory"),
        ("hourly-cost-budget", "mandatory"),
        ("request-timeout-within-databricks", "advisory"),
    }


def test_bad_stack_table_names_policy_resource_and_fix(example_store: Any, tmp_path: Path) -> None:
    result = kiln_check(str(bad_prod(tmp_path)), "--mlflow-tracking-uri", example_store.tracking_uri)
    assert result.exit_code == 1
    flat = " ".join(result.stdout.split())
    assert "internet-facing-requires-https" in flat and "mandatory" in flat and "failed" in flat
    assert "Set scaleToZeroEnabled: false" in flat


def test_invalid_policy_config_exits_2(example_store: Any, tmp_path: Path) -> None:
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"hourly-cost-budget": {"maxHourlyCostUsd": -1}}))
    result = kiln_check("dev", "--mlflow-tracking-uri", example_store.tracking_uri, "--policy-pack-config", str(config))
    assert result.exit_code == 2
    assert "maxHourlyCostUsd" in result.stderr


def test_crashing_policy_exits_2(example_store: Any, tmp_path: Path) -> None:
    (tmp_path / "pack").mkdir()
    pack = crashing_pack(tmp_path / "pack")
    result = kiln_check("dev", "--mlflow-tracking-uri", example_store.tracking_uri, "--policy-pack", str(pack))
    assert result.exit_code == 2
    assert "rule bug" in result.stderr


def test_plan_shows_policy_results(example_store: Any) -> None:
    result = CliRunner().invoke(main, ["plan", "dev", "--json", "--mlflow-tracking-uri", example_store.tracking_uri])
    assert result.exit_code == 0
    [violation] = json.loads(result.stdout)["policyViolations"]
    assert (violation["policy"], violation["level"]) == ("no-scale-to-zero", "advisory")


def test_a_stack_named_prod_declaring_dev_is_checked_at_prods_levels_and_says_so(
    example_store: Any, tmp_path: Path
) -> None:
    config: dict[str, Any] = read_stack_file(resolve_stack_path("prod"))
    endpoints = json.loads(json.dumps(config["kiln:endpoints"]))
    endpoints[0]["servedModels"][1]["scaleToZeroEnabled"] = True
    path = write_stack(tmp_path, {**config, "kiln:environment": "dev", "kiln:endpoints": endpoints}, stack="prod")

    result = kiln_check(str(path), "--mlflow-tracking-uri", example_store.tracking_uri)

    assert result.exit_code == 1
    flat = " ".join(result.stdout.split())
    assert "no-scale-to-zero" in flat and "mandatory" in flat and "failed (1 mandatory" in flat
    assert "levels: prod's: stack 'prod' names prod and kiln:environment says dev; the stricter applies" in flat

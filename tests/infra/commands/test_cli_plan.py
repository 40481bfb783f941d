"""`kiln plan` and `kiln schema` as a platform engineer runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

import infra.plan.stack as stack_module
from infra.commands.cli import main
from infra.plan.config import PROJECT_ROOT, json_schema, resolve_stack_path
from infra.preview.program import UNKNOWN
from infra.preview.report import COMPUTED
from tests.conftest import SHIPPED_STACKS, stack_config, write_stack

SERVED_MODEL_KEYS = {
    "endpoint", "servedModelName", "computeType", "instanceType", "minInstances", "maxInstances",
    "minConcurrency", "maxConcurrency", "trafficPercentage", "hourlyCostMin", "hourlyCostMax",
}


def plan_json(stack: str, store) -> dict:
    result = CliRunner().invoke(main, ["plan", stack, "--json", "--mlflow-tracking-uri", store.tracking_uri])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_report_rows_show_what_the_program_declared(example_store) -> None:
    """One serializer: each served model's row carries the same values as its component's inputs."""
    plan = plan_json("prod", example_store)
    components = {r["name"]: r["inputs"] for r in plan["resources"] if r["type"] == "kiln:serving:ServedModel"}

    assert len(components) == len(plan["servedModels"]) == 3
    for row in plan["servedModels"]:
        inputs = components[f"{row['endpoint']}.{row['servedModelName']}"]
        shared = set(row) - {"arithmetic"}
        assert {key: inputs[key] for key in shared} == {key: row[key] for key in shared}


def test_plan_json_lists_resources_and_served_models(example_store) -> None:
    plan = plan_json("prod", example_store)

    assert {"type", "name", "parent", "inputs"} <= set(plan["resources"][0])
    assert len(plan["servedModels"]) == 3
    assert all(SERVED_MODEL_KEYS <= set(row) for row in plan["servedModels"])
    balancer = next(r for r in plan["resources"] if r["type"] == "aws:lb/loadBalancer:LoadBalancer")
    assert balancer["parent"] == "gateway"


def test_plan_totals_are_the_sum_of_served_models(example_store) -> None:
    plan = plan_json("prod", example_store)

    assert plan["totals"]["hourlyCostMax"] == pytest.approx(sum(r["hourlyCostMax"] for r in plan["servedModels"]))
    assert plan["totals"]["hourlyCostMin"] == pytest.approx(sum(r["hourlyCostMin"] for r in plan["servedModels"]))


def test_plan_prints_the_resource_tree_and_capacity_table(example_store) -> None:
    result = CliRunner().invoke(main, ["plan", "prod", "--mlflow-tracking-uri", example_store.tracking_uri])

    assert result.exit_code == 0, result.output
    assert "kiln:serving:Endpoint fraud-scorer" in result.output
    assert "Capacity per served model" in result.output
    assert "c7i.4xlarge" in result.output and "g5.xlarge" in result.output
    assert "instances 3-6 (= ceil(8/3)-ceil(16/3))" in result.output


def test_plan_in_preview_mode_leaves_computed_values_unknown(example_store) -> None:
    def plan(*flags: str) -> dict:
        result = CliRunner().invoke(main, ["plan", "dev", "--json", *flags, "--mlflow-tracking-uri", example_store.tracking_uri])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    preview, update = plan("--preview"), plan()

    # What AWS computes (bucket name, image digests, the ALB's DNS name) is unknown before
    # `pulumi up`, as `pulumi preview --json` shows it; planned values are known in both modes.
    for output in ("artifactBucket", "images", "endpoints"):
        assert preview["outputs"][output] == COMPUTED
        assert update["outputs"][output] != COMPUTED
    assert update["outputs"]["artifactBucket"].startswith("artifacts-bucket-")
    assert preview["outputs"]["servedModels"] == update["outputs"]["servedModels"]
    # The engine's internal marker for an unknown is a UUID a reader cannot place.
    assert UNKNOWN not in json.dumps(preview)
    # Ids of resources not created yet are unknown too, a security group's as any other.
    [rule] = [r for r in preview["resources"] if r["name"] == "gateway-instances-from-alb"]
    assert rule["inputs"]["securityGroupId"] == rule["inputs"]["referencedSecurityGroupId"] == COMPUTED
    # Messages of the policy SDK name the pack with the version PulumiPolicy.yaml gives it.
    messages = " ".join(violation["message"] for violation in preview["policyViolations"])
    assert "kiln@0.1.0" in messages and "@v0.0.1" not in messages


def test_invalid_stack_exits_2_with_file_and_key_path(tmp_path: Path, example_store) -> None:
    config = stack_config("prod", example_store)
    config["kiln:endpoints"][0]["trafficConfig"]["routes"][1]["trafficPercentage"] = 0
    path = write_stack(tmp_path, config)

    result = CliRunner().invoke(main, ["plan", str(path)])

    assert result.exit_code == 2
    assert f"{path}: endpoints[0].trafficConfig.routes: percentages sum to 90, must be 100" in result.stderr


def test_long_names_plan_and_names_aws_would_refuse_exit_2(tmp_path: Path, example_store,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A long endpoint name is shortened where pulumi-aws autonames from it; were it not (the
    limit raised here stands for such a regression), the instance role's autoname would pass
    IAM's 64 characters, and the program stops as the role is declared, exit 2."""
    config = stack_config("dev", example_store)
    config["kiln:endpoints"][0]["name"] = "customer-lifetime-value-scoring-endpoint"
    path = write_stack(tmp_path, config)

    planned = CliRunner().invoke(main, ["plan", str(path)])
    monkeypatch.setattr(stack_module, "LOGICAL_NAME_LIMIT", 200)
    refused = CliRunner().invoke(main, ["plan", str(path)])

    assert planned.exit_code == 0, planned.output
    assert refused.exit_code == 2, refused.output
    assert "(aws:iam/role:Role): IAM role name 'customer-lifetime-value-scoring-endpoint." in refused.stderr
    assert "AWS takes 1-64 (botocore iam CreateRole.RoleName)" in refused.stderr


def test_unresolvable_model_exits_2_naming_it(tmp_path: Path, example_store) -> None:
    config = stack_config("dev", example_store)
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = "models:/fraud-scorer/99"
    path = write_stack(tmp_path, config)

    result = CliRunner().invoke(main, ["plan", str(path)])

    assert result.exit_code == 2
    assert "models:/fraud-scorer/99" in result.stderr


def test_installed_kiln_command_plans_offline(example_store) -> None:
    kiln = Path(sys.executable).parent / "kiln"
    result = subprocess.run(
        [str(kiln), "plan", "dev", "--json", "--mlflow-tracking-uri", example_store.tracking_uri],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["servedModels"][0]["minInstances"] == 0


def test_committed_schema_matches_the_config_models() -> None:
    committed = json.loads((PROJECT_ROOT / "schema" / "stack.schema.json").read_text())

    assert committed == json_schema(), "run `kiln schema -o schema/stack.schema.json`"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_schema_accepts_the_shipped_stacks(stack: str) -> None:
    jsonschema.validate(yaml.safe_load(resolve_stack_path(stack).read_text()), json_schema())


def test_schema_rejects_an_unknown_compute_type() -> None:
    document = yaml.safe_load(resolve_stack_path("prod").read_text())
    document["config"]["kiln:endpoints"][0]["servedModels"][0]["computeType"] = "GPU_HUGE"

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json_schema())


def test_plan_applies_a_policy_pack_config_and_exits_1_on_a_mandatory_violation(tmp_path: Path, example_store) -> None:
    """As `kiln check` and `pulumi preview --policy-pack` do: 1 means findings everywhere."""
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"hourly-cost-budget": {"maxHourlyCostUsd": 5}}))

    result = CliRunner().invoke(
        main,
        ["plan", "prod", "--json", "--policy-pack-config", str(config), "--mlflow-tracking-uri", example_store.tracking_uri],
    )

    assert result.exit_code == 1, result.output
    violations = json.loads(result.stdout)["policyViolations"]
    assert [v["policy"] for v in violations if v["level"] == "mandatory"] == ["hourly-cost-budget"]


def test_examples_fill_an_empty_store_once(tmp_path: Path) -> None:
    store = tmp_path / "store"

    first = CliRunner().invoke(main, ["examples", "--store", str(store)])
    again = CliRunner().invoke(main, ["examples", "--store", str(store)])

    assert first.exit_code == 0, first.output
    assert "registered models:/fraud-scorer/1, models:/fraud-scorer/2" in " ".join(first.stderr.split())
    assert (store / "mlflow.db").is_file()
    assert again.exit_code == 0 and "example models already in" in again.stderr

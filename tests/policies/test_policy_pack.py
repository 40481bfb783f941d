"""The pack process itself, driven over the analyzer gRPC interface as the engine drives it."""

from __future__ import annotations

import copy
import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from infra.plan.config import PROJECT_ROOT
from infra.preview.policy_pack import PolicyConfig, PolicyPackError, check_policies, parse_policy_pack_config
from infra.preview.program import ProgramRun, run_program
from policies.pack import stack_environment
from policies.rules.resource_types import LAUNCH_TEMPLATE, SERVED_MODEL, TARGET_GROUP
from policies.rules.rule import LevelsEnvironment, levels_environment
from tests.conftest import stack_config

# The shipped prod stack serves the example ticket router, a plain pyfunc, on GPU_MEDIUM: the
# pack advises against it (no-gpu-framework-on-gpu, a packaging rule; tests/policies/
# test_packaging_in_the_pack.py). The tests here read the other rules on a run without it.
KNOWN_ADVICE = ("no-gpu-framework-on-gpu",)


def without_known_advice(run: ProgramRun) -> ProgramRun:
    registrations = []
    for registration in run.registrations:
        findings = registration.inputs.get("packagingFindings") if registration.type == SERVED_MODEL else None
        if findings:
            registration = copy.deepcopy(registration)
            registration.inputs["packagingFindings"] = [f for f in findings if f["id"] not in KNOWN_ADVICE]
        registrations.append(registration)
    return dataclasses.replace(run, registrations=registrations)


@pytest.fixture(scope="module")
def prod(example_store: Any) -> tuple[ProgramRun, dict[str, Any]]:
    config = stack_config("prod", example_store)
    return without_known_advice(run_program("prod", config, preview=False)), config


def test_the_shipped_prod_stack_is_advised_of_its_cpu_model_on_a_gpu(example_store: Any) -> None:
    config = stack_config("prod", example_store)
    result = check_policies(run_program("prod", config, preview=False), config)
    assert [(v.policy, v.level) for v in result.violations] == [("no-gpu-framework-on-gpu", "advisory")]
    assert "ticket-router/champion" in result.violations[0].message and result.passed


def bent(run: ProgramRun, type_: str, name_part: str, **inputs: Any) -> ProgramRun:
    """The run with one registration's inputs (and, for components, outputs) changed."""
    registrations = []
    for registration in run.registrations:
        if registration.type == type_ and name_part in registration.name:
            registration = copy.deepcopy(registration)
            registration.inputs.update(inputs)
        registrations.append(registration)
    return dataclasses.replace(run, registrations=registrations)


def test_the_pack_passes_the_prod_program(prod: tuple[ProgramRun, dict[str, Any]]) -> None:
    run, config = prod
    result = check_policies(run, config)
    assert result.pack == "kiln" and result.pack_version == "0.1.0"
    assert result.violations == []


def test_the_pack_reports_a_violating_registration_with_its_urn(prod: tuple[ProgramRun, dict[str, Any]]) -> None:
    run, config = prod
    template = next(r for r in run.registrations if r.type == LAUNCH_TEMPLATE)
    metadata = {**template.inputs["metadataOptions"], "httpTokens": "optional"}
    result = check_policies(bent(run, LAUNCH_TEMPLATE, template.name, metadataOptions=metadata), config)
    [violation] = result.violations
    assert (violation.policy, violation.level, violation.urn) == ("imdsv2-required", "mandatory", template.urn)
    assert "httpTokens is 'optional'" in violation.message
    assert violation.fix.startswith("Set metadata_options")
    assert not result.passed


def test_levels_follow_the_stack_environment(prod: tuple[ProgramRun, dict[str, Any]]) -> None:
    run, config = prod
    scaled = dataclasses.replace(bent(run, SERVED_MODEL, "fraud-scorer.challenger", scaleToZeroEnabled=True), stack="feature-x")
    in_prod = check_policies(scaled, config)
    in_dev = check_policies(scaled, {**config, "kiln:environment": "dev"})
    assert [(v.policy, v.level) for v in in_prod.violations] == [("no-scale-to-zero", "mandatory")]
    assert [(v.policy, v.level) for v in in_dev.violations] == [("no-scale-to-zero", "advisory")]


def test_a_stack_named_prod_keeps_prods_levels_whatever_environment_it_declares(
    prod: tuple[ProgramRun, dict[str, Any]],
) -> None:
    run, config = prod
    scaled = bent(run, SERVED_MODEL, "fraud-scorer.challenger", scaleToZeroEnabled=True)
    assert run.stack == "prod"

    declared_dev = check_policies(scaled, {**config, "kiln:environment": "dev"})

    assert [(v.policy, v.level) for v in declared_dev.violations] == [("no-scale-to-zero", "mandatory")]
    assert not declared_dev.passed


def test_policy_config_sets_levels_and_properties(prod: tuple[ProgramRun, dict[str, Any]]) -> None:
    run, config = prod
    given = parse_policy_pack_config(
        json.dumps({"all": "advisory", "hourly-cost-budget": {"enforcementLevel": "mandatory", "maxHourlyCostUsd": 10}}),
        "policy.json",
    )
    result = check_policies(bent(run, SERVED_MODEL, "challenger", scaleToZeroEnabled=True), config, given)
    levels = {v.policy: v.level for v in result.violations}
    assert levels == {"no-scale-to-zero": "advisory", "hourly-cost-budget": "mandatory"}


def test_a_disabled_policy_does_not_run(prod: tuple[ProgramRun, dict[str, Any]]) -> None:
    run, config = prod
    result = check_policies(bent(run, SERVED_MODEL, "challenger", scaleToZeroEnabled=True), config, {"no-scale-to-zero": PolicyConfig("disabled")})
    assert result.violations == []


def test_invalid_policy_config_is_an_error(prod: tuple[ProgramRun, dict[str, Any]]) -> None:
    run, config = prod
    with pytest.raises(PolicyPackError, match="hourly-cost-budget.maxHourlyCostUsd"):
        check_policies(run, config, {"hourly-cost-budget": PolicyConfig(properties={"maxHourlyCostUsd": "lots"})})
    with pytest.raises(PolicyPackError, match="unknown policies"):
        check_policies(run, config, {"hourly-cost-budgets": PolicyConfig("mandatory")})


def test_policy_config_file_rejects_bad_levels() -> None:
    with pytest.raises(PolicyPackError, match="'blocking' is not an enforcement level"):
        parse_policy_pack_config('{"no-scale-to-zero": "blocking"}', "policy.json")
    with pytest.raises(PolicyPackError, match="not valid JSON"):
        parse_policy_pack_config("{", "policy.json")


def test_preview_reports_what_it_cannot_know_as_advisory(example_store: Any) -> None:
    config = stack_config("prod", example_store)
    result = check_policies(without_known_advice(run_program("prod", config, preview=True)), config)
    assert result.passed
    [violation] = result.violations
    assert violation.policy == "s3-tls-only" and violation.level == "advisory"
    assert "can't run policy" in violation.message and "during preview" in violation.message


CRASHING_PACK = """
import sys
sys.path.insert(0, {root!r})
from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy

def validate(args, report_violation):
    raise RuntimeError("rule bug: " + args.resource_type)

PolicyPack(name="crash", policies=[ResourceValidationPolicy(
    name="crashes", description="raises", validate=validate, enforcement_level=EnforcementLevel.MANDATORY)])
"""


def crashing_pack(directory: Path) -> Path:
    (directory / "PulumiPolicy.yaml").write_text("runtime: python\nversion: 0.0.1\n")
    (directory / "__main__.py").write_text(textwrap.dedent(CRASHING_PACK.format(root=str(PROJECT_ROOT))))
    return directory


def test_a_policy_that_raises_is_an_error_not_a_pass(prod: tuple[ProgramRun, dict[str, Any]], tmp_path: Path) -> None:
    run, config = prod
    with pytest.raises(PolicyPackError, match="rule bug"):
        check_policies(run, config, pack_dir=crashing_pack(tmp_path))


def test_a_pack_that_cannot_start_is_an_error(prod: tuple[ProgramRun, dict[str, Any]], tmp_path: Path) -> None:
    run, config = prod
    (tmp_path / "__main__.py").write_text("raise SystemExit('no pack here')\n")
    with pytest.raises(PolicyPackError, match="did not start"):
        check_policies(run, config, pack_dir=tmp_path)


def test_the_environment_is_the_stricter_of_stack_config_and_stack_name_else_prod() -> None:
    def declaring(environment: str, stack: str) -> str:
        return stack_environment({"PULUMI_CONFIG": json.dumps({"kiln:environment": environment}), "PULUMI_STACK": stack})

    assert declaring("staging", "dev") == "staging"
    assert declaring("dev", "prod") == "prod"
    assert declaring("dev", "prod-eu") == "prod"
    assert declaring("dev", "staging") == "staging"
    assert declaring("dev", "feature-x") == "dev"
    assert declaring("dev", "development") == "dev"
    assert stack_environment({"PULUMI_STACK": "dev"}) == "dev"
    assert stack_environment({"PULUMI_STACK": "feature-x"}) == "prod"


def test_served_model_registrations_carry_their_registered_outputs_for_stack_policies(
    prod: tuple[ProgramRun, dict[str, Any]],
) -> None:
    run, _ = prod
    served = {r.name: r for r in run.registrations if r.type == SERVED_MODEL}
    # The stack file: fraud-scorer answers within 597 s, ticket-router within 120 s.
    assert {name: r.outputs["requestTimeoutSeconds"] for name, r in served.items()} == {
        "fraud-scorer.champion": 597,
        "fraud-scorer.challenger": 597,
        "ticket-router.champion": 120,
    }
    # What ServedModel.register_outputs names (not its inputs, which carry the manifest and more).
    champion = served["fraud-scorer.champion"]
    assert set(champion.outputs) == {
        "instanceType", "minInstances", "maxInstances", "requestTimeoutSeconds", "authRequired", "targetGroupArn", "image",
    }
    [target_group] = [r for r in run.registrations if r.type == TARGET_GROUP and r.parent == champion.urn]
    assert champion.outputs["targetGroupArn"] == target_group.outputs["arn"]


@pytest.mark.parametrize(("declared", "stack", "levels"), [
    ("dev", "prod", LevelsEnvironment("prod", "prod's: stack 'prod' names prod and kiln:environment says dev; "
                                              "the stricter applies")),
    ("prod", "dev", LevelsEnvironment("prod", "prod's: stack 'dev' names dev and kiln:environment says prod; "
                                              "the stricter applies")),
    ("prod", "prod", LevelsEnvironment("prod", "prod's (kiln:environment)")),
    ("staging", "staging-eu", LevelsEnvironment("staging", "staging's (kiln:environment)")),
    (None, "staging", LevelsEnvironment("staging", "staging's (the stack name 'staging'; no kiln:environment)")),
    (None, "feature-x", LevelsEnvironment("prod", "prod's (neither kiln:environment nor the stack name 'feature-x' "
                                                  "names an environment)")),
])
def test_whose_levels_apply_and_why(declared: str | None, stack: str, levels: LevelsEnvironment) -> None:
    assert levels_environment(declared, stack) == levels

"""`kiln plan`: the stack's capacity plan plus the resources the real program registers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.plan.catalog import PRICES_AS_OF
from infra.plan.config import read_stack
from infra.plan.stack import StackPlan
from infra.preview.policy_pack import POLICIES_DIR, PolicyCheck, PolicyConfig, check_policies
from infra.preview.program import UNKNOWN, ProgramRun, run_program


@dataclass(frozen=True)
class PlanReport:
    run: ProgramRun
    # What the policy pack in policies/ says about the run (None when not asked for).
    policy: PolicyCheck | None = None

    @property
    def plan(self) -> StackPlan:
        """The plan the program built and declared its resources from."""
        return self.run.plan


def build_plan_report(
    stack: str,
    tracking_uri: str | None = None,
    preview: bool = False,
    policies: bool = True,
    policy_config: Mapping[str, PolicyConfig] | None = None,
    pack_dir: Path = POLICIES_DIR,
) -> PlanReport:
    """Read and validate the stack file once, run the program under mocks (it plans the stack)
    and the policy pack on what it declared."""
    stack_file = read_stack(stack, tracking_uri)
    run = run_program(stack_file.name, stack_file.raw, preview=preview)
    policy = check_policies(run, stack_file.raw, policy_config, pack_dir) if policies else None
    return PlanReport(run=run, policy=policy)


def served_model_rows(plan: StackPlan) -> list[dict[str, Any]]:
    """The plan's served models as the report shows them: their properties and the arithmetic."""
    return [{**served.as_properties(), "arithmetic": served.capacity.arithmetic()} for served in plan.served_models]


# What a value AWS computes at `pulumi up` reads as in `--preview` JSON, instead of the
# engine's internal unknown marker (a UUID) that `pulumi preview` itself never shows.
COMPUTED = "<computed>"


def _readable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _readable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_readable(item) for item in value]
    return COMPUTED if value == UNKNOWN else value


def plan_as_json(report: PlanReport) -> dict[str, Any]:
    return _readable(_plan_as_json(report))


def _plan_as_json(report: PlanReport) -> dict[str, Any]:
    parents = {r.urn: r.name for r in report.run.registrations}
    return {
        "stack": report.plan.stack,
        "environment": report.plan.config.environment,
        "region": report.plan.config.region,
        "preview": report.run.preview,
        "resources": [
            {
                "type": r.type,
                "name": r.name,
                "urn": r.urn,
                "parent": parents.get(r.parent),
                "inputs": r.inputs,
            }
            for r in report.run.registrations
        ],
        "servedModels": served_model_rows(report.plan),
        "totals": {
            "hourlyCostMin": report.plan.hourly_cost_min,
            "hourlyCostMax": report.plan.hourly_cost_max,
            "pricesAsOf": PRICES_AS_OF,
        },
        **({"vpcEndpoints": {
            "interfaceServices": list(report.plan.vpc_endpoints.interface_services),
            "s3": "gateway" if report.plan.vpc_endpoints.s3_gateway else "interface",
            "hourlyCost": report.plan.vpc_endpoints.hourly_cost,
            "arithmetic": report.plan.vpc_endpoints.arithmetic(),
        }} if report.plan.vpc_endpoints else {}),
        "outputs": report.run.outputs,
        # Served models sized from measurements (`sizing: measured`): both plans and the difference.
        "sizingComparisons": [
            {"endpoint": s.endpoint, "servedModelName": s.name, "arithmetic": s.sizing_comparison()}
            for s in report.plan.served_models if s.nominal_capacity is not None
        ],
        **({"policyViolations": [v.as_json() for v in report.policy.violations]} if report.policy else {}),
    }

"""`kiln plan`: the stack's capacity plan plus the resources the real program registers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.plan.catalog import PRICES_AS_OF
from infra.plan.config import NAMESPACE, load_stack, read_stack_file, resolve_stack_path
from infra.plan.stack import StackPlan, plan_stack
from infra.preview.policies import POLICIES_DIR, PolicyCheck, PolicyConfig, check_policies
from infra.preview.program import ProgramRun, run_program


@dataclass(frozen=True)
class PlanReport:
    plan: StackPlan
    run: ProgramRun
    # What the policy pack in policies/ says about the run (None when not asked for).
    policy: PolicyCheck | None = None


def build_plan_report(
    stack: str,
    tracking_uri: str | None = None,
    preview: bool = False,
    policies: bool = True,
    policy_config: Mapping[str, PolicyConfig] | None = None,
    pack_dir: Path = POLICIES_DIR,
) -> PlanReport:
    """Validate the stack file, plan capacity, run the program under mocks and the policy pack on it."""
    name, config = load_stack(stack)
    raw = read_stack_file(resolve_stack_path(stack))
    if tracking_uri:
        raw = {**raw, f"{NAMESPACE}:mlflowTrackingUri": tracking_uri}
    run = run_program(name, raw, preview=preview)
    policy = check_policies(run, raw, policy_config, pack_dir) if policies else None
    return PlanReport(plan=plan_stack(name, config), run=run, policy=policy)


def served_model_rows(plan: StackPlan) -> list[dict[str, Any]]:
    rows = []
    for served in plan.served_models:
        capacity = served.capacity
        rows.append(
            {
                "endpoint": served.endpoint,
                "name": served.name,
                "modelUri": served.model_uri,
                "computeType": served.profile.compute_type.value,
                "instanceType": capacity.sizing.instance.name,
                "unitsPerInstance": capacity.sizing.units_per_instance,
                "minInstances": capacity.sizing.min_instances,
                "maxInstances": capacity.sizing.max_instances,
                "minConcurrency": capacity.min_concurrency,
                "maxConcurrency": capacity.max_concurrency,
                "trafficPercentage": served.traffic_percentage,
                "scaleToZeroEnabled": served.scale_to_zero,
                "targetRequestsPerMinute": capacity.target_requests_per_minute,
                "hourlyCostMin": capacity.sizing.hourly_cost_min,
                "hourlyCostMax": capacity.sizing.hourly_cost_max,
                "arithmetic": capacity.arithmetic(),
            }
        )
    return rows


def plan_as_json(report: PlanReport) -> dict[str, Any]:
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
        "outputs": report.run.outputs,
        **({"policyViolations": [v.as_json() for v in report.policy.violations]} if report.policy else {}),
    }

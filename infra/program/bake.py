"""The bake step of the program: every served model resolved, inspected and checked.

Runs before any resource is declared, so a model that cannot serve stops `pulumi up`,
`pulumi preview` and `kiln plan` with the served model, the check id and its fix, and
nothing is provisioned (docs/decisions.md, decision 3).
"""

from __future__ import annotations

from collections.abc import Iterable

import pulumi

from infra.plan.capacity import WorkerMeasurement
from infra.plan.packaging import PACK_RULE_LEVELS, pack_enforces_packaging
from infra.plan.stack import ServedModelPlan, StackPlan
from models.artifacts import ModelResolutionError
from models.bake import BakedModel
from models.bake import bake_and_check as bake_model_and_check
from models.checks import Finding, PackagingError, ServingTarget, worker_memory_gib
from models.estimates import CODEBUILD_DISK_GB, MIN_CODEBUILD_COMPUTE
from models.measurements import Measurements, measurements_path, recorded_measurements


class StackPackagingError(PackagingError, pulumi.RunError):
    """A PackagingError that the Pulumi language host reports as its message alone
    (RunError: "a clean exit rather than ... the complete stack trace"); `kiln plan` still
    catches it as a PackagingError."""


def serving_target(served: ServedModelPlan, plan: StackPlan) -> ServingTarget:
    return ServingTarget(
        served_model=served.resource_name,
        environment=plan.config.environment,
        profile=served.profile,
        build_timeout_minutes=plan.config.build.timeout_minutes,
        gpu_placement=served.requested_gpu_placement,
    )


def bake_and_check(served: ServedModelPlan, plan: StackPlan) -> tuple[BakedModel, list[Finding]]:
    return bake_model_and_check(served.model_uri, plan.config.mlflow_tracking_uri, serving_target(served, plan))


def served_model_key(plan: StackPlan, served: ServedModelPlan) -> str:
    """Where a served model is written: `stacks/Pulumi.dev.yaml: endpoints[0].servedModels[1]`."""
    position = next(i for i, endpoint in enumerate(plan.config.endpoints) if endpoint.name == served.endpoint)
    index = next(i for i, entry in enumerate(plan.config.endpoints[position].served_models) if entry.name == served.name)
    return f"stacks/Pulumi.{plan.stack}.yaml: endpoints[{position}].servedModels[{index}]"


def bake_served_models(plan: StackPlan) -> dict[str, tuple[BakedModel, list[Finding]]]:
    """Baked models and their findings by served model resource name; raises PackagingError
    on an error finding, before anything is declared. When the policy pack enforces packaging
    (`kiln check`, PACK_ENFORCES_PACKAGING), a finding that is a pack rule (same id) is left to
    the pack, which reports it at its level beside the other violations."""
    left_to_pack = set(PACK_RULE_LEVELS) if pack_enforces_packaging() else set()
    checked = {}
    for served in plan.served_models:
        try:
            model, findings = bake_and_check(served, plan)
        except ModelResolutionError as error:
            raise ModelResolutionError(f"{served_model_key(plan, served)}.modelUri: {error}") from None
        own = [f for f in findings if f.id not in left_to_pack]
        if any(f.level == "error" for f in own):
            raise StackPackagingError(served.resource_name, own)
        checked[served.resource_name] = (model, findings)
    return checked


def model_memory(checked: dict[str, tuple[BakedModel, list[Finding]]]) -> dict[str, float]:
    """What one worker of each served model needs (GiB), by resource name: the plan places a
    multi-GPU served model by it when the stack leaves gpuPlacement unset."""
    return {name: worker_memory_gib(model.estimate.model_gib) for name, (model, _) in checked.items()}


def worker_measurement(measured: Measurements, where: str) -> WorkerMeasurement:
    """The planner's reading of a reload check: peak memory, and p90 latency on the input
    example (p90, not p50, so the scaling target errs towards scaling out early)."""
    return WorkerMeasurement(
        peak_gib=measured.worker_gib,
        latency_ms=measured.example.p90_ms if measured.example else None,
        source=f"reload check on {measured.cpus} CPUs ({where})",
    )


def worker_measurements(checked: dict[str, tuple[BakedModel, list[Finding]]]) -> dict[str, WorkerMeasurement]:
    """What a reload check here recorded for each baked model in its environment, by resource
    name; a model never measured is absent (the plan then says to run `kiln bake`)."""
    found = {}
    for name, (model, _) in checked.items():
        measured = recorded_measurements(model.artifact_digest, model.image_tag)
        if measured is not None:
            found[name] = worker_measurement(measured, measurements_path(model.artifact_digest, model.image_tag).name)
    return found


def builder_compute_type(baked: Iterable[BakedModel]) -> str:
    """One project builds every environment of the stack: size it for the largest."""
    order = list(CODEBUILD_DISK_GB)
    needed = [b.estimate.builder_compute_type or order[-1] for b in baked]
    return max(needed, key=order.index, default=MIN_CODEBUILD_COMPUTE)

"""The review of one stack, optionally against a base (another stack or a git ref)."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.plan.alarms import ALARMS_COMPONENT_TYPE, dashboard_name
from infra.plan.catalog import HOURS_PER_MONTH, PRICES_AS_OF
from infra.plan.config import ConfigError, resolve_stack_path, stack_name
from infra.plan.vpc_endpoints import VpcEndpointsPlan
from infra.preview.policy_pack import PolicyCheck
from infra.preview.report import PlanReport, build_plan_report, served_model_rows
from infra.review.diff import ROLLOUT, Change, ResourceChange, diff_resources, diff_settings


@dataclass(frozen=True)
class ServedModelReview:
    row: dict[str, Any]
    resolved_uri: str
    image_tag: str
    image_status: str
    request_timeout: int
    manifest: dict[str, Any]
    findings: list[dict[str, str]]
    # `sizing: measured` with measurements at hand: the nominal plan, the measured plan and
    # the monthly difference, each with its arithmetic (StackPlan's sizing_comparison); else empty.
    sizing_comparison: list[str]
    # What its warm pool's stopped instances cost, with the arithmetic; None without a pool.
    warm_pool_arithmetic: str | None

    @property
    def monthly_cost_min(self) -> float:
        return round(self.row["hourlyCostMin"] * HOURS_PER_MONTH, 2)

    @property
    def monthly_cost_max(self) -> float:
        return round(self.row["hourlyCostMax"] * HOURS_PER_MONTH, 2)


@dataclass(frozen=True)
class Cost:
    hourly_min: float
    hourly_max: float

    @property
    def monthly_min(self) -> float:
        return round(self.hourly_min * HOURS_PER_MONTH, 2)

    @property
    def monthly_max(self) -> float:
        return round(self.hourly_max * HOURS_PER_MONTH, 2)


@dataclass(frozen=True)
class Comparison:
    base_label: str
    base_cost: Cost
    settings: list[Change]
    resources: list[ResourceChange]

    @property
    def restarts(self) -> list[ResourceChange]:
        """Changes that replace resources or roll instances: the ones a reviewer must see."""
        return [c for c in self.resources if c.kind == "replaced" or ROLLOUT in c.note]


@dataclass(frozen=True)
class AlarmsReview:
    """What watches one served model, as the program declares it: its alarms with their
    thresholds, the EventBridge rule for failed refreshes, and where they notify."""

    served_model: str
    alarms: list[dict[str, Any]]
    refresh_rule: str
    alert_topic_arn: str | None


@dataclass(frozen=True)
class Review:
    stack: str
    environment: str
    region: str
    served_models: list[ServedModelReview]
    cost: Cost
    prices_as_of: str = PRICES_AS_OF
    comparison: Comparison | None = None
    policy: PolicyCheck | None = None
    alarms: list[AlarmsReview] = field(default_factory=list)
    dashboard: str | None = None
    # The stack's VPC endpoints, a cost line of their own (included in `cost`).
    vpc_endpoints: VpcEndpointsPlan | None = None

    @property
    def cost_delta(self) -> Cost | None:
        if self.comparison is None:
            return None
        base = self.comparison.base_cost
        return Cost(round(self.cost.hourly_min - base.hourly_min, 4), round(self.cost.hourly_max - base.hourly_max, 4))


class ReviewError(Exception):
    """The base to compare against cannot be read."""


def _served_model_props(report: PlanReport) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r.inputs["endpoint"], r.inputs["servedModelName"]): r.inputs
        for r in report.run.of_type("kiln:serving:ServedModel")
    }


def _image_status(tag: str, owner: str, owners: dict[str, list[str]], base_tags: set[str]) -> str:
    if tag in base_tags:
        return "cached: the base already runs this environment image"
    others = [name for name in owners[tag] if name != owner]
    if others:
        return f"built once, shared with {', '.join(others)}"
    return "new environment: built at `pulumi up` unless ECR already holds this tag"


def review_served_models(report: PlanReport, base: PlanReport | None) -> list[ServedModelReview]:
    """`base` only counts for images when it is this same stack: each stack has its own registry."""
    props = _served_model_props(report)
    same_stack = base is not None and base.plan.stack == report.plan.stack
    base_tags = {p["imageTag"] for p in _served_model_props(base).values()} if same_stack else set()
    owners: dict[str, list[str]] = {}
    for (endpoint, name), p in props.items():
        owners.setdefault(p["imageTag"], []).append(f"{endpoint}/{name}")
    planned = {(s.endpoint, s.name): s for s in report.plan.served_models}
    reviews = []
    for row in served_model_rows(report.plan):
        key = (row["endpoint"], row["servedModelName"])
        p = props[key]
        reviews.append(
            ServedModelReview(
                row=row,
                resolved_uri=p["resolvedModelUri"],
                image_tag=p["imageTag"],
                image_status=_image_status(p["imageTag"], f"{row['endpoint']}/{row['servedModelName']}", owners, base_tags),
                request_timeout=p["requestTimeoutSeconds"],
                findings=p["packagingFindings"],
                manifest=p["manifest"],
                sizing_comparison=planned[key].sizing_comparison(),
                warm_pool_arithmetic=planned[key].warm_pool_arithmetic(),
            )
        )
    return reviews


def review_alarms(report: PlanReport) -> list[AlarmsReview]:
    """The alarms components of the run, in plan order."""
    return [
        AlarmsReview(
            served_model=f"{inputs['endpoint']}/{inputs['servedModelName']}",
            alarms=inputs["alarms"],
            refresh_rule=inputs["refreshRule"],
            alert_topic_arn=inputs.get("alertTopicArn"),
        )
        for inputs in (r.inputs for r in report.run.of_type(ALARMS_COMPONENT_TYPE))
    ]


def base_stack_file(against: str, stack_path: Path, workdir: Path) -> tuple[str, Path]:
    """`against` names a stack (`dev`), a stack file, or a git ref of this stack's file."""
    candidate = resolve_stack_path(against)
    if candidate.is_file():
        return stack_name(candidate), candidate
    shown = subprocess.run(
        ["git", "show", f"{against}:./{stack_path.name}"],
        cwd=stack_path.resolve().parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if shown.returncode != 0:
        raise ReviewError(
            f"--against {against}: neither a stack nor a git ref holding {stack_path} ({shown.stderr.strip()})"
        )
    copy = workdir / stack_path.name
    copy.write_text(shown.stdout)
    return f"{stack_name(stack_path)}@{against}", copy


def build_review(stack: str, against: str | None = None, tracking_uri: str | None = None) -> Review:
    head = build_plan_report(stack, tracking_uri=tracking_uri)
    base = comparison = None
    if against:
        with tempfile.TemporaryDirectory() as workdir:
            label, path = base_stack_file(against, resolve_stack_path(stack), Path(workdir))
            try:
                base = build_plan_report(str(path), tracking_uri=tracking_uri, policies=False)
            except ConfigError as error:
                raise ReviewError(f"--against {against}: the base stack is invalid\n{error}") from None
        comparison = Comparison(
            base_label=label,
            base_cost=Cost(base.plan.hourly_cost_min, base.plan.hourly_cost_max),
            settings=diff_settings(base.plan.config, head.plan.config),
            resources=diff_resources(base.run, head.run),
        )
    return Review(
        stack=head.plan.stack,
        environment=head.plan.config.environment,
        region=head.plan.config.region,
        served_models=review_served_models(head, base),
        cost=Cost(head.plan.hourly_cost_min, head.plan.hourly_cost_max),
        comparison=comparison,
        policy=head.policy,
        alarms=review_alarms(head),
        dashboard=dashboard_name(head.plan.stack),
        vpc_endpoints=head.plan.vpc_endpoints,
    )

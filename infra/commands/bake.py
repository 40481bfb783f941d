"""`kiln bake STACK | MODEL_URI`: resolve → manifest → packaging checks → reload check → build context.

Everything `pulumi up` would find wrong with a model, without AWS: the findings, whether
the model reloads in a clean environment built from its own requirements, and the rendered
build context to read or `docker build` by hand. With a stack, for each of its served
models; with a model URI alone, for the compute type and environment given on the command
line, so whoever logs a model can ask "will this serve?" before any stack names it. Both
forms bake through the same function (`bake_target`), so they report the same findings.
Exit codes follow the CLI: 0 ok, 1 error findings, 2 invalid input.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import click
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.commands.output import console, errors, user_errors
from infra.commands.registry import EXAMPLE_STORE_URI, require_reachable_registry
from infra.plan.catalog import PROFILES, ComputeType
from infra.plan.config import StackConfig, read_stack
from infra.plan.stack import ServedModelPlan, StackPlan, plan_stack
from infra.program.bake import serving_target
from models.artifacts import ModelResolutionError
from models.bake import bake_and_check
from models.build_context import BuildContextError, render_build_context
from models.checks import Finding, ServingTarget
from models.estimates import ImageEstimate
from models.measurements import record_installed_size, record_measurements
from models.reload import ReloadResult, reload_check
from models.resolved import installed_bytes, read_resolved

# models:/, runs:/, s3://, file:/, dbfs:/ … : anything MLflow resolves by scheme. A stack is
# a name (`dev`) or a path to a YAML file, neither of which has a scheme.
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
ENVIRONMENTS = get_args(StackConfig.model_fields["environment"].annotation)
# A model checked alone is checked as production would check it unless told otherwise:
# a model promoted through dev and staging must pass prod's levels in the end.
DEFAULT_ENVIRONMENT = "prod"
# Databricks' default compute for a custom model.
DEFAULT_COMPUTE_TYPE = ComputeType.CPU_MEDIUM.value


def is_model_uri(argument: str) -> bool:
    """A URI with a scheme, or a local folder holding an MLmodel file (a saved model)."""
    return bool(URI_SCHEME.match(argument)) or (Path(argument).expanduser() / "MLmodel").is_file()


@dataclass(frozen=True)
class BakeTarget:
    """One model to bake and where it will serve: a stack's served model, or a model URI alone."""

    label: str
    model_uri: str
    tracking_uri: str
    serving: ServingTarget


def stack_target(served: ServedModelPlan, plan: StackPlan) -> BakeTarget:
    return BakeTarget(f"{served.endpoint}/{served.name}", served.model_uri, plan.config.mlflow_tracking_uri,
                      serving_target(served, plan))


def uri_target(model_uri: str, tracking_uri: str, compute_type: str, environment: str) -> BakeTarget:
    """A model URI checked alone, as if a stack in `environment` served it on `compute_type`
    with the default build timeout and the GPU placement its memory calls for."""
    serving = ServingTarget(served_model=model_uri, environment=environment, profile=PROFILES[ComputeType(compute_type)])
    return BakeTarget(model_uri, model_uri, tracking_uri, serving)


@dataclass
class BakeReport:
    served_model: str
    model_uri: str
    resolved_uri: str = ""
    image_tag: str = ""
    artifact_digest: str = ""
    context_dir: str = ""
    # The cache file the reload check's measurements went to (what `sizing: measured` plans from).
    measurements_file: str = ""
    estimate: dict[str, Any] = field(default_factory=dict)
    reload: ReloadResult | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(f.level == "error" for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "servedModel": self.served_model,
            "modelUri": self.model_uri,
            "resolvedUri": self.resolved_uri,
            "imageTag": self.image_tag,
            "artifactDigest": self.artifact_digest,
            "buildContext": self.context_dir,
            "measurementsFile": self.measurements_file or None,
            "estimate": self.estimate,
            "reload": self.reload.as_dict() if self.reload else None,
            "findings": [f.as_dict() for f in self.findings],
        }


def _selected(served_models: list[ServedModelPlan], wanted: tuple[str, ...]) -> list[ServedModelPlan]:
    if not wanted:
        return served_models
    chosen = [s for s in served_models if s.name in wanted or s.resource_name in wanted or f"{s.endpoint}/{s.name}" in wanted]
    known = {s.name for s in chosen} | {s.resource_name for s in chosen} | {f"{s.endpoint}/{s.name}" for s in chosen}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        names = ", ".join(f"{s.endpoint}/{s.name}" for s in served_models)
        raise click.UsageError(f"unknown served model {', '.join(unknown)}; this stack serves {names}")
    return chosen


def _estimate(e: ImageEstimate, root_volume_gib: int) -> dict[str, Any]:
    return {
        "imageGiB": round(e.image_gib, 2),
        "dependenciesGiB": round(e.dependencies_gib, 2),
        "dependenciesMeasured": e.measured,
        "instanceNeedsGiB": round(e.instance_needs_gib, 1),
        "rootVolumeGiB": root_volume_gib,
        "builderNeedsGiB": round(e.builder_needs_gib, 1),
        "builderComputeType": e.builder_compute_type,
        "buildMinutes": round(e.build_minutes, 1),
    }


@contextmanager
def _step(progress: Progress | None, description: str) -> Iterator[None]:
    """One step of a bake, shown with its elapsed time while it runs and after: a reload check
    builds a virtualenv for a minute or more, and silence that long reads as a hang."""
    if progress is None:
        yield
        return
    task = progress.add_task(description, total=1)
    yield
    progress.update(task, completed=1)


def bake_target(target: BakeTarget, skip_reload: bool, output: Path | None,
                progress: Progress | None = None) -> BakeReport:
    report = BakeReport(served_model=target.label, model_uri=target.model_uri)
    with _step(progress, f"{report.served_model}: resolve the model, packaging checks"):
        baked, findings = bake_and_check(target.model_uri, target.tracking_uri, target.serving)
    report.resolved_uri = baked.resolved_uri
    report.image_tag = baked.image_tag
    report.artifact_digest = baked.artifact_digest
    profile = target.serving.profile
    if not skip_reload:
        with _step(progress, f"{report.served_model}: reload check (a fresh virtualenv from its requirements)"):
            report.reload = reload_check(baked.model_dir, baked.manifest, gpu=profile.has_gpu)
        if report.reload.measurements is not None:
            report.measurements_file = str(record_measurements(baked.artifact_digest, baked.image_tag,
                                                               baked.resolved_uri, report.reload.measurements))
        if report.reload.venv is not None:
            # The checks again, on what pip resolved (a CPU-only torch, the CUDA its wheels carry)
            # and with the image's Python layer measured instead of estimated from the table;
            # recorded, so that the plan and the pack size this environment's image from it too.
            installed = installed_bytes(report.reload.venv)
            record_installed_size(baked.image_tag, installed)
            baked = baked.calibrated(installed, gpu=profile.has_gpu)
            findings = baked.findings(target.serving, read_resolved(report.reload.venv))
        finding = report.reload.finding()
        if finding:
            findings = [finding, *findings]
    report.estimate = _estimate(baked.estimate, profile.root_volume_gib)
    if baked.estimate.measured:
        # Both until a real build reports the image's size: what the checks used, and the table's.
        report.estimate["fromPackageTable"] = _estimate(baked.table_estimate(profile.has_gpu), profile.root_volume_gib)
    try:
        with _step(progress, f"{report.served_model}: build context"):
            report.context_dir = str(render_build_context(baked.environment, output).directory)
    except BuildContextError as error:
        findings = [Finding("build-context", "error", str(error)), *findings]
    report.findings = sorted(findings, key=lambda f: f.level != "error")
    return report


def _print(report: BakeReport) -> None:
    style = "red" if report.has_errors else "green"
    console.print(f"[bold {style}]{report.served_model}[/] {escape(report.model_uri)} → {escape(report.resolved_uri)}", highlight=False)
    console.print(f"  image tag {report.image_tag}   model digest {report.artifact_digest[:16]}…", highlight=False)
    e = report.estimate
    if e:
        # Which Python layer the figures rest on: the reload check's measured install, or the table.
        layer = (f"Python layer {e['dependenciesGiB']} GiB measured, table {e['fromPackageTable']['dependenciesGiB']} GiB"
                 if e["dependenciesMeasured"] else f"Python layer ~{e['dependenciesGiB']} GiB from the package table")
        console.print(
            f"  image ~{e['imageGiB']} GiB ({layer}); instance needs ~{e['instanceNeedsGiB']} GiB of "
            f"{e['rootVolumeGiB']} GiB root; builder {e['builderComputeType']} needs ~{e['builderNeedsGiB']} GiB; "
            f"build ~{e['buildMinutes']} min",
            highlight=False,
        )
    if report.reload:
        r = report.reload
        # A model logged without an input example loads but has nothing to predict with.
        predict = "no input example to predict" if r.predict_seconds is None else f"predict {r.predict_seconds} s"
        timing = f" (load {r.load_seconds} s, {predict})" if r.ok else ""
        if r.measurements:
            m = r.measurements
            timing += f"; worker peak {m.peak_rss_mib:.0f} MiB" + "".join(
                f"; {one.rows} rows p50 {one.p50_ms} ms p99 {one.p99_ms} ms" for one in (m.example, m.batch) if one)
        console.print(f"  reload check: {'ok' if r.ok else 'FAILED at ' + r.stage}{timing} on {r.target_device}"
                      + (f", emulated: {escape(r.emulated)}" if r.emulated else ""), highlight=False)
    if report.context_dir:
        console.print(f"  build context {report.context_dir}", highlight=False)
    if report.findings:
        table = Table(show_header=True, header_style="bold")
        for column in ("level", "check", "what to fix"):
            table.add_column(column)
        for f in report.findings:
            table.add_row(f"[{'red' if f.level == 'error' else 'yellow'}]{f.level}[/]", f.id, escape(f.message))
        console.print(table)
    else:
        console.print("  no findings")


def _default_tracking_uri() -> str:
    """MLflow's own choice (MLFLOW_TRACKING_URI, else its local default), as `mlflow` scripts see it."""
    import mlflow

    return mlflow.get_tracking_uri()


@click.command("bake", help="Check a stack's models, or one model URI, and render image build contexts (offline).")
@click.argument("target", metavar="STACK|MODEL_URI")
@click.option("--served-model", "served_models", multiple=True,
              help="With a stack: only this served model (name or endpoint/name); repeatable.")
@click.option("--compute-type", type=click.Choice([c.value for c in ComputeType]),
              help=f"With a model URI: the compute type to check it for (default {DEFAULT_COMPUTE_TYPE}).")
@click.option("--environment", type=click.Choice(ENVIRONMENTS),
              help=f"With a model URI: the stack environment whose levels apply (default {DEFAULT_ENVIRONMENT}).")
@click.option("--skip-reload", is_flag=True, help="Skip the reload check (no virtualenv, no PyPI).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Folder for build contexts (default: the Kiln cache).")
@click.option("--mlflow-tracking-uri",
              help="Resolve models against this MLflow store (default: the stack's kiln:mlflowTrackingUri; for a model "
              f"URI, MLflow's own), e.g. {EXAMPLE_STORE_URI} for the example models of `kiln examples`.")
def bake_command(
    target: str, served_models: tuple[str, ...], compute_type: str | None, environment: str | None, skip_reload: bool,
    as_json: bool, output: Path | None, mlflow_tracking_uri: str | None,
) -> None:
    if is_model_uri(target):
        if served_models:
            raise click.UsageError(f"--served-model selects from a stack; {target} is a model URI")
        compute_type = compute_type or DEFAULT_COMPUTE_TYPE
        environment = environment or DEFAULT_ENVIRONMENT
        targets = [uri_target(target, mlflow_tracking_uri or _default_tracking_uri(), compute_type, environment)]
        header: dict[str, Any] = {"modelUri": target, "computeType": compute_type, "environment": environment}
    else:
        if compute_type or environment:
            raise click.UsageError(f"--compute-type and --environment apply to a model URI; the stack {target} "
                                   "sets them per served model")
        with user_errors():
            require_reachable_registry(target, mlflow_tracking_uri)
            stack_file = read_stack(target, mlflow_tracking_uri)
        name, config = stack_file.name, stack_file.config
        plan = plan_stack(name, config)
        targets = [stack_target(served, plan) for served in _selected(plan.served_models, served_models)]
        header = {"stack": name}
    reports = []
    # Progress goes to stderr; with --json a script reads stdout and wants nothing on the terminal.
    progress = None if as_json else Progress(SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"),
                                             TimeElapsedColumn(), console=errors)
    with progress or nullcontext():
        for one in targets:
            with user_errors({ModelResolutionError: f"cannot resolve {one.label}: "}):
                reports.append(bake_target(one, skip_reload, output, progress))
    if as_json:
        click.echo(json.dumps({**header, "servedModels": [r.as_dict() for r in reports]}, indent=2))
    else:
        for report in reports:
            _print(report)
    sys.exit(1 if any(r.has_errors for r in reports) else 0)

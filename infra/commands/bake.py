"""`kiln bake STACK`: resolve → manifest → packaging checks → reload check → build context.

Everything `pulumi up` would find wrong with a stack's models, without AWS: the findings
per served model, whether each model reloads in a clean environment built from its own
requirements, and the rendered build context to read or `docker build` by hand.
Exit codes follow the CLI: 0 ok, 1 error findings, 2 invalid input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.commands.output import console, errors, user_errors
from infra.commands.registry import require_reachable_registry, tracking_uri_option
from infra.plan.config import read_stack
from infra.plan.stack import ServedModelPlan, plan_stack
from infra.program.bake import bake_and_check, serving_target
from models.artifacts import ModelResolutionError
from models.build_context import BuildContextError, render_build_context
from models.checks import Finding
from models.reload import ReloadResult, reload_check
from models.resolved import read_resolved


@dataclass
class BakeReport:
    served_model: str
    model_uri: str
    resolved_uri: str = ""
    image_tag: str = ""
    artifact_digest: str = ""
    context_dir: str = ""
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


def bake_one(served: ServedModelPlan, plan: Any, skip_reload: bool, output: Path | None,
             progress: Progress | None = None) -> BakeReport:
    report = BakeReport(served_model=f"{served.endpoint}/{served.name}", model_uri=served.model_uri)
    with _step(progress, f"{report.served_model}: resolve the model, packaging checks"):
        baked, findings = bake_and_check(served, plan)
    report.resolved_uri = baked.resolved_uri
    report.image_tag = baked.image_tag
    report.artifact_digest = baked.artifact_digest
    e = baked.estimate
    report.estimate = {
        "imageGiB": round(e.image_gib, 2),
        "instanceNeedsGiB": round(e.instance_needs_gib, 1),
        "rootVolumeGiB": served.profile.root_volume_gib,
        "builderNeedsGiB": round(e.builder_needs_gib, 1),
        "builderComputeType": e.builder_compute_type,
        "buildMinutes": round(e.build_minutes, 1),
    }
    if not skip_reload:
        with _step(progress, f"{report.served_model}: reload check (a fresh virtualenv from its requirements)"):
            report.reload = reload_check(baked.model_dir, baked.manifest, gpu=served.profile.has_gpu)
        if report.reload.venv is not None:
            # The checks again, on what pip resolved: a CPU-only torch or the CUDA its wheels carry.
            findings = baked.findings(serving_target(served, plan), read_resolved(report.reload.venv))
        finding = report.reload.finding()
        if finding:
            findings = [finding, *findings]
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
        console.print(
            f"  image ~{e['imageGiB']} GiB; instance needs ~{e['instanceNeedsGiB']} GiB of {e['rootVolumeGiB']} GiB root; "
            f"builder {e['builderComputeType']} needs ~{e['builderNeedsGiB']} GiB; build ~{e['buildMinutes']} min",
            highlight=False,
        )
    if report.reload:
        r = report.reload
        # A model logged without an input example loads but has nothing to predict with.
        predict = "no input example to predict" if r.predict_seconds is None else f"predict {r.predict_seconds} s"
        timing = f" (load {r.load_seconds} s, {predict})" if r.ok else ""
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


@click.command("bake", help="Check a stack's models and render their image build contexts (offline).")
@click.argument("stack")
@click.option("--served-model", "served_models", multiple=True, help="Only this served model (name or endpoint/name); repeatable.")
@click.option("--skip-reload", is_flag=True, help="Skip the reload check (no virtualenv, no PyPI).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Folder for build contexts (default: the Kiln cache).")
@tracking_uri_option
def bake_command(
    stack: str, served_models: tuple[str, ...], skip_reload: bool, as_json: bool, output: Path | None,
    mlflow_tracking_uri: str | None,
) -> None:
    with user_errors():
        require_reachable_registry(stack, mlflow_tracking_uri)
        stack_file = read_stack(stack, mlflow_tracking_uri)
    name, config = stack_file.name, stack_file.config
    plan = plan_stack(name, config)
    reports = []
    # Progress goes to stderr; with --json a script reads stdout and wants nothing on the terminal.
    progress = None if as_json else Progress(SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"), TimeElapsedColumn(),
                                             console=errors)
    with progress or nullcontext():
        for served in _selected(plan.served_models, served_models):
            with user_errors({ModelResolutionError: f"cannot resolve served model {served.endpoint}/{served.name}: "}):
                reports.append(bake_one(served, plan, skip_reload, output, progress))
    if as_json:
        click.echo(json.dumps({"stack": name, "servedModels": [r.as_dict() for r in reports]}, indent=2))
    else:
        for report in reports:
            _print(report)
    sys.exit(1 if any(r.has_errors for r in reports) else 0)

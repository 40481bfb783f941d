"""`kiln rehearse STACK`: the serving path run here as AWS would run it (infra/rehearsal/).

Exit codes: 0 every step passed, 1 a step failed (the report says which, with AWS's error),
2 invalid input (config, model) or no stand-in account (moto missing).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from infra.commands.output import console, errors, user_errors
from infra.commands.registry import require_reachable_registry, tracking_uri_option

# What passing the rehearsal does not prove (docs/rehearsal.md says why).
ONLY_AWS_SHOWS = ("EC2 boot and user data under cloud-init, the image build and Docker pull, GPUs, IAM conditions "
                  "moto does not evaluate, and real ALB timing")


@click.command("rehearse", help="Deploy STACK into a stand-in AWS account on this machine (moto, IAM enforced) and run "
               "its serving path as AWS would: upload, fetch with the instance role, load, health checks and requests "
               "through the listener rules, scale to zero and back with the activator.")
@click.argument("stack")
@tracking_uri_option
@click.option("--no-registry", is_flag=True, help="Resolve models from the store directly, not through an `mlflow server` "
              "mirror with its artifacts in the stand-in S3.")
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the runtimes' and the tracking server's logs in this folder (default: removed afterwards).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def rehearse_command(stack: str, mlflow_tracking_uri: str | None, no_registry: bool, logs: Path | None,
                     as_json: bool) -> None:
    from infra.rehearsal.local_aws import LocalAwsError
    from infra.rehearsal.registry import RegistryError
    from infra.rehearsal.rehearsal import rehearse

    with user_errors():
        require_reachable_registry(stack, mlflow_tracking_uri)
    with tempfile.TemporaryDirectory(prefix="kiln-rehearsal-") as scratch:
        work_dir = logs or Path(scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        # stdout is the report's: MLflow's client prints run links while models are mirrored.
        with user_errors({LocalAwsError: "no stand-in account: ", RegistryError: ""}), errors.status("rehearsing…") as status, \
                contextlib.redirect_stdout(sys.stderr):
            report = rehearse(stack, work_dir.resolve(), mlflow_tracking_uri, registry=not no_registry,
                              progress=status.update)
    if as_json:
        click.echo(json.dumps({"stack": report.stack, "ok": report.ok, "steps": [asdict(s) for s in report.steps],
                               "notes": report.notes, "onlyAwsShows": ONLY_AWS_SHOWS}, indent=2))
    else:
        table = Table("step", "", "what it showed", title=f"kiln rehearse {report.stack}", show_lines=True)
        for step in report.steps:
            table.add_row(escape(step.name), "[green]ok[/]" if step.ok else "[bold red]FAILED[/]", escape(step.detail))
        console.print(table)
        for note in report.notes:
            console.print(f"note: {escape(note)}", highlight=False)
        console.print(f"Only AWS shows: {ONLY_AWS_SHOWS}.", highlight=False)
    sys.exit(0 if report.ok else 1)

"""The `kiln` command line: everything Kiln does, offline.

Exit codes, the same for every command: 0 ok; 1 findings (a mandatory policy violation in
`plan` and `check`, an error finding in `bake`, a failed step in `rehearse`, a runtime that
failed to become ready in `runtime`, a served model that does not answer in `status`); 2 invalid
input (config, model URI, usage, an unreachable registry, a busy port); 3 an internal error (a
bug, never read as findings); 130 interrupted (Ctrl-C), as a shell reports it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from infra.commands.amis import amis
from infra.commands.bake import bake_command
from infra.commands.cache import cache_command
from infra.commands.check import check, policy_pack_config_option
from infra.commands.import_databricks import import_databricks
from infra.commands.output import console, crash, errors, user_errors
from infra.commands.plan_console import print_plan
from infra.commands.registry import require_reachable_registry, tracking_uri_option
from infra.commands.rehearse import rehearse_command
from infra.commands.review import review
from infra.commands.serving import runtime_command, serve_command
from infra.commands.simulate import simulate_command
from infra.commands.status import status_command
from infra.plan.config import json_schema
from infra.preview.policy_pack import load_policy_pack_config
from infra.preview.report import build_plan_report, plan_as_json

# 128 + SIGINT, what a shell reports for a command Ctrl-C stopped.
EXIT_INTERRUPTED = 130


class KilnGroup(click.Group):
    """The command group, turning an unexpected exception into exit 3 and Ctrl-C into 130,
    instead of Python's and click's 1, which CI would read as findings; with --json, a usage
    error is also JSON on stdout."""

    def invoke(self, ctx: click.Context) -> object:
        as_json = "--json" in ctx.args  # the command's own arguments, before click consumes them
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as error:
            # A usage error (unknown option, served model, endpoint) of a command given --json:
            # the script reading its stdout gets it as JSON too, as with every other error
            # (README "Exit codes"); click still prints the usage on stderr and exits 2.
            if as_json:
                click.echo(json.dumps({"error": error.format_message()}))
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as error:  # noqa: BLE001 (the one place every command's crash ends)
            crash(error)


@click.group(cls=KilnGroup, help="Kiln: custom model serving on your own AWS account, declared as Pulumi stacks.",
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kiln", prog_name="kiln", message="%(prog)s %(version)s")
def main() -> None:
    pass


@main.command(help="Show what `pulumi up --stack STACK` would create and what it costs (offline).")
@click.argument("stack")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--preview", is_flag=True, help="Run as `pulumi preview` does: outputs of new resources stay unknown.")
@tracking_uri_option
@policy_pack_config_option
def plan(stack: str, as_json: bool, preview: bool, mlflow_tracking_uri: str | None, policy_pack_config: Path | None) -> None:
    with user_errors():
        require_reachable_registry(stack, mlflow_tracking_uri)
        report = build_plan_report(
            stack, tracking_uri=mlflow_tracking_uri, preview=preview, policy_config=load_policy_pack_config(policy_pack_config)
        )
    if as_json:
        click.echo(json.dumps(plan_as_json(report), indent=2))
    else:
        print_plan(console, report)
    # The plan runs the policy pack as `pulumi preview --policy-pack` would: a mandatory
    # violation stops that preview, so it is a finding here as in `kiln check`.
    sys.exit(1 if report.policy is not None and not report.policy.passed else 0)


main.add_command(check)
main.add_command(amis)


@main.command(help="Write the JSON Schema of stack files (for editor validation).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write; stdout if omitted.")
def schema(output: Path | None) -> None:
    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        errors.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@main.command(help="Fill the local MLflow store the dev stack uses with the example models (if empty).")
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), help="Store folder (default: .kiln/mlflow).")
def examples(store: Path | None) -> None:
    from models.examples.seed import DEFAULT_STORE, LocalStore, seed

    local = LocalStore((store or DEFAULT_STORE).resolve())
    with errors.status("logging example models to MLflow…"):
        created = seed(local)
    if created:
        errors.print(f"registered {', '.join(created)} in {local.tracking_uri}")
    else:
        errors.print(f"example models already in {local.tracking_uri}")


main.add_command(bake_command)
main.add_command(cache_command)
main.add_command(review)
main.add_command(rehearse_command)
main.add_command(import_databricks)
main.add_command(runtime_command)
main.add_command(serve_command)
main.add_command(simulate_command)
main.add_command(status_command)

if __name__ == "__main__":
    main()

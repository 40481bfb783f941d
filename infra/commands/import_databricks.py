"""`kiln import-databricks ENDPOINT_JSON`: a Databricks endpoint as a Kiln stack entry."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml
from rich.markup import escape

from infra.commands.output import errors, fail, user_errors
from infra.plan.config import NAMESPACE, ConfigError
from infra.plan.databricks_import import import_endpoint, import_notes


@click.command(
    "import-databricks",
    help="Print a Databricks serving endpoint (JSON from GET /api/2.0/serving-endpoints/NAME) as a "
    "kiln:endpoints entry to paste into a stack file.",
)
@click.argument("endpoint_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_databricks(endpoint_json: Path) -> None:
    try:
        document = json.loads(endpoint_json.read_text())
    except json.JSONDecodeError as error:
        fail(f"{endpoint_json}: not valid JSON ({error})")
    with user_errors({ConfigError: "not importable as a Kiln endpoint\n"}):
        endpoint = import_endpoint(document, str(endpoint_json))
    click.echo(yaml.safe_dump({f"{NAMESPACE}:endpoints": [endpoint]}, sort_keys=False), nl=False)
    for note in import_notes(document, endpoint):
        errors.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)

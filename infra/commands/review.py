"""`kiln review STACK [--against STACK_OR_GIT_REF] [--format md|html] [-o FILE]`."""

from __future__ import annotations

from pathlib import Path

import click

from infra.commands.output import user_errors
from infra.commands.registry import require_reachable_registry, tracking_uri_option
from infra.review.render import render_html, render_markdown
from infra.review.report import ReviewError, build_review


@click.command(help="Write the review report of a stack: what runs, what it costs, what changed, what policies say.")
@click.argument("stack")
@click.option("--against", help="Compare with another stack (dev), a stack file, or this stack file at a git ref (main).")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write; stdout if omitted.")
@tracking_uri_option
def review(stack: str, against: str | None, fmt: str, output: Path | None, mlflow_tracking_uri: str | None) -> None:
    with user_errors({ReviewError: ""}):
        require_reachable_registry(stack, mlflow_tracking_uri)
        result = build_review(stack, against=against, tracking_uri=mlflow_tracking_uri)
    text = render_html(result) if fmt == "html" else render_markdown(result)
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)

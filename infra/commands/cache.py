"""`kiln cache show | prune`: what the Kiln cache holds, and trimming what was not used lately.

Reload-check virtualenvs are ~0.9 GB each, and one is left per distinct set of requirements;
everything in the cache is rebuilt on demand, so pruning costs time, never correctness.
"""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from infra.commands.output import console
from models import artifacts
from models.cache import CacheEntry, cache_entries, prune

PRUNABLE = ("venv", "model", "context", "measurements")


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f}"


def _as_dict(entry: CacheEntry, now: float) -> dict[str, object]:
    return {"kind": entry.kind, "path": str(entry.path), "sizeBytes": entry.size_bytes,
            "ageDays": round(entry.age_days(now), 1)}


@click.group("cache", help="Show or prune the Kiln cache (models, reload virtualenvs, build contexts).")
def cache_command() -> None:
    pass


@cache_command.command("show", help="List what the cache holds, by kind, size and age.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def show(as_json: bool) -> None:
    now = time.time()
    entries = cache_entries()
    if as_json:
        click.echo(json.dumps({"cacheDir": str(artifacts.CACHE_DIR), "totalBytes": sum(e.size_bytes for e in entries),
                               "entries": [_as_dict(e, now) for e in entries]}, indent=2))
        return
    table = Table(title=f"Kiln cache {artifacts.CACHE_DIR}", title_justify="left")
    for column in ("kind", "entry", "GiB", "unused days"):
        table.add_column(column, justify="right" if column in ("GiB", "unused days") else "left")
    for entry in entries:
        table.add_row(entry.kind, entry.path.name, _gib(entry.size_bytes), f"{entry.age_days(now):.1f}")
    table.add_section()
    table.add_row("total", "", _gib(sum(e.size_bytes for e in entries)), "")
    console.print(table)


@cache_command.command("prune", help="Remove cache entries not used for --older-than days (all kinds unless --kind).")
@click.option("--older-than", "older_than_days", type=click.FloatRange(min=0), default=14, show_default=True,
              help="Days since last use.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(PRUNABLE), help="Only this kind; repeatable.")
@click.option("--dry-run", is_flag=True, help="Say what would go, remove nothing.")
def prune_command(older_than_days: float, kinds: tuple[str, ...], dry_run: bool) -> None:
    removed = prune(cache_entries(), kinds or PRUNABLE, older_than_days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry in removed:
        console.print(f"{verb} {entry.kind} {entry.path} ({_gib(entry.size_bytes)} GiB)", highlight=False)
    console.print(f"{verb} {len(removed)} entries, {_gib(sum(e.size_bytes for e in removed))} GiB", highlight=False)

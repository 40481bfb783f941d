"""`kiln simulate`: replay a request-rate trace through a stack's scaling settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from infra.commands.output import console, fail, user_errors
from infra.plan.config import load_stack
from infra.plan.stack import EndpointPlan, ServedModelPlan, plan_stack
from infra.simulator.model import Result, simulate
from infra.simulator.report import as_json as results_as_json
from infra.simulator.report import summarize
from infra.simulator.scaling_policies import policies_for
from infra.simulator.timeline import TimelineError, draw
from infra.simulator.trace import BUILTIN_SHAPES, Trace, TraceError, resolve

# Built-in shapes peak at this share of the endpoint's largest capacity, so scaling is exercised
# without simply saturating the maximum.
DEFAULT_PEAK_FRACTION = 0.6


def default_peak_qps(endpoint: EndpointPlan) -> float:
    """Requests per second the endpoint's served models could answer at their maximum, × 0.6."""
    full = sum(
        s.capacity.max_concurrency / (s.capacity.latency_ms / 1000) * s.traffic_percentage / 100
        for s in endpoint.served_models
    )
    return round(full * DEFAULT_PEAK_FRACTION, 3)


@click.command(help=(
    "Replay a request-rate trace through STACK's scaling (and compare with ALB-only scaling and "
    f"Databricks' stated behaviour). --trace is a CSV of 'second,rps' or a shape: {', '.join(BUILTIN_SHAPES)}."
))
@click.argument("stack")
@click.option("--trace", "trace_spec", required=True, help="CSV file (second,rps) or a built-in shape name.")
@click.option("--endpoint", help="Replay only this endpoint (default: every endpoint of the stack).")
@click.option("--peak-qps", type=float, help="Peak of a built-in shape (default: 60 % of the endpoint's maximum).")
@click.option("--duration", type=click.IntRange(min=60), help="Length of a built-in shape in seconds.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the timelines to this one PNG file, a column of panels per served model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def simulate_command(
    stack: str, trace_spec: str, endpoint: str | None, peak_qps: float | None, duration: int | None,
    png: Path | None, as_json: bool,
) -> None:
    with user_errors():
        name, config = load_stack(stack)
    plan = plan_stack(name, config)
    endpoints = {e.name: e for e in plan.endpoints}
    if endpoint and endpoint not in endpoints:
        fail(f"no endpoint {endpoint!r} in stack {name}; endpoints: {', '.join(endpoints)}")
    chosen = [endpoints[endpoint]] if endpoint else plan.endpoints

    report: dict[str, Any] = {"stack": name, "endpoints": [e.name for e in chosen], "servedModels": []}
    panels: list[tuple[str, list[Result]]] = []
    for replayed in chosen:
        with user_errors({TraceError: ""}):
            trace = resolve(trace_spec, peak_qps or default_peak_qps(replayed), duration)
        report.update(trace=trace.name, durationSeconds=trace.duration_seconds)
        for served in replayed.served_models:
            share = trace.scaled(served.traffic_percentage / 100)
            results = [simulate(policy, share) for policy in policies_for(served)]
            report["servedModels"].append(
                {"endpoint": replayed.name, **results_as_json(served.name, served.traffic_percentage, results)})
            panels.append((f"{served.resource_name} ({served.traffic_percentage} %)", results))
            if not as_json:
                _print(console, served, share, results)
    if png is not None:
        with user_errors({TimelineError: ""}):
            report["png"] = str(draw(panels, png, f"{name}: {report['trace']}"))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif png is not None:
        console.print(f"timeline: {png}")


def _print(console: Console, served: ServedModelPlan, trace: Trace, results: list) -> None:
    # Within 100 columns: the policy's name whole, the headers of the numbers on two lines.
    table = Table(title=(
        f"{served.resource_name} ({served.traffic_percentage} % of traffic, {trace.name}, "
        f"{trace.duration_seconds} s, {trace.total_requests:,.0f} requests)"
    ), box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    table.add_column("policy", min_width=max(len(result.policy.label) for result in results))
    for column in ("served\n%", "rejected", "time to\ncapacity s", "cold\nstart s", "max\nwait s", "peak\ninst.",
                   "inst.-\nhours", "cost $"):
        table.add_column(column, justify="right")
    for result in results:
        s = summarize(result)
        table.add_row(
            s.label, f"{s.served_percent:.2f}", f"{s.rejected + s.timed_out:,.0f}",
            ", ".join("never" if t is None else str(t) for t in s.time_to_capacity_seconds) or "-",
            ", ".join(str(c) for c in s.cold_start_seconds) or "-",
            f"{s.max_wait_seconds:g}", str(s.peak_instances), f"{s.instance_hours:.2f}", f"{s.cost_usd:.2f}",
        )
    console.print(table)

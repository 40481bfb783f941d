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
from infra.simulator.replay import Replay, replay
from infra.simulator.report import Summary, activator_calls_line, summarize
from infra.simulator.report import as_json as results_as_json
from infra.simulator.scaling_policies import assumptions
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
@click.option("--slower", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Replay the model this many times slower than planned (the scaling targets stay the plan's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def simulate_command(
    stack: str, trace_spec: str, endpoint: str | None, peak_qps: float | None, duration: int | None,
    png: Path | None, slower: float, as_json: bool,
) -> None:
    with user_errors():
        name, config = load_stack(stack)
    plan = plan_stack(name, config)
    endpoints = {e.name: e for e in plan.endpoints}
    if endpoint and endpoint not in endpoints:
        fail(f"no endpoint {endpoint!r} in stack {name}; endpoints: {', '.join(endpoints)}")
    chosen = [endpoints[endpoint]] if endpoint else plan.endpoints

    report: dict[str, Any] = {"stack": name, "endpoints": [e.name for e in chosen], "servedModels": []}
    panels: list[tuple[str, list[Replay]]] = []
    for replayed in chosen:
        with user_errors({TraceError: ""}):
            trace = resolve(trace_spec, peak_qps or default_peak_qps(replayed), duration)
        report.update(trace=trace.name, durationSeconds=trace.duration_seconds)
        for served in replayed.served_models:
            share = trace.scaled(served.traffic_percentage / 100)
            replays = replay(served, share, slower)
            report["servedModels"].append({"endpoint": replayed.name, **results_as_json(
                served.name, served.traffic_percentage, replays, assumptions(served))})
            panels.append((f"{served.resource_name} ({served.traffic_percentage} %)", replays))
            if not as_json:
                _print(console, served, share, replays)
    if png is not None:
        with user_errors({TimelineError: ""}):
            report["png"] = str(draw(panels, png, f"{name}: {report['trace']}"))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif png is not None:
        console.print(f"timeline: {png}")


def _print(console: Console, served: ServedModelPlan, trace: Trace, replays: list[Replay]) -> None:
    # Within 100 columns: the policy's name whole, the headers of the numbers on two lines (the
    # instance-hours behind the cost are in --json); narrower, the policy's name wraps and the
    # numbers stay whole, none cropped. Under
    # each policy, the same replay with every estimate at the fast and the slow end of its range.
    table = Table(title=(
        f"{served.resource_name} ({served.traffic_percentage} % of traffic, {trace.name}, "
        f"{trace.duration_seconds} s, {trace.total_requests:,.0f} requests)"
    ), box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    table.add_column("policy")
    for column in ("served\n%", "rejected", "time to\ncapacity s", "cold\nstart s", "max\nwait s", "peak\nbilled",
                   "cost $"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in replays:
        table.add_row(r.planned.policy.label, *_cells(summarize(r.planned)))
        low, high = _cells(summarize(r.low)), _cells(summarize(r.high))
        table.add_row("  range of estimates", *(_span(a, b) for a, b in zip(low, high, strict=True)), style="dim")
    console.print(table)
    policy = replays[0].planned.policy
    pool = (f"warm pool max({policy.warm_pool_min_size}, {policy.max_instances} - desired) stopped instances, "
            "as AWS keeps it without a max prepared capacity; " if policy.warm_pool_min_size is not None else "")
    console.print(
        f"launch to serving {policy.ready_seconds} s; warm-up {policy.instance_warmup_seconds} s after InService "
        f"(scale-in waits for it); in-flight = each 10 s period's peak; a scaled-in instance drains up to "
        f"{policy.deregistration_delay_seconds} s and is billed until it terminates; {pool}"
        f"admission budget {policy.admission_budget_seconds:g} s (429 beyond), batches of up to {policy.max_batch_size}.",
        highlight=False)
    for line in filter(None, (activator_calls_line(r.planned) for r in replays)):
        console.print(line, highlight=False)
    console.print("assumed: " + "; ".join(f"{name} {timing.describe('')}" for name, timing in assumptions(served)),
                  highlight=False, style="dim")


def _span(fast: str, slow: str) -> str:
    """One cell of the estimates' range, smaller number first (a slow launch can cost less)."""
    if fast == slow:
        return fast
    try:
        low, high = sorted((fast, slow), key=lambda cell: float(cell.replace(",", "").split(",")[0]))
    except ValueError:  # "never", "-" or several load steps
        low, high = fast, slow
    return f"{low}-{high}"


def _cells(s: Summary) -> list[str]:
    return [
        f"{s.served_percent:.2f}", f"{s.rejected + s.timed_out:,.0f}",
        ", ".join("never" if t is None else str(t) for t in s.time_to_capacity_seconds) or "-",
        ", ".join(str(c) for c in s.cold_start_seconds) or "-",
        f"{s.max_wait_seconds:g}", str(s.peak_instances), f"{s.cost_usd:.2f}",
    ]

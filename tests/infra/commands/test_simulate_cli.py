"""`kiln simulate`: exit codes, the --json shape and the PNG timeline."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from infra.plan.config import PROJECT_ROOT


def run(*args: str):
    return CliRunner().invoke(main, ["simulate", *args])


def test_simulate_prints_a_table_per_served_model() -> None:
    result = run("prod", "--trace", "spike", "--endpoint", "ticket-router")

    assert result.exit_code == 0, result.output
    assert "ticket-router.champion" in result.output
    assert "Databricks (docs + assumptions)" in result.output
    # What the replay rests on is printed with it: AWS's behaviour and which numbers are estimates.
    assert "warm-up 30 s after InService" in result.output
    assert "each 10 s period's peak" in result.output
    assert "billed until it terminates" in result.output
    assert "range of estimates" in result.output
    assert "boot 90 (estimate, 60-180)" in result.output
    # A GPU endpoint's Databricks cold start is a launch here (documented only as "slower"), with
    # its range down to the CPU's 10 s: not the CPU's 20 s.
    assert "Databricks cold start (GPU" in result.output and "cold start (CPU)" not in result.output


def test_simulate_json_compares_three_policies_with_totals_and_a_timeline() -> None:
    result = run("dev", "--trace", "idle-then-burst", "--peak-qps", "2", "--json")

    report = json.loads(result.output)
    [served] = report["servedModels"]
    policies = {p["policy"]: p for p in served["policies"]}
    stack = policies["stack"]

    assert result.exit_code == 0
    assert (report["stack"], report["endpoints"], report["trace"]) == ("dev", ["fraud-scorer"], "idle-then-burst")
    assert served["endpoint"] == "fraud-scorer"
    assert set(policies) == {"stack", "alb-only", "databricks"}
    assert {"served", "rejected", "timeToCapacitySeconds", "coldStartSeconds", "instanceHours", "costUsd"} <= set(stack)
    assert stack["coldStartSeconds"] == [1 + served["settings"]["readySeconds"]]
    assert policies["databricks"]["coldStartSeconds"] == [20]
    # Held requests poll through Kiln's activator against this account's API limits; Databricks
    # holds inside its own service, so its replay counts no calls here.
    assert stack["activatorCalls"]["getParameterPeakPerSecond"] > 0
    assert policies["databricks"]["activatorCalls"] is None
    assert "Databricks (docs + assumptions): the activator" not in run("dev", "--trace", "idle-then-burst",
                                                                        "--peak-qps", "2").output
    assert len(stack["timeline"]) == report["durationSeconds"] // 60
    # Every estimate at its fast and its slow end: the cold start moves with the launch estimates,
    # Databricks' from its documented 10 s to a launch here (its "can take minutes").
    ranged = stack["estimateRange"]
    assert ranged["low"]["coldStartSeconds"][0] < stack["coldStartSeconds"][0] < ranged["high"]["coldStartSeconds"][0]
    databricks = policies["databricks"]["estimateRange"]
    assert databricks["low"]["coldStartSeconds"] == [10]
    assert databricks["high"]["coldStartSeconds"][0] > 60
    boot = next(a for a in served["assumptions"] if a["name"] == "boot")
    assert (boot["source"], boot["low"], boot["high"]) == ("estimate", 30, 70)
    assert next(a for a in served["assumptions"] if a["name"] == "Databricks scale-down period")["source"].startswith(
        "https://docs.databricks.com/")


def test_a_model_slower_than_planned_is_replayed_with_the_plans_targets() -> None:
    planned = json.loads(run("prod", "--endpoint", "fraud-scorer", "--trace", "step", "--duration", "900",
                             "--json").output)
    slow = json.loads(run("prod", "--endpoint", "fraud-scorer", "--trace", "step", "--duration", "900",
                          "--slower", "3", "--json").output)

    def stack(report):
        return next(p for p in report["servedModels"][0]["policies"] if p["policy"] == "stack")

    assert slow["servedModels"][0]["settings"]["latencySeconds"] == pytest.approx(
        3 * planned["servedModels"][0]["settings"]["latencySeconds"])
    assert stack(slow)["instanceHours"] > stack(planned)["instanceHours"]


def test_simulate_reads_a_csv_trace(tmp_path: Path) -> None:
    trace = tmp_path / "load.csv"
    trace.write_text("second,rps\n0,5\n120,50\n600,0\n")

    result = run("staging", "--trace", str(trace), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["durationSeconds"] == 601


def test_simulate_replays_every_endpoint_into_the_one_png_asked_for(tmp_path: Path) -> None:
    png = tmp_path / "timeline.png"

    result = run("prod", "--trace", "step", "--duration", "600", "--png", str(png), "--json")

    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert report["endpoints"] == ["fraud-scorer", "ticket-router"]
    assert [(s["endpoint"], s["servedModel"]) for s in report["servedModels"]] == [
        ("fraud-scorer", "champion"), ("fraud-scorer", "challenger"), ("ticket-router", "champion")]
    assert report["png"] == str(png)
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_warm_pool_is_replayed_and_reported_as_aws_keeps_it(tmp_path: Path) -> None:
    stack = (PROJECT_ROOT / "stacks" / "Pulumi.staging.yaml").read_text().replace(
        "          maxProvisionedConcurrency: 4\n        - name: challenger",
        "          maxProvisionedConcurrency: 4\n          scaling: {warmPool: {minSize: 0}}\n        - name: challenger")
    path = tmp_path / "Pulumi.pooled.yaml"
    path.write_text(stack)

    text = run(str(path), "--trace", "step", "--endpoint", "fraud-scorer")
    report = json.loads(run(str(path), "--trace", "step", "--endpoint", "fraud-scorer", "--json").output)
    champion, challenger = report["servedModels"]
    stack_policy = next(p for p in champion["policies"] if p["policy"] == "stack")

    assert text.exit_code == 0, text.output
    assert "warm pool max(0, " in text.output
    # minSize 0 is only the floor: the pool holds max - desired stopped instances.
    first = stack_policy["timeline"][0]
    assert first["warmPool"] == champion["settings"]["maxInstances"] - first["desired"] > 0
    assert {row["warmPool"] for row in challenger["policies"][0]["timeline"]} == {0}


def test_unknown_endpoint_is_a_usage_error_naming_the_endpoints() -> None:
    result = run("prod", "--trace", "step", "--endpoint", "nope")

    assert result.exit_code == 2
    assert "fraud-scorer, ticket-router" in result.output


def test_bad_trace_is_a_usage_error(tmp_path: Path) -> None:
    result = run("dev", "--trace", str(tmp_path / "missing.csv"))

    assert result.exit_code == 2
    assert "trace file not found" in result.output


def _comparison_table(width: int) -> tuple[str, list]:
    from rich.console import Console

    from infra.commands.simulate import _print
    from infra.plan.config import load_stack
    from infra.plan.stack import plan_stack
    from infra.simulator.replay import replay
    from infra.simulator.trace import resolve

    served = plan_stack(*load_stack("prod")).endpoints[1].served_models[0]
    trace = resolve("spike", 20, None)
    replays = replay(served, trace)
    console = Console(width=width, file=io.StringIO(), record=True)

    _print(console, served, trace, replays)
    return console.export_text(), replays


def test_the_comparison_table_fits_100_columns_with_every_column_whole() -> None:
    text, replays = _comparison_table(100)

    assert "…" not in text and "cost $" in text
    assert all(r.planned.policy.label in text for r in replays)


def test_at_80_columns_the_policy_names_wrap_and_no_number_is_cropped() -> None:
    from infra.commands.simulate import _cells
    from infra.simulator.report import summarize

    text, replays = _comparison_table(80)

    assert "…" not in text and "cost $" in text and "peak" in text
    for r in replays:
        cells = _cells(summarize(r.planned))
        assert any(line.split()[-len(cells):] == cells for line in text.splitlines()), cells

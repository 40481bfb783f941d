"""Human output fits a 100-column terminal: no cell cut short, no URN wrapped over lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from infra.commands.plan_console import capacity_table
from infra.commands.policy_pack_console import print_policy_check, short_resource
from infra.preview.policy_pack import load_policy_pack_config
from infra.preview.report import build_plan_report, served_model_rows
from tests.infra.commands.test_policy_check_cli import bad_prod

WIDTH = 100


def rendered(printable: object) -> str:
    console = Console(width=WIDTH, file=io.StringIO(), record=True)
    console.print(printable)
    return console.export_text()


def test_the_capacity_table_fits_100_columns_without_cutting_a_cell(example_store) -> None:
    report = build_plan_report("prod", tracking_uri=example_store.tracking_uri, policies=False)

    text = rendered(capacity_table(report))

    assert "…" not in text
    for served in report.plan.served_models:
        assert f"{served.endpoint}/{served.name}" in text
        assert served.capacity.sizing.instance.name in text
    assert f"{report.plan.hourly_cost_min:.2f}-{report.plan.hourly_cost_max:.2f}" in text


def test_at_80_columns_the_capacity_table_folds_only_the_names(example_store) -> None:
    """A default terminal: every column stays (the cost was cropped off), every number whole."""
    report = build_plan_report("prod", tracking_uri=example_store.tracking_uri, policies=False)
    console = Console(width=80, file=io.StringIO(), record=True)

    console.print(capacity_table(report))
    text = console.export_text()

    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    header = next(line for line in text.splitlines() if "$/h" in line)
    assert header.split() == ["model", "compute", "instance", "instances", "concurrency", "traffic", "$/h"]
    for row in served_model_rows(report.plan):
        cells = [row["computeType"], row["instanceType"], f"{row['minInstances']}-{row['maxInstances']}",
                 f"{row['minConcurrency']}-{row['maxConcurrency']}", f"{row['trafficPercentage']}%",
                 f"{row['hourlyCostMin']:.2f}-{row['hourlyCostMax']:.2f}"]
        assert any(line.split()[-len(cells):] == cells for line in text.splitlines()), cells
    assert f"{report.plan.hourly_cost_min:.2f}-{report.plan.hourly_cost_max:.2f}" in text


def test_a_resource_is_named_by_its_type_and_name_not_its_urn() -> None:
    urn = ("urn:pulumi:prod::kiln::kiln:serving:Endpoint$kiln:serving:ServedModel"
           "$aws:ec2/launchTemplate:LaunchTemplate::fraud-scorer.champion-lt")

    assert short_resource(urn) == "LaunchTemplate fraud-scorer.champion-lt"


def test_policy_violations_fit_100_columns_with_short_resource_names(example_store, tmp_path: Path) -> None:
    budget = tmp_path / "policy-config.json"
    budget.write_text(json.dumps({"hourly-cost-budget": {"maxHourlyCostUsd": 5}}))
    report = build_plan_report(str(bad_prod(tmp_path)), tracking_uri=example_store.tracking_uri,
                               policy_config=load_policy_pack_config(budget))
    assert report.policy is not None
    console = Console(width=WIDTH, file=io.StringIO(), record=True)

    print_policy_check(console, report.policy, report.run)
    text = console.export_text()

    assert "urn:pulumi" not in text and "…" not in text
    assert "internet-facing-requires-https" in text and "Listener gateway-http" in text

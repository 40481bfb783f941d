"""Human output of `kiln plan`: the resource tree and the capacity table."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from infra.commands.policy_pack_console import print_policy_check
from infra.plan.catalog import PRICES_AS_OF
from infra.preview.program import UNKNOWN, Registration
from infra.preview.report import PlanReport, served_model_rows

# The inputs a reviewer looks at first, per resource type.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:lb/loadBalancer:LoadBalancer": ("name", "internal", "idleTimeout"),
    "aws:lb/listener:Listener": ("port", "protocol", "sslPolicy"),
    "aws:lb/listenerRule:ListenerRule": ("priority", "conditions", "actions"),
    "aws:lb/targetGroup:TargetGroup": ("name", "port", "healthCheck.path", "deregistrationDelay"),
    "aws:autoscaling/group:Group": ("minSize", "maxSize", "healthCheckType", "instanceRefresh.preferences.minHealthyPercentage"),
    "aws:autoscaling/policy:Policy": ("policyType", "targetTrackingConfiguration.targetValue"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("instanceType", "imageId", "metadataOptions.httpTokens"),
    "aws:ecr/repository:Repository": ("imageTagMutability",),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ("fromPort", "cidrIpv4", "referencedSecurityGroupId"),
}


def _lookup(inputs: dict[str, Any], dotted: str) -> Any:
    value: Any = inputs
    for part in dotted.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _describe(registration: Registration) -> str:
    parts = []
    for key in KEY_INPUTS.get(registration.type, ()):
        value = _lookup(registration.inputs, key)
        if value is None:
            continue
        if value == UNKNOWN:
            value = "(known after apply)"
        elif key == "actions":
            groups = _lookup(registration.inputs, "actions.forward.targetGroups") or []
            value = "weights " + "/".join(str(group.get("weight")) for group in groups) if groups else value
        elif key == "conditions":
            value = _lookup(registration.inputs, "conditions.pathPattern.values")
        parts.append(f"{key.split('.')[-1]}={value}")
    return ", ".join(parts)


def _tree(report: PlanReport) -> Tree:
    root = Tree(f"[bold]stack {report.plan.stack}[/] ({report.plan.config.environment}, {report.plan.config.region})")
    nodes: dict[str, Tree] = {}
    for registration in report.run.registrations:
        label = f"[cyan]{registration.type}[/] {registration.name}"
        details = _describe(registration)
        if details:
            label += f" [dim]{details}[/]"
        nodes[registration.urn] = nodes.get(registration.parent, root).add(label, highlight=False)
    return root


def capacity_table(report: PlanReport) -> Table:
    """One row per served model within 100 columns, no cell cut short: endpoint and served model
    share a column, each range is one cell, and workers per instance are left to the arithmetic
    lines below (concurrency = instances × workers). Narrower terminals (80 columns) fold the
    names only: every other cell stays whole, and no column, the cost least of all, is cropped."""
    table = Table(title="Capacity per served model", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    table.add_column("served model", overflow="fold")
    for column in ("compute", "instance"):
        table.add_column(column, no_wrap=True)
    for column in ("instances", "concurrency", "traffic", "$/h"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in served_model_rows(report.plan):
        table.add_row(
            f"{row['endpoint']}/{row['servedModelName']}",
            row["computeType"],
            row["instanceType"],
            f"{row['minInstances']}-{row['maxInstances']}",
            f"{row['minConcurrency']}-{row['maxConcurrency']}",
            f"{row['trafficPercentage']}%",
            f"{row['hourlyCostMin']:.2f}-{row['hourlyCostMax']:.2f}",
        )
    endpoints = report.plan.vpc_endpoints
    if endpoints:
        cost = f"{endpoints.hourly_cost:.2f}"
        table.add_row("vpc endpoints", "", f"{endpoints.interface_endpoint_count} interface", "", "", "", f"{cost}-{cost}")
    table.add_section()
    table.add_row("total", "", "", "", "", "", f"{report.plan.hourly_cost_min:.2f}-{report.plan.hourly_cost_max:.2f}")
    return table


def print_plan(console: Console, report: PlanReport) -> None:
    console.print(_tree(report))
    console.print(capacity_table(report))
    console.print(f"[dim]Prices: {PRICES_AS_OF}. {len(report.run.registrations)} resources.[/]")
    for served in report.plan.served_models:
        lines = [*(served.sizing_comparison() or ["; ".join(served.capacity.arithmetic())]),
                 *filter(None, [served.warm_pool_arithmetic()])]
        for line in lines:
            console.print(f"[dim]{served.endpoint}/{served.name}: {escape(line)}[/]")
    if report.plan.vpc_endpoints:
        console.print(f"[dim]vpc endpoints: {escape(report.plan.vpc_endpoints.arithmetic())}[/]")
    if report.policy is not None:
        print_policy_check(console, report.policy, report.run)

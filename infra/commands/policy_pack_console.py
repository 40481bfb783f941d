"""Human output of policy results, shared by `kiln check` and `kiln plan`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.preview.policy_pack import PolicyCheck
from infra.preview.program import ProgramRun
from policies.rules.rule import LevelsEnvironment, levels_environment

LEVEL_STYLES = {"mandatory": "bold red", "remediate": "bold red", "advisory": "yellow"}


def short_resource(urn: str) -> str:
    """`LaunchTemplate fraud-scorer.champion-lt` for its URN (`urn:pulumi:STACK::PROJECT::
    PARENT$…$aws:ec2/launchTemplate:LaunchTemplate::NAME`): the full URN wraps over several
    lines of a terminal, and the stack and parents are the same on every row."""
    _, _, qualified_type, name = urn.split("::", 3)
    return f"{qualified_type.split('$')[-1].split(':')[-1]} {name}"


def policy_levels(run: ProgramRun) -> LevelsEnvironment:
    """Whose levels the pack ran at for this run, as the pack itself decides them."""
    return levels_environment(run.plan.config.environment, run.stack)


def print_policy_check(console: Console, check: PolicyCheck, run: ProgramRun) -> None:
    stack = run.stack
    if check.violations:
        table = Table(title=f"Policy violations ({check.pack}@{check.pack_version})", title_justify="left", show_lines=True,
                      expand=True)
        # Ids whole, the level under its policy; the resource and the message share what is left.
        table.add_column("policy", no_wrap=True)
        table.add_column("resource", ratio=2, overflow="fold")
        table.add_column("message and how to fix", ratio=3, overflow="fold")
        for violation in sorted(check.violations, key=lambda v: (not v.blocking, v.policy, v.urn)):
            style = LEVEL_STYLES.get(violation.level, "")
            table.add_row(
                f"{violation.policy}\n" + (f"[{style}]{violation.level}[/]" if style else violation.level),
                short_resource(violation.urn),
                f"{escape(violation.message)}\n[dim]fix: {escape(violation.fix)}[/]",
            )
        console.print(table)
    verdict = "[bold green]passed[/]" if check.passed else "[bold red]failed[/]"
    console.print(
        f"policy pack {check.pack}@{check.pack_version} on stack {stack}: {verdict} "
        f"({len(check.mandatory)} mandatory, {len(check.advisory)} advisory, {check.resources} resources)"
    )
    console.print(f"levels: {escape(policy_levels(run).reason)}", highlight=False)

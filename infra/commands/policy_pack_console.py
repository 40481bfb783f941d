"""Human output of policy results, shared by `kiln check` and `kiln plan`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from infra.preview.policy_pack import PolicyCheck

LEVEL_STYLES = {"mandatory": "bold red", "remediate": "bold red", "advisory": "yellow"}


def print_policy_check(console: Console, check: PolicyCheck, stack: str) -> None:
    if check.violations:
        table = Table(title=f"Policy violations ({check.pack}@{check.pack_version})", title_justify="left", show_lines=True)
        for column in ("policy", "level", "resource", "message", "how to fix"):
            table.add_column(column, overflow="fold")
        for violation in sorted(check.violations, key=lambda v: (not v.blocking, v.policy, v.urn)):
            style = LEVEL_STYLES.get(violation.level, "")
            table.add_row(
                violation.policy,
                f"[{style}]{violation.level}[/]" if style else violation.level,
                violation.urn,
                violation.message,
                violation.fix,
            )
        console.print(table)
    verdict = "[bold green]passed[/]" if check.passed else "[bold red]failed[/]"
    console.print(
        f"policy pack {check.pack}@{check.pack_version} on stack {stack}: {verdict} "
        f"({len(check.mandatory)} mandatory, {len(check.advisory)} advisory, {check.resources} resources)"
    )

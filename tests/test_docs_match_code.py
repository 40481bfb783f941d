"""The docs a platform team reads name the rules and commands the code actually has."""

from __future__ import annotations

import re

from click.testing import CliRunner

from infra.commands.cli import main
from infra.plan.config import PROJECT_ROOT
from policies.rules import RULES


def test_policy_rule_table_matches_the_pack() -> None:
    table = (PROJECT_ROOT / "docs" / "policies.md").read_text()
    documented = {
        match.group(1): tuple(match.group(2, 3, 4))
        for match in re.finditer(r"^\| `([a-z0-9-]+)` \|[^\n]*?\| (\w+) \| (\w+) \| (\w+) \|[^|\n]*\|$", table, re.M)
    }

    actual = {rule.id: tuple(str(rule.levels[env]) for env in ("dev", "staging", "prod")) for rule in RULES}

    assert documented == actual


def test_readme_mentions_every_kiln_command() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()

    missing = [name for name in main.commands if f"kiln {name}" not in readme]

    assert missing == []
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0


def test_readme_policy_summary_matches_the_pack() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    documented = {}
    for ids, early, prod in re.findall(r"^\| (`[a-z0-9-]+`(?:, `[a-z0-9-]+`)*) \| (\w+) \| (\w+) \|$", readme, re.M):
        for rule_id in re.findall(r"`([a-z0-9-]+)`", ids):
            documented[rule_id] = (early, early, prod)

    actual = {rule.id: tuple(str(rule.levels[env]) for env in ("dev", "staging", "prod")) for rule in RULES}

    assert documented == actual


def test_readme_review_excerpt_is_what_kiln_review_prints_for_prod(example_store) -> None:
    from infra.review.render import render_markdown
    from infra.review.report import build_review

    report = render_markdown(build_review("prod", tracking_uri=example_store.tracking_uri))
    readme = (PROJECT_ROOT / "README.md").read_text()
    excerpt = readme[readme.index("### Cost"):readme.index("See [docs/review.md]")].strip()

    assert excerpt.split("### Policies")[0] in report
    assert excerpt[excerpt.index("### Policies"):] in report


def test_readme_plan_excerpt_is_the_capacity_table_kiln_plan_prints_for_prod(example_store) -> None:
    """The README's capacity table is what a 100-column terminal shows for the shipped prod stack."""
    import io

    from rich.console import Console

    from infra.commands.plan_console import capacity_table
    from infra.preview.report import build_plan_report

    console = Console(width=100, file=io.StringIO(), record=True)
    console.print(capacity_table(build_plan_report("prod", tracking_uri=example_store.tracking_uri, policies=False)))
    printed = [line.rstrip() for line in console.export_text().splitlines()]
    readme = (PROJECT_ROOT / "README.md").read_text()
    excerpt = readme[readme.index("An excerpt of `kiln plan prod`"):].split("```")[1].strip("\n").splitlines()
    table = excerpt[:excerpt.index(next(line for line in excerpt if line.startswith("total"))) + 1]

    assert table == printed[printed.index(table[0]):printed.index(table[0]) + len(table)]

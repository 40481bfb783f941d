"""`kiln review` on the shipped stacks and on changed copies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from infra.preview.report import build_plan_report
from infra.review.render import render_html, render_markdown
from infra.review.report import HOURS_PER_MONTH, build_review
from tests.conftest import stack_config, write_stack
from tests.review_support import change_stack


@pytest.fixture(scope="module")
def prod_review(example_store):
    return build_review("prod", tracking_uri=example_store.tracking_uri)


def test_review_lists_every_served_model_with_its_plan(prod_review, example_store) -> None:
    plan = build_plan_report("prod", tracking_uri=example_store.tracking_uri).plan
    markdown = render_markdown(prod_review)

    assert [f"{s.row['endpoint']}/{s.row['servedModelName']}" for s in prod_review.served_models] == [
        f"{s.endpoint}/{s.name}" for s in plan.served_models
    ]
    assert "| fraud-scorer | champion | `models:/fraud-scorer@champion` → `models:/fraud-scorer/1` | CPU_MEDIUM → c7i.4xlarge | 3 | 3–6 | 9–18 | 90 % | no | 597 s |" in markdown
    assert "GPU_MEDIUM → g5.xlarge" in markdown


def test_review_costs_equal_the_planner(prod_review, example_store) -> None:
    plan = build_plan_report("prod", tracking_uri=example_store.tracking_uri).plan
    markdown = render_markdown(prod_review)

    assert prod_review.cost.hourly_max == plan.hourly_cost_max
    assert prod_review.cost.monthly_max == round(plan.hourly_cost_max * HOURS_PER_MONTH, 2)
    assert f"**${plan.hourly_cost_max:,.2f}**" in markdown
    assert f"**${plan.hourly_cost_max * HOURS_PER_MONTH:,.2f}**" in markdown
    assert "Prices: 2026-06 us-east-1" in markdown


def test_versions_with_one_environment_build_one_image(prod_review) -> None:
    champion, challenger, _ = prod_review.served_models

    assert champion.image_tag == challenger.image_tag
    assert "shared with fraud-scorer/challenger" in champion.image_status


def test_review_against_another_stack_lists_setting_differences_and_cost_delta(example_store) -> None:
    review = build_review("prod", against="staging", tracking_uri=example_store.tracking_uri)
    settings = {c.path: (c.before, c.after) for c in review.comparison.settings}

    assert settings["endpoints.fraud-scorer.requestTimeoutSeconds"] == (60, 597)
    assert settings["environment"] == ("staging", "prod")
    assert review.cost_delta.hourly_max == pytest.approx(review.cost.hourly_max - review.comparison.base_cost.hourly_max)
    added = {c.name for c in review.comparison.resources if c.kind == "added"}
    assert "ticket-router.champion-asg" in added
    assert not review.comparison.restarts  # two stacks: differences, not a rollout


def test_instance_type_change_against_a_git_ref_calls_out_the_rollout(stack_repo: Path) -> None:
    change_stack(stack_repo, lambda c: c["kiln:endpoints"][0]["servedModels"][0].update(instanceType="c7i.8xlarge"))

    review = build_review(str(stack_repo), against="main")

    assert review.comparison.base_label == "prod@main"
    [setting] = review.comparison.settings
    assert (setting.path, setting.before, setting.after) == (
        "endpoints.fraud-scorer.servedModels.champion.instanceType", None, "c7i.8xlarge"
    )
    [restart] = review.comparison.restarts
    assert restart.name == "fraud-scorer.champion-lt"
    assert "instanceType" in restart.keys
    assert "instance refresh" in restart.note and "Both configurations are paid for" in restart.note
    assert all(s.image_status.startswith("cached") for s in review.served_models if s.row["endpoint"] == "fraud-scorer")



def test_a_bumped_cpu_ami_rolls_every_cpu_group_and_no_gpu_group(stack_repo: Path) -> None:
    change_stack(stack_repo, lambda c: c["kiln:amis"].update(cpu="ami-0b1b2c3d4e5f60009"))

    review = build_review(str(stack_repo), against="main")

    [setting] = review.comparison.settings
    assert (setting.path, setting.before, setting.after) == ("amis.cpu", "ami-0a1b2c3d4e5f60001", "ami-0b1b2c3d4e5f60009")
    rolled = {r.name: r.note for r in review.comparison.restarts}
    assert set(rolled) == {"fraud-scorer.champion-lt", "fraud-scorer.challenger-lt"}
    for note in rolled.values():
        assert note.startswith("AMI ami-0a1b2c3d4e5f60001 → ami-0b1b2c3d4e5f60009: new launch template version")

def test_weight_shift_changes_only_the_listener_rule(stack_repo: Path) -> None:
    def shift(config: dict) -> None:
        routes = config["kiln:endpoints"][0]["trafficConfig"]["routes"]
        routes[0]["trafficPercentage"], routes[1]["trafficPercentage"] = 50, 50

    change_stack(stack_repo, shift)

    review = build_review(str(stack_repo), against="main")

    assert [(c.name, c.kind) for c in review.comparison.resources] == [("fraud-scorer-route", "updated")]
    assert "weights change in place" in review.comparison.resources[0].note
    assert review.cost_delta.hourly_max == 0


def test_vpc_change_replaces_target_groups(stack_repo: Path) -> None:
    change_stack(stack_repo, lambda c: c["kiln:network"].update(vpcId="vpc-0ffff000000000001"))

    review = build_review(str(stack_repo), against="main")
    replaced = {c.name for c in review.comparison.restarts if c.kind == "replaced"}

    assert {"fraud-scorer.champion-tg", "fraud-scorer.challenger-tg", "ticket-router.champion-tg"} <= replaced


def test_unknown_git_ref_is_an_input_error(stack_repo: Path) -> None:
    result = CliRunner().invoke(main, ["review", str(stack_repo), "--against", "no-such-branch"])

    assert result.exit_code == 2
    assert "neither a stack nor a git ref" in result.stderr


def test_html_report_is_one_self_contained_file_with_a_chart(prod_review, tmp_path: Path) -> None:
    html = render_html(prod_review)

    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html and "<table>" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count("<rect") >= 2 * len(prod_review.served_models)


def test_review_command_writes_markdown_and_html(tmp_path: Path, example_store) -> None:
    for fmt in ("md", "html"):
        out = tmp_path / f"review.{fmt}"
        result = CliRunner().invoke(
            main, ["review", "dev", "--format", fmt, "-o", str(out), "--mlflow-tracking-uri", example_store.tracking_uri]
        )
        assert result.exit_code == 0, result.output
        assert "Kiln review: <code>dev</code>" in out.read_text() or "## Kiln review: `dev`" in out.read_text()


def test_review_carries_the_policy_results(example_store) -> None:
    review = build_review("dev", tracking_uri=example_store.tracking_uri)
    markdown = render_markdown(review)

    assert review.policy is not None and review.policy.passed
    assert "### Policies: ✅ passed" in markdown
    assert "| `no-scale-to-zero` | `fraud-scorer.champion` |" in markdown  # advisory outside prod


def test_review_of_a_stack_breaking_policy_says_failed(tmp_path: Path, example_store) -> None:
    config = stack_config("prod", example_store)
    config["kiln:endpoints"][0]["servedModels"][0]["scaleToZeroEnabled"] = True
    path = write_stack(tmp_path, config, stack="prod")

    markdown = render_markdown(build_review(str(path)))

    assert "### Policies: ❌ failed" in markdown
    assert "**mandatory**" in markdown and "`no-scale-to-zero`" in markdown


def test_review_lists_packaging_warnings_per_served_model(tmp_path: Path, example_store) -> None:
    from tests.bake_support import save_pyfunc

    model = save_pyfunc(tmp_path / "no-example", input_example=False)
    config = stack_config("dev", example_store)
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = str(model)
    path = write_stack(tmp_path, config, stack="dev")

    review = build_review(str(path))
    markdown = render_markdown(review)

    [served] = review.served_models
    assert [f["id"] for f in served.findings] == ["input-example-missing"]
    assert "**fraud-scorer/champion**" in markdown and "⚠️ `input-example-missing`:" in markdown


def test_clean_models_say_so_in_the_packaging_section(prod_review) -> None:
    # The example ticket router is a keyword pyfunc (no GPU framework) served on GPU_MEDIUM.
    markdown = render_markdown(prod_review)

    assert markdown.count(": no findings from the packaging checks.") == len(prod_review.served_models) - 1
    assert "⚠️ `no-gpu-framework-on-gpu`:" in markdown


def _top_level_items(markdown: str) -> list[str]:
    """The text of each top-level bullet as a CommonMark renderer nests it (sub-bullets included)."""
    from markdown_it import MarkdownIt

    items: list[str] = []
    depth = 0
    for token in MarkdownIt("commonmark").parse(markdown):
        if token.type == "list_item_open":
            depth += 1
            if depth == 1:
                items.append("")
        elif token.type == "list_item_close":
            depth -= 1
        elif token.type == "inline" and depth:
            items[-1] += token.content + "\n"
    return items


def test_a_served_models_findings_sit_in_its_own_bullet(prod_review) -> None:
    """A paragraph right after a bullet continues it in CommonMark: the ticket router's warning
    would land under the fraud scorer's challenger."""
    markdown = render_markdown(prod_review)
    section = markdown[markdown.index("### Packaging checks"):markdown.index("### Policies")]

    items = _top_level_items(section)

    assert len(items) == len(prod_review.served_models)
    [flagged] = [item for item in items if "no-gpu-framework-on-gpu" in item]
    assert flagged.startswith("**ticket-router/champion**")


def test_the_html_report_opens_with_its_title_and_the_chart_sits_under_cost(prod_review) -> None:
    html = render_html(prod_review)

    assert html.index("<h1>Kiln review: ") < html.index("<h3>Cost</h3>") < html.index("<svg") < html.index("<h3>Packaging checks")
    assert "<h2>" not in html


def test_no_chart_text_runs_past_the_chart(prod_review) -> None:
    """Generous for Helvetica/Arial: 0.6 em per character (digits are 0.556 em)."""
    import xml.etree.ElementTree as ElementTree

    from infra.review.chart import cost_chart

    svg = ElementTree.fromstring(cost_chart(prod_review))
    width = float(svg.get("width"))
    texts = svg.findall("{http://www.w3.org/2000/svg}text")

    assert len(texts) == len(prod_review.served_models) * 2 + 2
    for text in texts:
        assert float(text.get("x")) + len(text.text) * float(text.get("font-size")) * 0.6 <= width, text.text


def test_the_html_report_falls_back_to_emoji_fonts_and_keeps_code_on_one_line(prod_review) -> None:
    html = render_html(prod_review)

    assert '"Noto Color Emoji"' in html and '"Segoe UI Emoji"' in html
    assert "td code { white-space: nowrap; }" in html


def test_every_changed_resource_says_its_effect(stack_repo: Path) -> None:
    change_stack(stack_repo, lambda c: c["kiln:endpoints"][0]["tags"].update(team="fraud"))

    markdown = render_markdown(build_review(str(stack_repo), against="main"))
    rows = [line for line in markdown[markdown.index("**Resources**"):].splitlines() if line.startswith("| updated")]

    assert rows and all(row.rstrip(" |").rsplit("|", 1)[1].strip() for row in rows)
    assert "| updated in place |" in markdown

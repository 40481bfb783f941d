"""`kiln review --format html` as a browser lays it out: headless Chromium, real geometry.

The string-level tests (test_review.py) say what the HTML contains; these say what a reviewer
sees: the title first, every chart label inside the chart, model URIs on one line each, and
an effect for every changed resource. Chromium comes from the Makefile (`make test`).
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.review.render import render_html
from infra.review.report import build_review
from tests.chromium import headless_chromium
from tests.review_support import change_stack, stack_repository

# A laptop browser window; the report's body is at most 1200 px wide inside it.
WINDOW = (1280, 900)

# Geometry of what the assertions look at, measured in the page (CSS pixels).
LAYOUT_SCRIPT = """
(() => {
  const box = (element) => {
    const r = element.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, height: r.height, width: r.width};
  };
  const column = (header) => {
    for (const table of document.querySelectorAll('table')) {
      const index = [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim()).indexOf(header);
      if (index >= 0) return [...table.querySelectorAll('tbody tr')].map((tr) => tr.children[index]);
    }
    return [];
  };
  const svg = document.querySelector('svg');
  return {
    first: {tag: document.body.firstElementChild.tagName, text: document.body.firstElementChild.textContent},
    title: box(document.body.firstElementChild),
    svg: box(svg),
    labels: [...svg.querySelectorAll('text')].map((t) => ({text: t.textContent, ...box(t)})),
    model: column('model').map((td) => ({
      codes: [...td.querySelectorAll('code')].map((c) => ({lines: c.getClientRects().length, ...box(c)})),
    })),
    effect: column('effect').map((td) => ({text: td.innerText.trim(), ...box(td)})),
  };
})()
"""


@pytest.fixture(scope="module")
def layout(example_store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The prod stack's review against main after a change that rolls instances and retags
    resources, rendered to HTML and measured in Chromium (once for the module's tests)."""
    tmp_path = tmp_path_factory.mktemp("review-render")
    stack_repo = stack_repository(tmp_path, example_store)

    def change(config: dict) -> None:
        config["kiln:endpoints"][0]["servedModels"][0]["instanceType"] = "c7i.8xlarge"
        config["kiln:endpoints"][0]["tags"]["team"] = "fraud"

    change_stack(stack_repo, change)
    html = tmp_path / "review.html"
    html.write_text(render_html(build_review(str(stack_repo), against="main")))
    with headless_chromium() as browser:
        return browser.open(html, *WINDOW).evaluate(LAYOUT_SCRIPT)


def test_the_title_comes_first_and_sits_above_the_chart(layout: dict[str, Any]) -> None:
    assert layout["first"]["tag"] == "H1" and layout["first"]["text"].startswith("Kiln review: prod")
    assert layout["title"]["bottom"] <= layout["svg"]["top"]


def test_every_chart_label_lies_inside_the_chart(layout: dict[str, Any]) -> None:
    svg = layout["svg"]
    # Four served-model rows of two labels each (name, cost) plus the two legend entries.
    assert len(layout["labels"]) == 3 * 2 + 2
    for label in layout["labels"]:
        assert svg["left"] <= label["left"] and label["right"] <= svg["right"] + 0.5, label
        assert svg["top"] <= label["top"] and label["bottom"] <= svg["bottom"] + 0.5, label


def test_model_uris_stay_on_one_line_each(layout: dict[str, Any]) -> None:
    assert len(layout["model"]) == 3
    for cell in layout["model"]:
        [requested, resolved] = cell["codes"]
        assert requested["lines"] == 1 and resolved["lines"] == 1, cell
        # At most the two URIs one above the other, never broken over 3-4 lines (the cell itself
        # is as tall as its row's tallest cell, so the URIs' own extent is what counts).
        assert resolved["bottom"] - requested["top"] < 2.5 * requested["height"], cell


def test_every_changed_resource_shows_its_effect(layout: dict[str, Any]) -> None:
    effects = layout["effect"]
    assert effects, "the diff has no effect column"
    for effect in effects:
        assert effect["text"] not in ("", "—") and effect["width"] > 0 and effect["height"] > 0, effect
    assert any("instance refresh" in effect["text"] for effect in effects)

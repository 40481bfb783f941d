"""Render a review as Markdown (a pull-request comment) or as one self-contained HTML file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from markdown_it import MarkdownIt

from infra.review.chart import cost_chart
from infra.review.report import Review

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _delta(value: float) -> str:
    return f"{'+' if value > 0 else '−' if value < 0 else '±'}${abs(value):,.2f}"


def _show(value: Any) -> str:
    if value is None:
        return "—"
    text = json.dumps(value) if not isinstance(value, str) else value
    return f"`{text}`".replace("|", "\\|")


def render_markdown(review: Review) -> str:
    template = _TEMPLATES.get_template("review.md.j2")
    return template.render(r=review, money=_money, delta=_delta, show=_show).strip() + "\n"


# The chart belongs to the cost section, under the report's title and above the cost table.
COST_HEADING = "<h3>Cost</h3>\n"


def _html_body(markdown: str) -> str:
    """The Markdown as HTML, its title (a section heading in a pull-request comment) promoted to
    the page's h1: the standalone report is a document, and its title comes first."""
    parser = MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(markdown)
    opening = next(index for index, token in enumerate(tokens) if token.type == "heading_open")
    closing = next(index for index in range(opening, len(tokens)) if tokens[index].type == "heading_close")
    tokens[opening].tag = tokens[closing].tag = "h1"
    return parser.renderer.render(tokens, parser.options, {})


def render_html(review: Review) -> str:
    body = _html_body(render_markdown(review))
    figure = _TEMPLATES.get_template("cost_chart.html.j2").render(r=review, chart=cost_chart(review))
    body = body.replace(COST_HEADING, COST_HEADING + figure + "\n", 1)
    return _TEMPLATES.get_template("review.html.j2").render(r=review, body=body)

"""The HTML report's capacity/cost chart: an inline SVG, so the file stays self-contained."""

from __future__ import annotations

from html import escape

from infra.review.report import Review

BAR_HEIGHT = 18
ROW_HEIGHT = 44
LABEL_WIDTH = 240
PLOT_WIDTH = 460


def cost_chart(review: Review) -> str:
    """Hourly cost per served model: the floor you always pay, and the ceiling at max scale."""
    rows = review.served_models
    ceiling = max((s.row["hourlyCostMax"] for s in rows), default=0) or 1
    height = ROW_HEIGHT * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_WIDTH + PLOT_WIDTH + 90}" height="{height}" '
        f'role="img" aria-label="hourly cost per served model at min and max instances">'
    ]
    for index, served in enumerate(rows):
        y = 10 + index * ROW_HEIGHT
        low = served.row["hourlyCostMin"] / ceiling * PLOT_WIDTH
        high = served.row["hourlyCostMax"] / ceiling * PLOT_WIDTH
        label = escape(f"{served.row['endpoint']}/{served.row['servedModelName']} ({served.row['instanceType']})")
        parts += [
            f'<text x="0" y="{y + 14}" font-size="13">{label}</text>',
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{high:.1f}" height="{BAR_HEIGHT}" fill="#9ecae1"><title>max ${served.row["hourlyCostMax"]:.2f}/h</title></rect>',
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{low:.1f}" height="{BAR_HEIGHT}" fill="#3182bd"><title>min ${served.row["hourlyCostMin"]:.2f}/h</title></rect>',
            f'<text x="{LABEL_WIDTH + high + 6:.1f}" y="{y + 14}" font-size="12">'
            f'${served.row["hourlyCostMin"]:.2f}–${served.row["hourlyCostMax"]:.2f}/h, '
            f'{served.row["minInstances"]}–{served.row["maxInstances"]} inst</text>',
        ]
    legend_y = height - 8
    parts += [
        f'<rect x="{LABEL_WIDTH}" y="{legend_y - 10}" width="10" height="10" fill="#3182bd"/>',
        f'<text x="{LABEL_WIDTH + 14}" y="{legend_y}" font-size="12">at min instances</text>',
        f'<rect x="{LABEL_WIDTH + 130}" y="{legend_y - 10}" width="10" height="10" fill="#9ecae1"/>',
        f'<text x="{LABEL_WIDTH + 144}" y="{legend_y}" font-size="12">at max instances</text>',
        "</svg>",
    ]
    return "\n".join(parts)

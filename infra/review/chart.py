"""The HTML report's capacity/cost chart: an inline SVG, so the file stays self-contained."""

from __future__ import annotations

from html import escape

from infra.review.report import Review

LABEL_SIZE = 13
VALUE_SIZE = 12
BAR_HEIGHT = 18
# A row: the served model's label on its own line, its bar under it (a label beside the bar
# ran into the bar once a name was longer than the space kept for it).
ROW_HEIGHT = 48
PLOT_WIDTH = 520
# Room after the longest bar for its value ("$99.99–$999.99/h, 10–100 inst" at 12 px).
VALUE_WIDTH = 220
LEGEND_HEIGHT = 30


def cost_chart(review: Review) -> str:
    """Hourly cost per served model: the floor you always pay, and the ceiling at max scale."""
    rows = review.served_models
    ceiling = max((s.row["hourlyCostMax"] for s in rows), default=0) or 1
    height = ROW_HEIGHT * len(rows) + LEGEND_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH + VALUE_WIDTH}" height="{height}" '
        f'font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" '
        f'role="img" aria-label="hourly cost per served model at min and max instances">'
    ]
    for index, served in enumerate(rows):
        y = index * ROW_HEIGHT
        bar_y = y + LABEL_SIZE + 6
        low = served.row["hourlyCostMin"] / ceiling * PLOT_WIDTH
        high = served.row["hourlyCostMax"] / ceiling * PLOT_WIDTH
        label = escape(f"{served.row['endpoint']}/{served.row['servedModelName']} ({served.row['instanceType']})")
        parts += [
            f'<text x="0" y="{y + LABEL_SIZE}" font-size="{LABEL_SIZE}">{label}</text>',
            f'<rect x="0" y="{bar_y}" width="{high:.1f}" height="{BAR_HEIGHT}" fill="#9ecae1"><title>max ${served.row["hourlyCostMax"]:.2f}/h</title></rect>',
            f'<rect x="0" y="{bar_y}" width="{low:.1f}" height="{BAR_HEIGHT}" fill="#3182bd"><title>min ${served.row["hourlyCostMin"]:.2f}/h</title></rect>',
            f'<text x="{high + 6:.1f}" y="{bar_y + 14}" font-size="{VALUE_SIZE}">'
            f'${served.row["hourlyCostMin"]:.2f}–${served.row["hourlyCostMax"]:.2f}/h, '
            f'{served.row["minInstances"]}–{served.row["maxInstances"]} inst</text>',
        ]
    legend_y = height - 8
    parts += [
        f'<rect x="0" y="{legend_y - 10}" width="10" height="10" fill="#3182bd"/>',
        f'<text x="14" y="{legend_y}" font-size="{VALUE_SIZE}">at min instances</text>',
        f'<rect x="130" y="{legend_y - 10}" width="10" height="10" fill="#9ecae1"/>',
        f'<text x="144" y="{legend_y}" font-size="{VALUE_SIZE}">at max instances</text>',
        "</svg>",
    ]
    return "\n".join(parts)

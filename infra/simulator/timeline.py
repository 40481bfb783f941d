"""Draw a simulation's timeline as a PNG: load against capacity, instances, and failed requests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.simulator.model import Tick
from infra.simulator.replay import Replay


class TimelineError(Exception):
    """The timeline cannot be drawn here (matplotlib, the `plots` extra, is not installed)."""


def draw(panels: list[tuple[str, list[Replay]]], path: Path, title: str) -> Path:
    """One file, a column of three panels (load against capacity, instances, failed requests)
    per served model, each comparing the policies; around each line, a shaded band from the same
    replay with every estimate at its fast and its slow end (what the estimates leave open).
    Needs the `plots` extra (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on CI machines
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise TimelineError("drawing a timeline needs matplotlib: pip install 'kiln[plots]'") from error

    figure, axes = plt.subplots(3, len(panels), sharex="col", squeeze=False,
                                figsize=(max(11, 5.5 * len(panels)), 8))
    for column, (label, replays) in enumerate(panels):
        load, instances, failed = axes[:, column]
        minutes = [t.second / 60 for t in replays[0].planned.ticks]
        load.plot(minutes, [t.rps for t in replays[0].planned.ticks], color="black", linewidth=1.2, label="arriving rps")
        for replay in replays:
            _band(load, minutes, replay, lambda t: t.capacity_rps)
            _band(instances, minutes, replay, lambda t: t.running, step=True)
            _band(failed, minutes, replay, lambda t: t.rejected + t.timed_out)
        load.set_title(label, fontsize=9)
        failed.set_xlabel("minutes")
        for axis in (load, instances, failed):
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7, loc="upper right")
    axes[0, 0].set_ylabel("requests / s")
    axes[1, 0].set_ylabel("instances (billed)")
    axes[2, 0].set_ylabel("rejected / s")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _band(axis: Any, minutes: list[float], replay: Replay, value: Callable[[Tick], float], step: bool = False) -> None:
    """The planned replay as a line, the fast-to-slow estimates as a shaded band of its colour."""
    planned = [value(t) for t in replay.planned.ticks]
    if step:
        [line] = axis.step(minutes, planned, where="post", linewidth=1, label=replay.planned.policy.label)
    else:
        [line] = axis.plot(minutes, planned, linewidth=1, label=replay.planned.policy.label)
    low, high = [value(t) for t in replay.low.ticks], [value(t) for t in replay.high.ticks]
    axis.fill_between(minutes, [min(a, b) for a, b in zip(low, high, strict=True)],
                      [max(a, b) for a, b in zip(low, high, strict=True)],
                      step="post" if step else None, color=line.get_color(), alpha=0.15, linewidth=0)

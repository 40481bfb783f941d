"""Draw a simulation's timeline as a PNG: load against capacity, instances, and failed requests."""

from __future__ import annotations

from pathlib import Path

from infra.simulator.model import Result


class TimelineError(Exception):
    """The timeline cannot be drawn here (matplotlib, the `plots` extra, is not installed)."""


def draw(panels: list[tuple[str, list[Result]]], path: Path, title: str) -> Path:
    """One file, a column of three panels (load against capacity, instances, failed requests)
    per served model, each comparing the policies; needs the `plots` extra (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on CI machines
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise TimelineError("drawing a timeline needs matplotlib: pip install 'kiln[plots]'") from error

    figure, axes = plt.subplots(3, len(panels), sharex="col", squeeze=False,
                                figsize=(max(11, 5.5 * len(panels)), 8))
    for column, (label, results) in enumerate(panels):
        load, instances, failed = axes[:, column]
        minutes = [t.second / 60 for t in results[0].ticks]
        load.plot(minutes, [t.rps for t in results[0].ticks], color="black", linewidth=1.2, label="arriving rps")
        for result in results:
            load.plot(minutes, [t.capacity_rps for t in result.ticks], linewidth=1, label=f"capacity: {result.policy.label}")
            instances.step(minutes, [t.running for t in result.ticks], where="post", linewidth=1, label=result.policy.label)
            failed.plot(minutes, [t.rejected + t.timed_out for t in result.ticks], linewidth=1, label=result.policy.label)
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

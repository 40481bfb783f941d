"""Request-rate traces: one value per second (requests per second), from a CSV or a built-in shape."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

BUILTIN_SHAPES = ("step", "spike", "diurnal", "idle-then-burst")


class TraceError(Exception):
    """A trace that cannot be replayed: a bad file, row or shape name."""


@dataclass(frozen=True)
class Trace:
    name: str
    rps: tuple[float, ...]

    @property
    def duration_seconds(self) -> int:
        return len(self.rps)

    @property
    def total_requests(self) -> float:
        return sum(self.rps)

    def scaled(self, factor: float) -> Trace:
        """The share of this trace one served model gets (its traffic percentage)."""
        return Trace(self.name, tuple(r * factor for r in self.rps))


def load_csv(path: Path) -> Trace:
    """`second,rps` rows (header optional); each rate holds until the next row's second."""
    if not path.is_file():
        raise TraceError(f"{path}: trace file not found")
    points: list[tuple[int, float]] = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].strip().startswith("#"):
                continue
            try:
                second, rate = int(row[0]), float(row[1])
            except (ValueError, IndexError):
                if number == 1:
                    continue  # a header such as "second,rps"
                raise TraceError(f"{path}:{number}: expected 'second,requests_per_second', got {','.join(row)!r}") from None
            if second < 0 or rate < 0 or not math.isfinite(rate):
                raise TraceError(f"{path}:{number}: second and rate must be non-negative numbers")
            if points and second <= points[-1][0]:
                raise TraceError(f"{path}:{number}: seconds must increase (after {points[-1][0]} came {second})")
            points.append((second, rate))
    if not points:
        raise TraceError(f"{path}: no 'second,rps' rows")
    rps = [0.0] * (points[-1][0] + 1)
    for (second, rate), following in zip(points, points[1:] + [(points[-1][0] + 1, 0.0)]):
        for t in range(second, following[0]):
            rps[t] = rate
    return Trace(path.stem, tuple(rps))


def step(peak: float, duration: int = 1800, at: int = 60, base: float = 0.0) -> Trace:
    """`base` until `at`, then `peak`: the case 'how long until there is enough capacity'."""
    return Trace("step", tuple(base if t < at else peak for t in range(duration)))


def spike(peak: float, duration: int = 1800, at: int = 300, length: int = 120, base: float | None = None) -> Trace:
    """A short burst on a steady base (a fifth of the peak unless given)."""
    floor = peak / 5 if base is None else base
    return Trace("spike", tuple(peak if at <= t < at + length else floor for t in range(duration)))


def diurnal(peak: float, duration: int = 86_400, trough_fraction: float = 0.1) -> Trace:
    """One day: lowest at midnight, highest at noon (a raised cosine)."""
    low = peak * trough_fraction
    return Trace(
        "diurnal",
        tuple(low + (peak - low) * (1 - math.cos(2 * math.pi * t / duration)) / 2 for t in range(duration)),
    )


def idle_then_burst(peak: float, idle: int = 2700, burst: int = 600) -> Trace:
    """Nothing for `idle` seconds (long enough to scale to zero), then `peak` for `burst` seconds."""
    return Trace("idle-then-burst", tuple(0.0 if t < idle else peak for t in range(idle + burst)))


def builtin(name: str, peak: float, duration: int | None = None) -> Trace:
    if peak <= 0:
        raise TraceError(f"peak QPS must be positive, got {peak:g}")
    if name == "step":
        return step(peak, duration or 1800)
    if name == "spike":
        return spike(peak, duration or 1800)
    if name == "diurnal":
        return diurnal(peak, duration or 86_400)
    if name == "idle-then-burst":
        return idle_then_burst(peak) if duration is None else idle_then_burst(peak, idle=max(duration - 600, 0))
    raise TraceError(f"unknown trace shape {name!r}; built-in shapes: {', '.join(BUILTIN_SHAPES)}, or a CSV file")


def resolve(spec: str, peak: float, duration: int | None = None) -> Trace:
    """A built-in shape name, or a path to a `second,rps` CSV."""
    if spec in BUILTIN_SHAPES:
        return builtin(spec, peak, duration)
    path = Path(spec)
    if not path.exists() and "/" not in spec and "." not in spec:
        raise TraceError(f"unknown trace shape {spec!r}; built-in shapes: {', '.join(BUILTIN_SHAPES)}, or a CSV file")
    return load_csv(path)

"""A level that also remembers its highest value since it was last read.

The in-flight metric reports the peak of each 10 s period, not a sample: a burst that comes
and goes between two samples is exactly the load scale-out must see. Updating the peak on
every admit makes it exact at no cost; everything runs on the event loop, so no lock.
`kiln simulate` (infra/simulator/model.py) takes each period's value from this same class, so
the simulated metric and the published one cannot drift apart.
"""

from __future__ import annotations


class PeakGauge:
    def __init__(self) -> None:
        self.value: float = 0
        self._peak: float = 0

    def rise_to(self, value: float) -> None:
        """A new level that counts towards the period's peak (requests admitted)."""
        self.value = value
        self._peak = max(self._peak, value)

    def settle_to(self, value: float) -> None:
        """A new level after requests left: the peak already seen stays the period's."""
        self.value = value

    def increment(self) -> None:
        self.rise_to(self.value + 1)

    def decrement(self) -> None:
        self.settle_to(self.value - 1)

    def take_peak(self) -> float:
        """The highest value since the last call; the next period starts from the current value,
        because requests still in flight at a period boundary are load in the new period too."""
        peak, self._peak = self._peak, self.value
        return peak

"""A count that also remembers its highest value since it was last read.

The in-flight metric reports the peak of each 10 s period, not a sample: a burst that comes
and goes between two samples is exactly the load scale-out must see. Updating the peak on
every admit makes it exact at no cost; everything runs on the event loop, so no lock.
"""

from __future__ import annotations


class PeakGauge:
    def __init__(self) -> None:
        self.value = 0
        self._peak = 0

    def increment(self) -> None:
        self.value += 1
        self._peak = max(self._peak, self.value)

    def decrement(self) -> None:
        self.value -= 1

    def take_peak(self) -> int:
        """The highest value since the last call; the next period starts from the current value,
        because requests still in flight at a period boundary are load in the new period too."""
        peak, self._peak = self._peak, self.value
        return peak

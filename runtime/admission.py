"""Admission by latency budget: a request waits for a worker while its expected wait fits.

A fixed small queue refuses as soon as a few more clients than workers arrive, even when
every one of them would be answered well within the request timeout; answering those
refusals then eats the CPU that would serve (issue 13 measured goodput falling to a third
of `mlflow models serve` at 64 clients). Instead, a request is admitted while

    expected wait = queue position x measured service time / workers  <=  budget

and refused at once (429 + Retry-After) beyond it. The budget defaults to 1 s, or half a
shorter request timeout (RuntimeSettings.admission_budget_seconds, where the reason is), and a
refused request costs an O(1) check and a short answer.

Pure arithmetic over plain numbers: the pool feeds it the count admitted and each
prediction's duration.
"""

from __future__ import annotations

import math

from runtime.errors import Overloaded

# Weight of the newest prediction in the running service time: a model's cost changes
# slowly, and one slow request must not swing admission for the next hundred.
SMOOTHING = 0.2


class Admission:
    """Decide at arrival whether a request's expected wait for a worker fits the budget."""

    def __init__(self, workers: int, budget_seconds: float, service_seconds: float = 0.0) -> None:
        self.workers = workers
        self.budget_seconds = budget_seconds
        # Per prediction, as a worker spends it; 0 until known (then nothing waits "long").
        self.service_seconds = service_seconds
        self._measured = False

    def seed(self, seconds: float | None) -> None:
        """A first estimate before any request is measured (the warm-up prediction's time)."""
        if seconds is not None and not self._measured:
            self.service_seconds = seconds

    def observe(self, seconds: float) -> None:
        """One prediction's time on a worker; the first replaces the seed, later ones are smoothed."""
        if self._measured:
            self.service_seconds += SMOOTHING * (seconds - self.service_seconds)
        else:
            self.service_seconds = seconds
            self._measured = True

    def expected_wait(self, admitted: int) -> float:
        """Seconds a new arrival should wait for a worker when `admitted` requests are already
        running or waiting: none while a worker is free, else one service time per `workers`
        requests ahead of it, itself included."""
        position = admitted - self.workers + 1
        if position <= 0:
            return 0.0
        return position * self.service_seconds / self.workers

    def limit(self) -> float:
        """How many requests may be admitted at once (running plus waiting) before the next one's
        expected wait is over the budget; `kiln simulate` caps each instance with it. Unbounded
        while the service time is unknown, as `check` admits everything then."""
        per_position = self.expected_wait(self.workers)
        if per_position <= 0:
            return math.inf
        return self.workers + math.floor(round(self.budget_seconds / per_position, 9))

    def check(self, admitted: int) -> None:
        """Raise Overloaded (429) when a new arrival's expected wait is over the budget;
        Retry-After is how long until the queue should have drained back within it."""
        wait = self.expected_wait(admitted)
        if wait > self.budget_seconds:
            raise Overloaded(
                f"the expected wait for a worker ({wait:.3g} s) is over this model's admission budget "
                f"({self.budget_seconds:g} s); retry later",
                max(1, math.ceil(wait - self.budget_seconds)),
            )

"""Admission by latency budget as plain arithmetic: the expected wait and the service time it learns."""

from __future__ import annotations

import math

import pytest

from runtime.admission import Admission
from runtime.errors import Overloaded


@pytest.mark.parametrize(("admitted", "wait"), [(0, 0.0), (1, 0.0), (2, 0.5), (3, 1.0), (5, 2.0)])
def test_expected_wait_is_queue_position_times_service_time_per_worker(admitted: int, wait: float) -> None:
    admission = Admission(workers=2, budget_seconds=10, service_seconds=1.0)

    assert admission.expected_wait(admitted) == wait


def test_a_wait_at_the_budget_is_admitted_and_one_over_it_is_refused_with_retry_after_the_excess() -> None:
    admission = Admission(workers=1, budget_seconds=2, service_seconds=1.0)

    admission.check(2)  # waits 2 s: at the budget
    with pytest.raises(Overloaded) as refused:
        admission.check(5)  # waits 5 s: 3 s over

    assert (refused.value.status, refused.value.headers) == (429, ((b"retry-after", b"3"),))


def test_a_seed_is_the_service_time_until_a_prediction_is_measured() -> None:
    admission = Admission(workers=1, budget_seconds=1)
    admission.seed(None)  # a model without an input example: still unknown
    unknown = admission.service_seconds

    admission.seed(2.0)

    assert (unknown, admission.service_seconds, admission.expected_wait(2)) == (0.0, 2.0, 4.0)


def test_the_first_measured_prediction_replaces_the_seed_and_later_ones_are_smoothed() -> None:
    admission = Admission(workers=1, budget_seconds=1)
    admission.seed(2.0)  # a warm-up is slower than what follows

    admission.observe(0.1)
    first = admission.service_seconds
    admission.observe(0.6)

    # A fifth of the way from 0.1 to 0.6.
    assert (first, admission.service_seconds) == (0.1, pytest.approx(0.2))


def test_a_refusal_just_over_the_budget_retries_after_one_second_not_zero() -> None:
    admission = Admission(workers=1, budget_seconds=1, service_seconds=0.75)

    with pytest.raises(Overloaded) as refused:
        admission.check(2)  # waits 1.5 s: 0.5 s over

    assert refused.value.headers == ((b"retry-after", b"1"),)


def test_a_seed_after_measurements_changes_nothing() -> None:
    admission = Admission(workers=1, budget_seconds=1)
    admission.observe(0.1)

    admission.seed(5.0)
    admission.seed(None)

    assert admission.service_seconds == 0.1


def test_without_a_service_time_every_request_is_admitted() -> None:
    admission = Admission(workers=1, budget_seconds=0.001)

    admission.check(10_000)
    assert admission.limit() == math.inf


@pytest.mark.parametrize(("workers", "budget", "service"), [(2, 1.0, 0.5), (3, 2.5, 0.4), (1, 0.1, 1.0)])
def test_the_limit_is_the_last_count_check_admits(workers: int, budget: float, service: float) -> None:
    """`kiln simulate` caps an instance at `limit()`: it must be exactly where `check` starts refusing."""
    admission = Admission(workers, budget, service)
    limit = int(admission.limit())

    admission.check(limit - 1)
    with pytest.raises(Overloaded):
        admission.check(limit)

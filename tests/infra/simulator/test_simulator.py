"""Worked cases for the scaling simulator; every expected number is derived from the model's parameters."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from infra.simulator.model import simulate
from infra.simulator.report import summarize, time_to_capacity
from infra.simulator.scaling_policies import Signal, SimPolicy
from infra.simulator.trace import Trace, TraceError, idle_then_burst, load_csv, resolve, step

READY = 105  # launch to serving, seconds
UNITS, LATENCY, UTILIZATION = 2, 0.5, 0.7  # each instance serves 2 / 0.5 = 4 requests per second
ALB_TARGET = UNITS / LATENCY * 60 * UTILIZATION  # 168 requests per target per minute
IN_FLIGHT_TARGET = UNITS * UTILIZATION  # 1.4
HIGH_RES_LAG, ALB_LAG, DATAPOINTS = 10, 60, 3


def policy(**changes) -> SimPolicy:
    """A small CPU served model with both scale-out signals; tests switch parts off."""
    base = SimPolicy(
        name="stack", label="stack", workers_per_instance=UNITS, latency_seconds=LATENCY,
        min_instances=1, max_instances=10, hourly_usd=0.36, target_utilization=UTILIZATION,
        signals=(
            Signal("requests_per_minute", 60, ALB_LAG, DATAPOINTS, ALB_TARGET),
            Signal("in_flight", 10, HIGH_RES_LAG, DATAPOINTS, IN_FLIGHT_TARGET),
        ),
        scale_in_window_seconds=300, scale_in_threshold_rpm=ALB_TARGET / 2,
        scale_down_every_seconds=None, detection_seconds=None,
        scale_to_zero=False, idle_seconds=1860, hold_at_zero=True, wake_reaction_seconds=1,
        ready_seconds=READY, warm_ready_seconds=55, cold_start_seconds=None,
        warm_pool_size=0, warm_pool_hourly_usd=0.0, request_timeout_seconds=597,
    )
    return replace(base, **changes)


# 8 rps at 0.5 s needs 4 in flight; one instance holds 2 running + 2 queued, so the
# in-flight metric reads 4 per instance and target tracking asks for ceil(1 × 4 / 1.4) = 3
# instances (12 rps of capacity), enough in one decision.
STEP = step(peak=8, duration=900, at=60)


def test_step_with_the_high_resolution_metric_has_capacity_after_three_10s_points_a_lag_and_a_launch() -> None:
    result = simulate(policy(), STEP)

    assert time_to_capacity(result) == [DATAPOINTS * 10 + HIGH_RES_LAG + READY]


def test_step_with_the_alb_metric_only_waits_three_minutes_a_lag_and_a_launch() -> None:
    alb_only = policy(signals=policy().signals[:1])

    result = simulate(alb_only, STEP)

    assert time_to_capacity(result) == [DATAPOINTS * 60 + ALB_LAG + READY]
    [decision] = [e for e in result.events if e.kind == "scale-out"]
    # 8 rps × 60 s on one target against 168: ceil(480 / 168) = 3
    assert decision.desired == math.ceil(8 * 60 / ALB_TARGET)


def test_step_under_databricks_stated_behaviour_only_waits_for_the_launch() -> None:
    databricks = policy(signals=(), detection_seconds=0, scale_in_window_seconds=0, scale_down_every_seconds=300)

    assert time_to_capacity(simulate(databricks, STEP)) == [READY]


def test_high_resolution_metric_serves_more_of_a_step_than_alb_only() -> None:
    with_high_res = summarize(simulate(policy(), STEP))
    alb_only = summarize(simulate(policy(signals=policy().signals[:1]), STEP))

    assert with_high_res.rejected < alb_only.rejected
    # Until capacity arrives one instance serves 4 of the 8 rps, and queues 2: the rest is rejected.
    assert alb_only.rejected == pytest.approx((DATAPOINTS * 60 + ALB_LAG + READY) * 4 - 2)


def test_scale_in_never_comes_sooner_than_the_window() -> None:
    window = 300
    load = Trace("up-down", tuple(30.0 if t < 600 else 0.5 for t in range(3600)))

    result = simulate(policy(scale_in_window_seconds=window), load)
    scale_ins = [e.second for e in result.events if e.kind == "scale-in"]

    assert len(scale_ins) >= 2
    # The first waits for a whole window of low minutes after the drop (plus the ALB lag).
    assert scale_ins[0] >= 600 + window + ALB_LAG
    assert all(later - earlier >= window for earlier, later in zip(scale_ins, scale_ins[1:]))
    assert min(t.desired for t in result.ticks) == 1  # never below the floor


def test_scale_to_zero_holds_requests_through_the_cold_start_gap() -> None:
    idle_seconds = 1860
    trace = idle_then_burst(peak=2, idle=2400, burst=600)

    result = simulate(policy(min_instances=0, scale_to_zero=True, idle_seconds=idle_seconds), trace)
    zero = next(e for e in result.events if e.kind == "zero")

    ready_at = 2400 + 1 + READY
    during_gap = [t for t in result.ticks if 2400 <= t.second < ready_at]

    assert zero.second == idle_seconds
    # Wake after the activator's reaction, then a full launch.
    assert result.cold_starts == [1 + READY]
    # Every request of the gap is held, none fails, and the first one waits the whole gap.
    assert sum(t.rejected for t in during_gap) == 0 and result.timed_out == 0
    assert during_gap[-1].waiting == pytest.approx(2 * (1 + READY))
    assert result.max_wait_seconds == 1 + READY


def test_warm_pool_shortens_the_cold_start_to_the_warm_start() -> None:
    trace = idle_then_burst(peak=2, idle=2400, burst=600)

    result = simulate(policy(min_instances=0, scale_to_zero=True, warm_pool_size=1), trace)

    assert result.cold_starts == [1 + 55]


def test_without_an_activator_requests_at_zero_are_rejected_until_ready() -> None:
    trace = idle_then_burst(peak=2, idle=2400, burst=600)

    result = simulate(policy(min_instances=0, scale_to_zero=True, hold_at_zero=False), trace)

    # Held nowhere: 2 rps fail for every second of the gap (wake + launch), none after.
    assert result.rejected == pytest.approx(2 * (1 + READY))


def test_cost_is_instance_hours_times_price_plus_warm_pool_volumes() -> None:
    priced = policy(hourly_usd=0.357, warm_pool_size=2, warm_pool_hourly_usd=30 * 0.08 / 730)
    flat = Trace("flat", tuple(2.0 for _ in range(7200)))

    result = simulate(priced, flat)

    # One instance all along (2 rps needs ceil(1 / 1.4) = 1), two stopped instances in the pool.
    assert result.instance_hours == pytest.approx(2.0)
    assert result.cost_usd == pytest.approx(2.0 * 0.357 + 2 * 2.0 * 30 * 0.08 / 730)


def test_csv_trace_holds_each_rate_until_the_next_row(tmp_path: Path) -> None:
    path = tmp_path / "burst.csv"
    path.write_text("second,rps\n0,1\n3,5\n5,0\n")

    assert load_csv(path).rps == (1.0, 1.0, 1.0, 5.0, 5.0, 0.0)


def test_csv_trace_with_a_bad_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("second,rps\n0,1\n3,lots\n")

    with pytest.raises(TraceError, match=r"bad.csv:3: expected 'second,requests_per_second'"):
        load_csv(path)


def test_unknown_shape_lists_the_built_in_ones() -> None:
    with pytest.raises(TraceError, match="built-in shapes: step, spike, diurnal, idle-then-burst"):
        resolve("sawtooth", peak=10)

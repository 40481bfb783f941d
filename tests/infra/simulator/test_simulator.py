"""Worked cases for the scaling simulator; every expected number is derived from the model's parameters."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from infra.simulator.model import simulate
from infra.simulator.report import activator_calls_line, summarize, time_to_capacity
from infra.simulator.scaling_policies import Signal, SimPolicy
from infra.simulator.trace import Trace, TraceError, idle_then_burst, load_csv, resolve, step

IN_SERVICE, HEALTH_CHECKS = 85, 20  # launch to a ready runtime, then the ALB's checks
READY = IN_SERVICE + HEALTH_CHECKS  # launch to serving, seconds
UNITS, LATENCY, UTILIZATION = 2, 0.5, 0.7  # each instance serves 2 / 0.5 = 4 requests per second
ALB_TARGET = UNITS / LATENCY * 60 * UTILIZATION  # 168 requests per target per minute
IN_FLIGHT_TARGET = UNITS * UTILIZATION  # 1.4
HIGH_RES_LAG, ALB_LAG, DATAPOINTS = 10, 60, 3
# Admission: a worker's request takes 0.5 s, so each waiting position costs 0.25 s with 2 workers;
# a 0.5 s budget admits 2 waiting per instance beyond the 2 running (runtime/admission.py).
BUDGET = 0.5
DRAIN, TERMINATION, WARMUP = 300, 30, 30


def policy(**changes) -> SimPolicy:
    """A small CPU served model with both scale-out signals; tests switch parts off."""
    base = SimPolicy(
        name="stack", label="stack", workers_per_instance=UNITS, latency_seconds=LATENCY,
        min_instances=1, max_instances=10, hourly_usd=0.36, target_utilization=UTILIZATION,
        signals=(
            Signal("requests_per_minute", 60, ALB_LAG, DATAPOINTS, ALB_TARGET),
            Signal("in_flight", 10, HIGH_RES_LAG, DATAPOINTS, IN_FLIGHT_TARGET),
        ),
        admission_budget_seconds=BUDGET, max_batch_size=1, batch_row_cost=0.2,
        scale_in_window_seconds=300, scale_in_threshold_rpm=ALB_TARGET / 2,
        scale_in_threshold_in_flight=IN_FLIGHT_TARGET / 2,
        scale_down_every_seconds=None, scale_down_to_needed=False, detection_seconds=None,
        scale_to_zero=False, idle_seconds=1860, hold_at_zero=True, activator=True, hold_limit=500, wake_reaction_seconds=1,
        until_in_service_seconds=IN_SERVICE, warm_until_in_service_seconds=35, health_check_seconds=HEALTH_CHECKS,
        instance_warmup_seconds=WARMUP, cold_start_seconds=None,
        warm_pool_min_size=None, warm_pool_reuse_on_scale_in=True, warm_pool_hourly_usd=0.0, deregistration_delay_seconds=DRAIN,
        termination_seconds=TERMINATION, request_timeout_seconds=597,
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
    load = Trace("up-down", tuple(30.0 if t < 600 else 0.5 for t in range(9000)))

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


def test_the_activator_asks_elb_once_per_backoff_step_and_each_held_request_reads_ssm() -> None:
    # The case: 2 rps held through a ~105 s cold start, ~210 requests. Polling
    # DescribeTargetHealth every 2 s per request would be ~105 calls/s against ELB's bucket of 40.
    trace = idle_then_burst(peak=2, idle=2400, burst=600)

    result = simulate(policy(min_instances=0, scale_to_zero=True), trace)
    calls = result.activator_calls

    # One leader polls ELB: its first mean wait is 1 s (half the 2 s ceiling), then 2, 4, 8 s.
    assert calls.describe_peak_per_second == 1.0 and calls.describe_throttled == 0
    # Every held second's 2 requests read SSM at their age's mean interval: 1 s for the newest,
    # 2 s for the next two seconds' cohorts, 4 s for the next four, 8 s for the rest.
    cohorts = 1 + READY
    assert calls.get_parameter_peak_per_second == pytest.approx(2 * (1 / 1 + 2 / 2 + 4 / 4 + (cohorts - 7) / 8))
    assert calls.get_parameter_throttled_seconds == 0  # 30.75 reads/s, under SSM's 40
    assert "within the bucket" in activator_calls_line(result) and "within it" in activator_calls_line(result)


def test_a_large_cold_start_backlog_is_throttled_reading_ssm_and_the_report_says_so() -> None:
    result = simulate(policy(min_instances=0, scale_to_zero=True), idle_then_burst(peak=20, idle=2400, burst=600))
    calls = result.activator_calls

    assert calls.describe_peak_per_second == 1.0 and calls.describe_throttled == 0
    assert calls.get_parameter_peak_per_second > 40 and calls.get_parameter_throttled_seconds > 0
    assert f"over it for {calls.get_parameter_throttled_seconds} s: reads delayed" in activator_calls_line(result)
    # Without scale to zero nothing is held and the line is left out.
    assert activator_calls_line(simulate(policy(), STEP)) is None


def test_warm_pool_shortens_the_cold_start_to_the_warm_start() -> None:
    trace = idle_then_burst(peak=2, idle=2400, burst=600)

    result = simulate(policy(min_instances=0, scale_to_zero=True, warm_pool_min_size=1), trace)

    assert result.cold_starts == [1 + 55]


def test_without_an_activator_requests_at_zero_are_rejected_until_ready() -> None:
    trace = idle_then_burst(peak=2, idle=2400, burst=600)

    result = simulate(policy(min_instances=0, scale_to_zero=True, hold_at_zero=False), trace)

    # Held nowhere: 2 rps fail for every second of the gap (wake + launch), none after.
    assert result.rejected == pytest.approx(2 * (1 + READY))


def test_warm_pool_is_kept_at_group_max_minus_desired_and_its_first_boots_are_billed() -> None:
    """Without a max prepared capacity AWS keeps the pool at max - desired, never below minSize
    (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-warm-pools.html), and a
    pool instance runs (and is billed) through its first boot before it is stopped."""
    priced = policy(hourly_usd=0.357, warm_pool_min_size=2, warm_pool_hourly_usd=30 * 0.08 / 730)
    flat = Trace("flat", tuple(2.0 for _ in range(7200)))

    result = simulate(priced, flat)

    # One instance all along (2 rps needs ceil(1 / 1.4) = 1): the pool is 10 - 1 = 9, not minSize 2.
    assert {t.pool for t in result.ticks} == {9}
    assert result.instance_seconds == pytest.approx(7200 + 9 * IN_SERVICE)
    assert result.warm_pool_seconds == pytest.approx(9 * (7200 - IN_SERVICE))
    assert result.cost_usd == pytest.approx(
        (7200 + 9 * IN_SERVICE) / 3600 * 0.357 + 9 * (7200 - IN_SERVICE) / 3600 * 30 * 0.08 / 730)


def test_a_warm_pool_of_min_size_zero_still_holds_max_minus_desired() -> None:
    """minSize is only the pool's floor: with 0, AWS still keeps max - desired stopped instances."""
    flat = Trace("flat", tuple(2.0 for _ in range(3600)))

    assert {t.pool for t in simulate(policy(warm_pool_min_size=0), flat).ticks} == {9}
    assert {t.pool for t in simulate(policy(), flat).ticks} == {0}  # no pool at all


def test_scale_in_stops_instances_into_the_pool_only_when_the_pool_reuses_them() -> None:
    load = Trace("up-down", tuple(8.0 if 60 <= t < 400 else 0.5 for t in range(3600)))

    reused = simulate(policy(warm_pool_min_size=0), load)
    not_reused = simulate(policy(warm_pool_min_size=0, warm_pool_reuse_on_scale_in=False), load)

    assert any(e.kind == "scale-in" for e in reused.events)
    # Reused: a scaled-in instance stops into the pool, never terminates.
    assert not any(e.kind == "terminated" for e in reused.events)
    # Not reused: it drains and terminates, and the pool refills with a fresh first boot.
    assert any(e.kind == "terminated" for e in not_reused.events)
    assert not_reused.instance_seconds > reused.instance_seconds


def test_a_new_instance_counts_in_the_metrics_only_after_its_warmup_and_scale_in_waits_for_it() -> None:
    """AWS starts the warm-up at InService, leaves warming instances out of the aggregated metrics
    and blocks dynamic scale-in until every warm-up has ended."""
    warmup = 900
    load = Trace("up-down", tuple(8.0 if 60 <= t < 400 else 0.5 for t in range(3600)))

    result = simulate(policy(instance_warmup_seconds=warmup), load)
    scale_out = next(e for e in result.events if e.kind == "scale-out")
    scale_in = next(e for e in result.events if e.kind == "scale-in")

    assert scale_in.second >= scale_out.second + IN_SERVICE + warmup
    # Without the warm-up the same quiet spell scales in earlier.
    assert next(e for e in simulate(policy(instance_warmup_seconds=0), load).events
                if e.kind == "scale-in").second < scale_in.second


def test_in_flight_data_points_are_the_period_peak_as_the_runtime_publishes() -> None:
    """Bursts of 3 s in every 10 s: the period's average in flight stays under the target, the
    peak does not, so scale-out happens (an average would have missed it)."""
    bursts = Trace("bursts", tuple(5.0 if 60 <= t and t % 10 < 3 else 0.5 for t in range(600)))

    result = simulate(policy(signals=policy().signals[1:]), bursts)
    scale_out = next(e for e in result.events if e.kind == "scale-out")
    period = [t.in_flight_peak for t in result.ticks if 60 <= t.second < 70]

    assert sum(period) / len(period) < IN_FLIGHT_TARGET < max(period)
    assert f"in_flight {max(period):.4g} > target" in scale_out.reason


def test_a_scaled_in_instance_drains_and_is_billed_until_it_terminates_and_the_cooldown_starts_then() -> None:
    window = 300
    load = Trace("up-down", tuple(30.0 if t < 600 else 0.5 for t in range(4800)))

    result = simulate(policy(scale_in_window_seconds=window), load)
    scale_ins = [e.second for e in result.events if e.kind == "scale-in"]

    assert len(scale_ins) >= 2
    # The cooldown counts from the end of the activity: drain (the deregistration delay while
    # requests still arrive) and termination, so the spacing is window + drain + termination.
    assert all(later - earlier >= window + DRAIN + TERMINATION for earlier, later in zip(scale_ins, scale_ins[1:]))
    first = scale_ins[0]
    draining = [t for t in result.ticks if first <= t.second < first + DRAIN + TERMINATION]
    assert all(t.running == t.desired + 1 for t in draining)
    assert result.ticks[first + DRAIN + TERMINATION].running == result.ticks[first].desired


def test_a_model_slower_than_planned_does_not_flap_when_scale_in_also_reads_in_flight() -> None:
    """3x slower than planned: 4 rps keeps 6 in flight, so 5 instances are needed (1.2 each,
    under 1.4) while the request count per target is far below half its target. Scale-in on the
    request count alone removes the fifth, in-flight scales out again, and so on."""
    slow = Trace("steady", tuple(4.0 for _ in range(7200)))

    both = simulate(policy(latency_seconds=3 * LATENCY), slow)
    requests_only = simulate(policy(latency_seconds=3 * LATENCY, scale_in_threshold_in_flight=None), slow)

    def flaps(result) -> int:
        kinds = [e.kind for e in result.events if e.kind in ("scale-in", "scale-out")]
        return sum(1 for a, b in zip(kinds, kinds[1:]) if (a, b) == ("scale-in", "scale-out"))

    assert flaps(requests_only) >= 2
    assert flaps(both) == 0
    assert [e.kind for e in both.events if e.kind == "scale-in"] == []


def test_admission_refuses_with_429_beyond_the_budget_and_a_larger_budget_admits_more() -> None:
    """One instance, 8 rps against 4 rps of service: a 0.5 s budget lets 2 wait per instance,
    2 s lets 8 wait; the rest of the excess is refused at once."""
    flood = Trace("flood", tuple(8.0 for _ in range(30)))
    alone = {"signals": (), "max_instances": 1}

    tight = simulate(policy(**alone), flood)
    loose = simulate(policy(**alone, admission_budget_seconds=2.0), flood)

    assert tight.ticks[-1].waiting == pytest.approx(2)
    assert loose.ticks[-1].waiting == pytest.approx(8)
    assert tight.rejected == pytest.approx(30 * 8 - 30 * 4 - 2)
    assert loose.rejected == pytest.approx(30 * 8 - 30 * 4 - 8)


def test_batching_serves_several_requests_per_call_once_requests_queue() -> None:
    """Batches of up to 4, each extra row costing 20 % of a prediction: a saturated worker
    answers 4 / (0.5 × 1.6) = 5 requests per second instead of 2."""
    flood = Trace("flood", tuple(20.0 for _ in range(60)))
    alone = {"signals": (), "max_instances": 1, "admission_budget_seconds": 5.0}

    unbatched = simulate(policy(**alone), flood)
    batched = simulate(policy(**alone, max_batch_size=4), flood)

    assert unbatched.ticks[-1].capacity_rps == pytest.approx(UNITS / LATENCY)
    assert batched.ticks[-1].capacity_rps == pytest.approx(UNITS * 4 / (LATENCY * 1.6))
    assert batched.served > unbatched.served


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

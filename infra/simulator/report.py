"""What a simulation says, per policy and side by side: totals, reaction times, cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.plan.launch_timing import Timing
from infra.simulator.model import Result
from infra.simulator.replay import Replay
from infra.simulator.scaling_policies import (
    ELB_DESCRIBE_BUCKET,
    ELB_DESCRIBE_REFILL_PER_SECOND,
    SSM_GET_PARAMETER_PER_SECOND,
)

# A load step: the rate rises by at least half (and at least 1 rps) from one second to the next.
STEP_MIN_RISE_FRACTION = 0.5
STEP_MIN_RISE_RPS = 1.0
TIMELINE_BUCKET_SECONDS = 60


def load_steps(rps: tuple[float, ...]) -> list[int]:
    return [
        t for t in range(1, len(rps))
        if rps[t] - rps[t - 1] >= max(STEP_MIN_RISE_RPS, STEP_MIN_RISE_FRACTION * rps[t - 1])
    ]


def time_to_capacity(result: Result) -> list[int | None]:
    """Per load step: seconds until ready instances could serve the arriving rate (None: never)."""
    times: list[int | None] = []
    for step in load_steps(result.trace.rps):
        reached = next(
            (tick.second - step for tick in result.ticks[step:] if tick.ready and tick.capacity_rps >= tick.rps),
            None,
        )
        times.append(reached)
    return times


@dataclass(frozen=True)
class Summary:
    policy: str
    label: str
    requests: float
    served: float
    rejected: float
    timed_out: float
    mean_wait_seconds: float
    max_wait_seconds: float
    time_to_capacity_seconds: list[int | None]
    cold_start_seconds: list[int]
    peak_instances: int
    instance_hours: float
    cost_usd: float

    @property
    def served_percent(self) -> float:
        return 100.0 * self.served / self.requests if self.requests else 100.0


def summarize(result: Result) -> Summary:
    served = result.served
    return Summary(
        policy=result.policy.name,
        label=result.policy.label,
        requests=result.trace.total_requests,
        served=served,
        rejected=result.rejected,
        timed_out=result.timed_out,
        mean_wait_seconds=result.wait_seconds_total / served if served else 0.0,
        max_wait_seconds=result.max_wait_seconds,
        time_to_capacity_seconds=time_to_capacity(result),
        cold_start_seconds=list(result.cold_starts),
        peak_instances=max((t.running for t in result.ticks), default=0),
        instance_hours=result.instance_hours,
        cost_usd=result.cost_usd,
    )


def timeline(result: Result, bucket: int = TIMELINE_BUCKET_SECONDS) -> list[dict[str, Any]]:
    """Per bucket: mean rate, instances at its end, and requests served, rejected, timed out."""
    rows = []
    for start in range(0, len(result.ticks), bucket):
        ticks = result.ticks[start:start + bucket]
        rows.append(
            {
                "second": start,
                "rps": round(sum(t.rps for t in ticks) / len(ticks), 3),
                "desired": ticks[-1].desired,
                "running": ticks[-1].running,
                "ready": ticks[-1].ready,
                "warmPool": ticks[-1].pool,
                "inFlightPeak": round(max(t.in_flight_peak for t in ticks), 3),
                "served": round(sum(t.served for t in ticks), 3),
                "rejected": round(sum(t.rejected + t.timed_out for t in ticks), 3),
                "waiting": round(ticks[-1].waiting, 3),
            }
        )
    return rows


def as_json(served_model: str, traffic_percentage: int, replays: list[Replay],
            assumed: list[tuple[str, Timing]]) -> dict[str, Any]:
    policy = replays[0].planned.policy
    return {
        "servedModel": served_model,
        "trafficPercentage": traffic_percentage,
        "settings": {
            "workersPerInstance": policy.workers_per_instance,
            "latencySeconds": policy.latency_seconds,
            "admissionBudgetSeconds": policy.admission_budget_seconds,
            "maxBatchSize": policy.max_batch_size,
            "minInstances": policy.min_instances,
            "maxInstances": policy.max_instances,
            "readySeconds": policy.ready_seconds,
            "warmReadySeconds": policy.warm_ready_seconds,
            "instanceWarmupSeconds": policy.instance_warmup_seconds,
            "deregistrationDelaySeconds": policy.deregistration_delay_seconds,
            "warmPoolMinSize": policy.warm_pool_min_size,
            "hourlyUsd": policy.hourly_usd,
        },
        "assumptions": [
            {"name": name, "value": timing.value, "source": timing.source,
             **({"low": timing.low, "high": timing.high} if timing.estimate else {})}
            for name, timing in assumed
        ],
        "policies": [
            {
                **_summary_json(summarize(r.planned)),
                # The same replay with every estimate at the fast and at the slow end of its range.
                "estimateRange": {"low": _summary_json(summarize(r.low)), "high": _summary_json(summarize(r.high))},
                "events": [{"second": e.second, "kind": e.kind, "desired": e.desired, "reason": e.reason}
                           for e in r.planned.events],
                "activatorCalls": _activator_calls_json(r.planned),
                "timeline": timeline(r.planned),
            }
            for r in replays
        ],
    }


def _summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "policy": summary.policy,
        "label": summary.label,
        "requests": round(summary.requests, 3),
        "served": round(summary.served, 3),
        "rejected": round(summary.rejected, 3),
        "timedOut": round(summary.timed_out, 3),
        "servedPercent": round(summary.served_percent, 3),
        "meanWaitSeconds": round(summary.mean_wait_seconds, 3),
        "maxWaitSeconds": summary.max_wait_seconds,
        "timeToCapacitySeconds": summary.time_to_capacity_seconds,
        "coldStartSeconds": summary.cold_start_seconds,
        "peakInstances": summary.peak_instances,
        "instanceHours": round(summary.instance_hours, 4),
        "costUsd": round(summary.cost_usd, 4),
    }


def _activator_calls_json(result: Result) -> dict[str, float] | None:
    """None for a policy with no Kiln activator (Databricks), whose holding costs this account
    no API calls."""
    if not result.policy.activator:
        return None
    calls = result.activator_calls
    return {
        "describeTargetHealthPeakPerSecond": round(calls.describe_peak_per_second, 3),
        "describeTargetHealthThrottled": round(calls.describe_throttled, 3),
        "getParameterPeakPerSecond": round(calls.get_parameter_peak_per_second, 3),
        "getParameterThrottledSeconds": calls.get_parameter_throttled_seconds,
    }


def activator_calls_line(result: Result) -> str | None:
    """What one replay's held requests ask of the account-wide API limits, when it held any."""
    calls = result.activator_calls
    if not calls.get_parameter_peak_per_second:
        return None
    describe = (f"{calls.describe_throttled:.1f} throttled" if calls.describe_throttled else "within the bucket")
    reads = (f"over it for {calls.get_parameter_throttled_seconds} s: reads delayed"
             if calls.get_parameter_throttled_seconds else "within it")
    return (f"{result.policy.label}: the activator's peak is {calls.describe_peak_per_second:.1f} DescribeTargetHealth/s "
            f"(ELB bucket {ELB_DESCRIBE_BUCKET.value:g}, +{ELB_DESCRIBE_REFILL_PER_SECOND.value:g}/s per account and "
            f"region: {describe}) and {calls.get_parameter_peak_per_second:.1f} SSM GetParameter/s "
            f"({SSM_GET_PARAMETER_PER_SECOND.value:g}/s per account and region: {reads})")

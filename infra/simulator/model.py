"""The scaling model: one-second ticks of arrivals, service, metrics, policies and instances.

Requests are a fluid (fractions allowed), so results are exact functions of the trace and
the policy, with no randomness. Per tick:
1. arrivals go to the instances, or to the activator while the route is with it;
2. ready instances serve `workers / latency` requests per second each, oldest first (held
   requests first); the runtime queues one request per worker beyond those it runs and
   rejects the rest (429); held and queued requests older than the request timeout fail;
3. metrics are sampled: in-flight per instance (for the 10 s metric) and requests per
   target (for the 1-minute ALB metric); a data point becomes visible a lag after its
   period ends;
4. policies act: target tracking scales out to ceil(n × value / target) after N breaching
   data points (n = ready instances when the data point was taken: warming instances are
   not counted, so there is no overshoot); scale-in, idle-to-zero and wake follow the
   policy's rules;
5. the group converges on the desired capacity: new instances serve after the ready time
   (or the warm-pool start time), removed instances stop costing at once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from infra.simulator.scaling_policies import ACTIVATOR_HOLD_LIMIT, QUEUE_PER_WORKER, SimPolicy
from infra.simulator.trace import Trace


@dataclass(frozen=True)
class Tick:
    second: int
    rps: float
    desired: int
    running: int  # launching + ready (billed)
    ready: int
    capacity_rps: float
    served: float
    rejected: float
    timed_out: float
    waiting: float  # held by the activator + queued in runtimes


@dataclass
class Event:
    second: int
    kind: str  # scale-out, scale-in, zero, wake, ready
    desired: int
    reason: str


@dataclass
class Result:
    policy: SimPolicy
    trace: Trace
    ticks: list[Tick] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    instance_seconds: float = 0.0
    warm_pool_seconds: float = 0.0
    wait_seconds_total: float = 0.0
    max_wait_seconds: float = 0.0
    # Seconds from the first request that met zero instances to the first ready instance.
    cold_starts: list[int] = field(default_factory=list)

    @property
    def served(self) -> float:
        return sum(t.served for t in self.ticks)

    @property
    def rejected(self) -> float:
        return sum(t.rejected for t in self.ticks)

    @property
    def timed_out(self) -> float:
        return sum(t.timed_out for t in self.ticks)

    @property
    def instance_hours(self) -> float:
        return self.instance_seconds / 3600

    @property
    def cost_usd(self) -> float:
        return (
            self.instance_seconds * self.policy.hourly_usd + self.warm_pool_seconds * self.policy.warm_pool_hourly_usd
        ) / 3600


@dataclass
class _DataPoint:
    visible_at: int
    value: float | None
    instances: float  # ready instances, averaged over the data point's period
    capacity: int


class _Instances:
    def __init__(self, policy: SimPolicy, initial: int) -> None:
        self.policy = policy
        self.ready_at: list[int] = [0] * initial
        self.pool = policy.warm_pool_size

    def ready(self, now: int) -> int:
        return sum(1 for at in self.ready_at if at <= now)

    def converge(self, desired: int, now: int) -> None:
        while len(self.ready_at) < desired:
            if self.policy.cold_start_seconds is not None and not self.ready_at:
                delay = self.policy.cold_start_seconds
            elif self.pool > 0:
                self.pool -= 1
                delay = self.policy.warm_ready_seconds
            else:
                delay = self.policy.ready_seconds
            self.ready_at.append(now + delay)
        while len(self.ready_at) > desired:
            # Still-launching instances go first: they serve nobody yet.
            self.ready_at.sort()
            removed = self.ready_at.pop()
            if removed <= now and self.policy.warm_pool_size > 0:
                self.pool += 1  # reuse on scale-in: stopped back into the pool


def simulate(policy: SimPolicy, trace: Trace) -> Result:
    result = Result(policy, trace)
    rps = trace.rps
    first = rps[0] if rps else 0.0
    initial = min(policy.max_instances, max(policy.floor, _needed(policy, first * policy.latency_seconds)))
    desired = initial
    instances = _Instances(policy, initial)
    held: deque[list[float]] = deque()  # [arrival second, amount] at the activator
    queued: deque[list[float]] = deque()  # [arrival second, amount] in runtimes
    route_to_activator = False
    cold_since: int | None = None
    last_arrival = 0
    wake_at: int | None = None
    last_scale_in = -(10**9)
    signal_points: list[list[_DataPoint]] = [[] for _ in policy.signals]
    signal_seen = [0] * len(policy.signals)
    scale_in_points: list[_DataPoint] = []
    scale_in_seen = 0
    minute_requests = 0.0
    minute_ready = 0.0
    samples: list[list[float | None]] = [[] for _ in policy.signals]
    window_peak = 0.0
    period_ready = 0.0  # ready-instance seconds in the current 10 s period

    for now, arriving in enumerate(rps):
        if arriving > 0:
            last_arrival = now
            if desired == 0 and policy.scale_to_zero and wake_at is None:
                wake_at = now + policy.wake_reaction_seconds
                cold_since = now
        if wake_at is not None and now >= wake_at:
            desired = max(desired, 1)
            wake_at = None
            result.events.append(Event(now, "wake", desired, "a request arrived while at zero"))
        instances.converge(desired, now)
        ready = instances.ready(now)

        # 1. arrivals
        rejected = timed_out = 0.0
        to_instances = 0.0
        if route_to_activator or (ready == 0 and policy.hold_at_zero and policy.scale_to_zero):
            room = max(ACTIVATOR_HOLD_LIMIT - sum(a for _, a in held), 0.0)
            accepted = min(arriving, room)
            if accepted:
                held.append([now, accepted])
            rejected += arriving - accepted
        elif ready == 0:
            rejected += arriving  # no healthy target: the ALB answers 503
        else:
            to_instances = arriving
            if arriving:
                queued.append([now, arriving])

        # 2. service
        capacity = ready * policy.workers_per_instance / policy.latency_seconds
        budget = capacity
        served = 0.0
        for line in (held, queued):
            while line and budget > 1e-12:
                arrival, amount = line[0]
                take = min(amount, budget)
                wait = now - arrival
                result.wait_seconds_total += take * wait
                result.max_wait_seconds = max(result.max_wait_seconds, wait)
                served += take
                budget -= take
                if take >= amount - 1e-12:
                    line.popleft()
                else:
                    line[0][1] = amount - take
        limit = ready * policy.workers_per_instance * QUEUE_PER_WORKER
        excess = sum(a for _, a in queued) - limit
        while excess > 1e-12 and queued:  # the newest requests meet a full runtime queue
            arrival, amount = queued[-1]
            cut = min(amount, excess)
            rejected += cut
            excess -= cut
            if cut >= amount - 1e-12:
                queued.pop()
            else:
                queued[-1][1] = amount - cut
        for line in (held, queued):
            while line and now - line[0][0] >= policy.request_timeout_seconds:
                timed_out += line.popleft()[1]
        waiting = sum(a for _, a in held) + sum(a for _, a in queued)

        if route_to_activator and ready > 0:
            route_to_activator = False  # the first answered request gives the route back
        if cold_since is not None and ready > 0:
            result.cold_starts.append(now - cold_since)
            result.events.append(Event(now, "ready", desired, f"first instance ready {now - cold_since} s after the first held request"))
            cold_since = None

        # 3. metrics
        in_flight = served * policy.latency_seconds + sum(a for _, a in queued)
        minute_requests += to_instances
        minute_ready += ready
        period_ready += ready
        for index, signal in enumerate(policy.signals):
            if signal.kind == "in_flight":
                samples[index].append(in_flight / ready if ready else None)
                if (now + 1) % signal.period_seconds == 0:
                    values = [v for v in samples[index] if v is not None]
                    value = sum(values) / len(values) if values else None
                    mean_ready = period_ready / signal.period_seconds
                    signal_points[index].append(_DataPoint(now + 1 + signal.lag_seconds, value, mean_ready, desired))
                    samples[index] = []
        if (now + 1) % 10 == 0:
            period_ready = 0.0
        if (now + 1) % 60 == 0:
            average_ready = minute_ready / 60
            per_target = minute_requests / average_ready if average_ready > 0 else None
            for index, signal in enumerate(policy.signals):
                if signal.kind == "requests_per_minute":
                    signal_points[index].append(_DataPoint(now + 1 + signal.lag_seconds, per_target, average_ready, desired))
            lag = policy.signals[0].lag_seconds if policy.signals else 0
            scale_in_points.append(_DataPoint(now + 1 + lag, per_target or 0.0, ready, desired))
            minute_requests = minute_ready = 0.0

        # 4. policies
        for index, signal in enumerate(policy.signals):
            points, seen = signal_points[index], signal_seen[index]
            while seen < len(points) and points[seen].visible_at <= now:
                seen += 1
            if seen == signal_seen[index]:
                continue
            signal_seen[index] = seen
            recent = points[max(seen - signal.datapoints, 0):seen]
            if len(recent) == signal.datapoints and all(p.value is not None and p.value > signal.target for p in recent):
                last = recent[-1]
                proposed = min(policy.max_instances, math.ceil(last.instances * last.value / signal.target))
                if proposed > desired:
                    desired = proposed
                    result.events.append(Event(now, "scale-out", desired, f"{signal.kind} {last.value:.4g} > target {signal.target:g}"))
        if policy.detection_seconds is not None:  # Databricks: 'almost immediately'
            demand = arriving * policy.latency_seconds + waiting
            window_peak = max(window_peak, demand)
            proposed = min(policy.max_instances, _needed(policy, demand))
            if proposed > desired and desired > 0:
                desired = proposed
                result.events.append(Event(now, "scale-out", desired, f"concurrency demand {demand:.4g}"))
        if policy.scale_down_every_seconds and now > 0 and now % policy.scale_down_every_seconds == 0:
            target = max(policy.floor, min(policy.max_instances, _needed(policy, window_peak)))
            if 0 < target < desired:
                desired = target
                last_scale_in = now
                result.events.append(Event(now, "scale-in", desired, "5-minute scale-down"))
            window_peak = 0.0
        if policy.scale_in_window_seconds:
            seen = scale_in_seen
            while seen < len(scale_in_points) and scale_in_points[seen].visible_at <= now:
                seen += 1
            if seen != scale_in_seen:
                scale_in_seen = seen
                window = policy.scale_in_window_seconds // 60
                recent = scale_in_points[max(seen - window, 0):seen]
                if (
                    len(recent) == window
                    and all(p.capacity > policy.floor and (p.value or 0.0) < policy.scale_in_threshold_rpm for p in recent)
                    and now - last_scale_in >= policy.scale_in_window_seconds
                    and desired > policy.floor
                ):
                    desired -= 1
                    last_scale_in = now
                    result.events.append(Event(now, "scale-in", desired, f"below {policy.scale_in_threshold_rpm:g} requests/target/min for {window} min"))
        if policy.scale_to_zero and desired > 0 and now - last_arrival >= policy.idle_seconds and not waiting:
            desired = 0
            # With an activator the route moves to it; without one, requests meet an empty group.
            route_to_activator = policy.hold_at_zero
            result.events.append(Event(now, "zero", 0, f"no requests for {now - last_arrival} s"))

        instances.converge(desired, now)
        result.instance_seconds += len(instances.ready_at)
        result.warm_pool_seconds += instances.pool
        result.ticks.append(
            Tick(now, arriving, desired, len(instances.ready_at), ready, capacity, served, rejected, timed_out, waiting)
        )
    return result


def _needed(policy: SimPolicy, concurrency: float) -> int:
    """Instances that hold `concurrency` at the target utilisation."""
    per_instance = policy.workers_per_instance * policy.target_utilization
    return math.ceil(round(concurrency / per_instance, 9)) if concurrency > 0 else 0

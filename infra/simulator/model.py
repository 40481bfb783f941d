"""The scaling model: one-second ticks of arrivals, service, metrics, policies and instances.

Requests are a fluid (fractions allowed), so results are exact functions of the trace and
the policy, with no randomness. Per tick:
1. arrivals go to the serving instances, or to the activator while the route is with it; each
   instance admits while the runtime's own admission (runtime/admission.py) would: beyond its
   latency budget a request is refused with 429 at once (the activator keeps its held requests
   and forwards them again); held and admitted requests older than the request timeout fail;
2. serving instances answer oldest first; with adaptive batching a worker takes up to
   `max_batch_size` waiting requests in one call, so a batch serves several requests;
3. metrics: each instance's in-flight peak per 10 s period (runtime/gauge.py, the runtime's
   own definition) and requests per target per minute; a data point becomes visible a lag
   after its period ends and counts only the instances past their warm-up;
4. policies act as AWS documents them
   (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-default-instance-warmup.html):
   target tracking scales out to ceil(n × value / target) after N breaching data points, n =
   instances past warm-up, with warming instances counted as capacity already there; scale-in
   waits while any instance warms up, and simple scaling's cooldown starts when the last
   activity completed: a launch's lifecycle hook, or a removed instance's drain (up to the
   deregistration delay) and termination
   (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-scaling-cooldowns.html);
5. the group converges: a launched instance waits in Pending:Wait until its runtime is ready
   (the launch hook), then InService, serves after the ALB's health checks and is counted after
   its warm-up; a removed one drains and is billed until it terminates; a warm pool is kept at
   max(minSize, max − desired), as AWS keeps one without a max prepared capacity.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field

from infra.activator.handler import poll_ceilings
from infra.plan.scaling import ALB_METRIC_PERIOD_SECONDS, warm_pool_size
from infra.simulator.scaling_policies import (
    ELB_DESCRIBE_BUCKET,
    ELB_DESCRIBE_REFILL_PER_SECOND,
    SSM_GET_PARAMETER_PER_SECOND,
    SimPolicy,
)
from infra.simulator.trace import Trace
from runtime.admission import Admission
from runtime.contract import HIGH_RESOLUTION_PERIOD_SECONDS
from runtime.gauge import PeakGauge


@dataclass(frozen=True)
class Tick:
    second: int
    rps: float
    desired: int
    running: int  # billed at the instance price: launching, serving, draining, pool first boots
    ready: int  # serving
    capacity_rps: float
    served: float
    rejected: float  # 429 over the admission budget, or no target (the ALB's 503)
    timed_out: float
    waiting: float  # held by the activator + admitted and not yet answered
    in_flight_peak: float  # per serving instance, this second
    pool: int  # warm-pool instances (stopped or on their first boot)


@dataclass
class Event:
    second: int
    kind: str  # scale-out, scale-in, zero, wake, ready, terminated
    desired: int
    reason: str


@dataclass
class ActivatorCalls:
    """What a cold start's held requests ask of the ELB and SSM APIs, second by second."""

    describe_peak_per_second: float = 0.0
    describe_throttled: float = 0.0
    get_parameter_peak_per_second: float = 0.0
    # Seconds in which the reads exceeded SSM's rate: those reads are throttled (delayed).
    get_parameter_throttled_seconds: int = 0
    _bucket: float = field(default=ELB_DESCRIBE_BUCKET.value, repr=False)

    def second(self, leader_age: float | None, held: deque[list[float]], now: int) -> None:
        """One second of polling: the leader (`leader_age` seconds into the hold) calls ELB;
        each held cohort reads SSM at its own age's expected interval."""
        self._bucket = min(ELB_DESCRIBE_BUCKET.value, self._bucket + ELB_DESCRIBE_REFILL_PER_SECOND.value)
        describes = 1 / expected_poll_interval(leader_age) if leader_age is not None else 0.0
        self.describe_peak_per_second = max(self.describe_peak_per_second, describes)
        self._bucket -= describes
        if self._bucket < 0:
            self.describe_throttled += -self._bucket
            self._bucket = 0.0
        reads = sum(amount / expected_poll_interval(now - arrival) for arrival, amount in held)
        self.get_parameter_peak_per_second = max(self.get_parameter_peak_per_second, reads)
        self.get_parameter_throttled_seconds += reads > SSM_GET_PARAMETER_PER_SECOND.value


@functools.cache
def expected_poll_interval(age: float) -> float:
    """The mean wait between one held request's polls `age` seconds into its hold: half the
    ceiling the activator's full-jitter backoff is at by then (infra/activator/handler.py).
    Cached: every held cohort asks again each simulated second, at ages a trace repeats."""
    elapsed = 0.0
    ceilings = poll_ceilings()
    while True:
        interval = next(ceilings) / 2
        elapsed += interval
        if elapsed > age:
            return interval


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
    # The activator's AWS calls while it holds requests (expected values of its jittered
    # backoff): the leader's DescribeTargetHealth against ELB's bucket, every held request's
    # read of the shared readiness parameter against SSM's rate.
    activator_calls: ActivatorCalls = field(default_factory=ActivatorCalls)

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
class _Instance:
    in_service: int  # the launch hook completed: the runtime answered /ping
    serving: int  # the ALB's health checks passed
    counted: int  # past the warm-up: its data counts in the group's metrics


@dataclass
class _DataPoint:
    visible_at: int
    value: float | None
    instances: float  # instances whose data the point aggregates (past warm-up), over its period
    capacity: int
    in_flight: float = 0.0  # the minute's mean in-flight peak (scale-in's second signal)


class _Group:
    """The group's instances, draining instances and warm pool, and what they cost."""

    def __init__(self, policy: SimPolicy, initial: int) -> None:
        self.policy = policy
        self.active = [_Instance(0, 0, 0) for _ in range(initial)]
        self.draining: list[int] = []  # when each terminates
        # When each pool instance is stopped (its first boot, billed, ends); reused ones at once.
        self.pool: list[int] = []
        self.last_activity_end = -(10**9)  # when the last launch or termination completed

    def serving(self, now: int) -> int:
        return sum(1 for i in self.active if i.serving <= now)

    def counted(self, now: int) -> int:
        return sum(1 for i in self.active if i.counted <= now)

    def warming(self, now: int) -> bool:
        return any(i.counted > now for i in self.active)

    def converge(self, desired: int, now: int, result: Result, quiet_since: int) -> None:
        policy = self.policy
        while len(self.active) < desired:
            stopped = [at for at in self.pool if at <= now]
            if policy.cold_start_seconds is not None and not self.active:
                serving = now + policy.cold_start_seconds
                in_service = serving - policy.health_check_seconds
            elif stopped:
                self.pool.remove(stopped[0])
                in_service = now + policy.warm_until_in_service_seconds
                serving = in_service + policy.health_check_seconds
            else:
                in_service = now + policy.until_in_service_seconds
                serving = in_service + policy.health_check_seconds
            self.active.append(_Instance(in_service, serving, in_service + policy.instance_warmup_seconds))
            # A launch is an activity too: simple scaling's cooldown runs from its lifecycle hook's end.
            self.last_activity_end = max(self.last_activity_end, in_service)
        while len(self.active) > desired:
            # Still-launching instances go first: they serve nobody yet and are not registered.
            self.active.sort(key=lambda i: i.serving)
            removed = self.active.pop()
            if removed.serving > now:
                continue
            # Registered: it drains (new requests stop, admitted ones finish) for up to the
            # deregistration delay, then terminates, or stops back into the pool. The ALB ends the
            # drain at once for a target with no requests or connections: after a quiet spell.
            quiet = now - quiet_since >= policy.deregistration_delay_seconds
            gone = now + (0 if quiet else policy.deregistration_delay_seconds) + policy.termination_seconds
            if policy.warm_pool_min_size is not None and policy.warm_pool_reuse_on_scale_in:
                self.pool.append(gone)
            else:
                self.draining.append(gone)
            self.last_activity_end = max(self.last_activity_end, gone)
        if policy.warm_pool_min_size is not None:
            wanted = warm_pool_size(policy.warm_pool_min_size, policy.max_instances, desired)
            while len(self.pool) < wanted:  # a first boot: pull, load, then stopped
                self.pool.append(now + policy.until_in_service_seconds)
            self.pool.sort()
            del self.pool[wanted:]
        for at in [at for at in self.draining if at <= now]:
            self.draining.remove(at)
            result.events.append(Event(now, "terminated", desired, "drained and terminated"))

    def billed(self, now: int) -> tuple[int, int]:
        """(instances billed at the instance price, stopped pool instances billed for volumes)."""
        booting = sum(1 for at in self.pool if at > now)
        return len(self.active) + len(self.draining) + booting, len(self.pool) - booting


def simulate(policy: SimPolicy, trace: Trace) -> Result:
    result = Result(policy, trace)
    rps = trace.rps
    first = rps[0] if rps else 0.0
    initial = min(policy.max_instances, max(policy.floor, _needed(policy, first * policy.latency_seconds)))
    desired = initial
    group = _Group(policy, initial)
    held: deque[list[float]] = deque()  # [arrival second, amount] at the activator
    admitted: deque[list[float]] = deque()  # [arrival second, amount] in runtimes
    route_to_activator = False
    cold_since: int | None = None
    last_arrival = 0
    wake_at: int | None = None
    signal_points: list[list[_DataPoint]] = [[] for _ in policy.signals]
    signal_seen = [0] * len(policy.signals)
    scale_in_points: list[_DataPoint] = []
    scale_in_seen = 0
    minute_requests = minute_serving = minute_in_flight = minute_counted = period_counted = 0.0
    gauge = PeakGauge()
    window_peak = 0.0
    last_scale_in = -(10**9)

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
        group.converge(desired, now, result, last_arrival)
        serving = group.serving(now)

        # 1. arrivals and admission: what fits the admission limit once this second's service is done
        rejected = timed_out = 0.0
        in_runtimes = sum(a for _, a in admitted)
        batch = _batch_size(policy, in_runtimes + arriving + sum(a for _, a in held), serving)
        batch_seconds = policy.latency_seconds * (1 + (batch - 1) * policy.batch_row_cost)
        capacity = serving * policy.workers_per_instance * batch / batch_seconds
        limit = Admission(policy.workers_per_instance, policy.admission_budget_seconds, batch_seconds / batch).limit()
        # The limit counts running and waiting requests; the running ones are the workers' batches.
        room = max(capacity + serving * max(limit - policy.workers_per_instance * batch, 0.0) - in_runtimes, 0.0)
        while held and serving and room > 1e-12:  # the activator forwards; a 429 keeps it held
            take = min(held[0][1], room)
            admitted.append([held[0][0], take])
            room -= take
            if take >= held[0][1] - 1e-12:
                held.popleft()
            else:
                held[0][1] -= take
        routed = 0.0  # what the ALB counts for the targets: every request it sends them, 429s too
        if route_to_activator or (serving == 0 and policy.hold_at_zero and policy.scale_to_zero):
            accepted = min(arriving, max(policy.hold_limit - sum(a for _, a in held), 0.0))
            if accepted:
                held.append([now, accepted])
            rejected += arriving - accepted
        elif serving == 0:
            rejected += arriving  # no healthy target: the ALB answers 503
        else:
            routed = arriving
            to_instances = min(arriving, room)
            rejected += arriving - to_instances  # over the admission budget: 429
            if to_instances:
                admitted.append([now, to_instances])

        # 2. service, batched
        budget = capacity
        served = 0.0
        while admitted and budget > 1e-12:
            arrival, amount = admitted[0]
            take = min(amount, budget)
            wait = now - arrival
            result.wait_seconds_total += take * wait
            result.max_wait_seconds = max(result.max_wait_seconds, wait)
            served += take
            budget -= take
            if take >= amount - 1e-12:
                admitted.popleft()
            else:
                admitted[0][1] = amount - take
        for line in (held, admitted):
            while line and now - line[0][0] >= policy.request_timeout_seconds:
                timed_out += line.popleft()[1]
        if held and policy.activator:
            result.activator_calls.second(now - cold_since if cold_since is not None else None, held, now)
        waiting = sum(a for _, a in held) + sum(a for _, a in admitted)
        # In flight per instance: the batches running (served rate × time in a batch, Little's
        # law) plus those waiting for a worker, into the runtime's own peak gauge.
        peak = (served * batch_seconds + sum(a for _, a in admitted)) / serving if serving else 0.0
        gauge.rise_to(peak)

        if route_to_activator and serving > 0:
            route_to_activator = False  # the first answered request gives the route back
        if cold_since is not None and serving > 0:
            result.cold_starts.append(now - cold_since)
            result.events.append(Event(now, "ready", desired, f"first instance ready {now - cold_since} s after the first held request"))
            cold_since = None

        # 3. metrics
        counted = group.counted(now)
        minute_requests += routed
        minute_serving += serving
        minute_counted += counted
        period_counted += counted
        for index, signal in enumerate(policy.signals):
            if signal.kind == "in_flight" and (now + 1) % signal.period_seconds == 0:
                value = gauge.take_peak()
                minute_in_flight += value * signal.period_seconds
                n = period_counted / signal.period_seconds
                signal_points[index].append(_DataPoint(now + 1 + signal.lag_seconds, value if n else None, n, desired))
        if (now + 1) % HIGH_RESOLUTION_PERIOD_SECONDS == 0:
            period_counted = 0.0
        if (now + 1) % ALB_METRIC_PERIOD_SECONDS == 0:
            average_serving = minute_serving / ALB_METRIC_PERIOD_SECONDS
            per_target = minute_requests / average_serving if average_serving > 0 else None
            n = minute_counted / ALB_METRIC_PERIOD_SECONDS
            for index, signal in enumerate(policy.signals):
                if signal.kind == "requests_per_minute":
                    signal_points[index].append(
                        _DataPoint(now + 1 + signal.lag_seconds, per_target if n else None, n, desired))
            lag = policy.signals[0].lag_seconds if policy.signals else 0
            scale_in_points.append(_DataPoint(now + 1 + lag, per_target or 0.0, n, desired,
                                              minute_in_flight / ALB_METRIC_PERIOD_SECONDS))
            minute_requests = minute_serving = minute_in_flight = minute_counted = 0.0

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
                value = last.value or 0.0
                # Warming instances are capacity already there: a proposal they cover adds nothing.
                proposed = min(policy.max_instances, math.ceil(round(last.instances * value / signal.target, 9)))
                if proposed > desired:
                    desired = proposed
                    result.events.append(Event(now, "scale-out", desired, f"{signal.kind} {value:.4g} > target {signal.target:g}"))
        if policy.detection_seconds is not None:  # Databricks: 'almost immediately'
            demand = arriving * policy.latency_seconds
            window_peak = max(window_peak, demand)
            proposed = min(policy.max_instances, _needed(policy, demand))
            if proposed > desired and desired > 0:
                desired = proposed
                result.events.append(Event(now, "scale-out", desired, f"concurrency demand {demand:.4g}"))
        if policy.scale_down_every_seconds and now > 0 and now % policy.scale_down_every_seconds == 0:
            needed = max(policy.floor, min(policy.max_instances, _needed(policy, window_peak)))
            target = needed if policy.scale_down_to_needed else max(needed, desired - 1)
            if 0 < target < desired:
                desired = target
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
                    and all(_quiet(policy, p) for p in recent)
                    # Simple scaling's cooldown runs from the end of the last activity (a launch's
                    # hook, a drain and termination). Dynamic scale-in waits out every warm-up.
                    and now >= group.last_activity_end + policy.scale_in_window_seconds
                    and now - last_scale_in >= policy.scale_in_window_seconds
                    and not group.warming(now)
                    and desired > policy.floor
                ):
                    desired -= 1
                    last_scale_in = now
                    result.events.append(Event(now, "scale-in", desired, _quiet_reason(policy, window)))
        if policy.scale_to_zero and desired > 0 and now - last_arrival >= policy.idle_seconds and not waiting:
            desired = 0
            # With an activator the route moves to it; without one, requests meet an empty group.
            route_to_activator = policy.hold_at_zero
            result.events.append(Event(now, "zero", 0, f"no requests for {now - last_arrival} s"))

        group.converge(desired, now, result, last_arrival)
        running, stopped = group.billed(now)
        result.instance_seconds += running
        result.warm_pool_seconds += stopped
        result.ticks.append(
            Tick(now, arriving, desired, running, serving, capacity, served, rejected, timed_out, waiting, peak,
                 len(group.pool))
        )
    return result


def _batch_size(policy: SimPolicy, in_runtimes: float, serving: int) -> float:
    """Requests one worker call takes: 1 while a worker is free, up to max_batch_size once they queue."""
    if not serving or policy.max_batch_size <= 1:
        return 1.0
    return min(float(policy.max_batch_size), max(1.0, in_runtimes / (serving * policy.workers_per_instance)))


def _quiet(policy: SimPolicy, point: _DataPoint) -> bool:
    """The scale-in alarm's minute: above the floor, and low on every signal it watches."""
    if point.capacity <= policy.floor or (point.value or 0.0) >= policy.scale_in_threshold_rpm:
        return False
    return policy.scale_in_threshold_in_flight is None or point.in_flight < policy.scale_in_threshold_in_flight


def _quiet_reason(policy: SimPolicy, window: int) -> str:
    signals = f"below {policy.scale_in_threshold_rpm:g} requests/target/min"
    if policy.scale_in_threshold_in_flight is not None:
        signals += f" and {policy.scale_in_threshold_in_flight:g} in flight/instance"
    return f"{signals} for {window} min"


def _needed(policy: SimPolicy, concurrency: float) -> int:
    """Instances that hold `concurrency` at the target utilisation."""
    per_instance = policy.workers_per_instance * policy.target_utilization
    return math.ceil(round(concurrency / per_instance, 9)) if concurrency > 0 else 0

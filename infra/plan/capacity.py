"""Concurrency arithmetic: from what a served model must handle to instances and scaling targets.

Vocabulary follows Databricks: one unit of provisioned concurrency answers one request at a
time, and provisioned concurrency = QPS × model execution time. Kiln runs one worker
process per unit of concurrency; everywhere else the word is "workers": an instance's
workers are how many fit in its memory (CPU), or one per instance (GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.plan.catalog import INSTANCES, OS_RESERVE_GIB, PROFILES, ComputeProfile, InstanceType
from infra.plan.config import WORKLOAD_SIZES, ServedModel

# Used for the scaling target when a served model states no expected latency.
DEFAULT_LATENCY_MS = 100.0
# Target tracking aims below full use so a burst is absorbed while new instances boot
# (the default of a served model's `scaling.targetUtilization`; Knative's default is 70 % too).
TARGET_UTILIZATION = 0.7
# With expectedQps, the group may grow to this multiple of the expected concurrency.
PEAK_HEADROOM = 2


@dataclass(frozen=True)
class ConcurrencyRange:
    minimum: int
    maximum: int


@dataclass(frozen=True)
class Sizing:
    instance: InstanceType
    workers_per_instance: int
    min_instances: int
    max_instances: int

    @property
    def hourly_cost_min(self) -> float:
        return round(self.min_instances * self.instance.hourly_usd, 4)

    @property
    def hourly_cost_max(self) -> float:
        return round(self.max_instances * self.instance.hourly_usd, 4)


def concurrency_for(qps: float, latency_ms: float) -> int:
    """Units needed to sustain `qps` when each request takes `latency_ms`: 20 QPS × 0.2 s = 4."""
    return max(1, math.ceil(round(qps * latency_ms / 1000, 9)))


def requested_concurrency(served: ServedModel) -> ConcurrencyRange:
    """The concurrency range a served model asks for, with scale to zero lowering the floor."""
    if served.workload_size is not None:
        low, high = WORKLOAD_SIZES[served.workload_size]
    elif served.expected_qps is not None:
        low = concurrency_for(served.expected_qps, served.expected_latency_ms or DEFAULT_LATENCY_MS)
        high = low * PEAK_HEADROOM
    else:
        low = served.min_provisioned_concurrency or 0
        high = served.max_provisioned_concurrency or low
    return ConcurrencyRange(0 if served.scale_to_zero_enabled else low, high)


def workers_per_instance(instance: InstanceType, profile: ComputeProfile) -> int:
    """Workers one instance can run: memory-bound on CPU (capped by vCPUs), one per GPU instance."""
    if profile.has_gpu:
        return 1
    by_memory = math.floor((instance.memory_gib - OS_RESERVE_GIB) / profile.memory_per_concurrency_gib)
    return max(0, min(by_memory, instance.vcpus))


def size_on(instance: InstanceType, profile: ComputeProfile, concurrency: ConcurrencyRange) -> Sizing | None:
    workers = workers_per_instance(instance, profile)
    if workers == 0:
        return None
    return Sizing(
        instance=instance,
        workers_per_instance=workers,
        min_instances=math.ceil(concurrency.minimum / workers),
        max_instances=max(1, math.ceil(concurrency.maximum / workers)),
    )


def choose_sizing(profile: ComputeProfile, concurrency: ConcurrencyRange, instance_type: str | None = None) -> Sizing:
    """The cheapest instance size that covers the range: by cost at max, then at min, then smaller."""
    candidates = [instance_type] if instance_type else list(profile.default_instances)
    sizings = [s for name in candidates if (s := size_on(INSTANCES[name], profile, concurrency))]
    if not sizings:
        raise ValueError(
            f"no instance among {', '.join(candidates)} fits one {profile.compute_type.value} worker "
            f"({profile.memory_per_concurrency_gib:g} GiB + {OS_RESERVE_GIB:g} GiB reserve)"
        )
    return min(sizings, key=lambda s: (s.hourly_cost_max, s.hourly_cost_min, s.instance.hourly_usd))


def requests_per_target_per_minute(workers: int, latency_ms: float, utilization: float = TARGET_UTILIZATION) -> float:
    """ALBRequestCountPerTarget target: what `workers` answer per minute at `utilization`.

    Each worker answers 1000 / latency_ms requests per second, so an instance answers
    workers × 1000 / latency_ms × 60 per minute at full use.
    """
    return round(workers * 1000 / latency_ms * 60 * utilization, 2)


@dataclass(frozen=True)
class CapacityPlan:
    concurrency: ConcurrencyRange
    sizing: Sizing
    latency_ms: float
    target_requests_per_minute: float
    target_utilization: float = TARGET_UTILIZATION

    @property
    def min_concurrency(self) -> int:
        return self.sizing.min_instances * self.sizing.workers_per_instance

    @property
    def max_concurrency(self) -> int:
        return self.sizing.max_instances * self.sizing.workers_per_instance

    def arithmetic(self) -> list[str]:
        """The plan's reasoning, in the words a reviewer checks it with."""
        s = self.sizing
        return [
            f"requested concurrency {self.concurrency.minimum}-{self.concurrency.maximum}",
            f"{s.instance.name}: {s.workers_per_instance} workers per instance",
            f"instances {s.min_instances}-{s.max_instances} "
            f"(= ceil({self.concurrency.minimum}/{s.workers_per_instance})-ceil({self.concurrency.maximum}/{s.workers_per_instance}))",
            f"scaling target {self.target_requests_per_minute:g} requests/target/min "
            f"(= {s.workers_per_instance} × 1000/{self.latency_ms:g} ms × 60 × {self.target_utilization:g})",
            f"cost ${s.hourly_cost_min:.2f}-${s.hourly_cost_max:.2f}/h (= instances × ${s.instance.hourly_usd}/h)",
        ]


def plan_capacity(served: ServedModel) -> CapacityPlan:
    profile = PROFILES[served.compute_type]
    concurrency = requested_concurrency(served)
    sizing = choose_sizing(profile, concurrency, served.instance_type)
    latency = served.expected_latency_ms or DEFAULT_LATENCY_MS
    utilization = served.scaling.target_utilization
    return CapacityPlan(
        concurrency=concurrency,
        sizing=sizing,
        latency_ms=latency,
        target_requests_per_minute=requests_per_target_per_minute(sizing.workers_per_instance, latency, utilization),
        target_utilization=utilization,
    )

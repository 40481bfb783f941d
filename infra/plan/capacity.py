"""Concurrency arithmetic: from what a served model must handle to instances and scaling targets.

Vocabulary follows Databricks: one unit of provisioned concurrency answers one request at a
time, and provisioned concurrency = QPS × model execution time. Kiln runs one worker
process per unit of concurrency; everywhere else the word is "workers": an instance's
workers are how many fit in its memory (CPU), one per GPU, or one per instance when the
model is spread across all of its GPUs (GpuPlacement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.plan.catalog import INSTANCES, OS_RESERVE_GIB, PROFILES, ComputeProfile, GpuPlacement, InstanceType
from infra.plan.config import WORKLOAD_SIZES, ServedModel

# Used for the scaling target when a served model states no expected latency.
DEFAULT_LATENCY_MS = 100.0
# Target tracking aims below full use so a burst is absorbed while new instances boot
# (the default of a served model's `scaling.targetUtilization`; Knative's default is 70 % too).
TARGET_UTILIZATION = 0.7
# With expectedQps, the group may grow to this multiple of the expected concurrency.
PEAK_HEADROOM = 2
# On top of a worker's measured peak memory (`sizing: measured`): requests larger than the
# input example, allocator fragmentation over days of serving, the runtime's own buffers.
MEASURED_MEMORY_HEADROOM = 0.25
# On a GPU a predict call costs mostly per call (a kernel launch, a host-device copy), so a
# GPU served model merges up to this many waiting requests unless its maxBatchSize says
# otherwise (1 turns it off: merging assumes a row's prediction depends on that row only).
# With no delay a batch is only what is already waiting, so light load is never slowed.
DEFAULT_GPU_BATCH_SIZE = 8
# A served request never takes less than the runtime's own work (HTTP parsing, JSON, schema
# enforcement; about a millisecond), however fast the model predicted in the probe; the
# scaling target divides by it.
MIN_MEASURED_LATENCY_MS = 1.0


class SizingError(ValueError):
    """A served model its compute type cannot hold, or `sizing: measured` with nothing measured."""


@dataclass(frozen=True)
class WorkerMeasurement:
    """What the reload check measured for one worker (models/measurements.py), as the planner
    reads it: peak resident memory, predict latency on the input example, and where."""

    peak_gib: float
    latency_ms: float | None
    source: str

    @property
    def memory_gib(self) -> float:
        """Memory the plan gives each worker: the measured peak plus MEASURED_MEMORY_HEADROOM."""
        return self.peak_gib * (1 + MEASURED_MEMORY_HEADROOM)


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


def requested_concurrency(served: ServedModel, measured_latency_ms: float | None = None) -> ConcurrencyRange:
    """The concurrency range a served model asks for, with scale to zero lowering the floor;
    expected QPS is turned into concurrency with the measured latency when there is one."""
    if served.workload_size is not None:
        low, high = WORKLOAD_SIZES[served.workload_size]
    elif served.expected_qps is not None:
        low = concurrency_for(served.expected_qps, measured_latency_ms or served.expected_latency_ms or DEFAULT_LATENCY_MS)
        high = low * PEAK_HEADROOM
    else:
        low = served.min_provisioned_concurrency or 0
        high = served.max_provisioned_concurrency or low
    return ConcurrencyRange(0 if served.scale_to_zero_enabled else low, high)


@dataclass(frozen=True)
class GpuUse:
    """How a served model uses its instance's GPUs, and why (for the plan's arithmetic)."""

    placement: GpuPlacement
    reason: str


def choose_gpu_placement(profile: ComputeProfile, requested: GpuPlacement | None,
                         model_memory_gib: float | None) -> GpuUse | None:
    """None on CPU; the stack's gpuPlacement when given; else one worker per GPU when the model
    fits one device (or is not at hand, as in `kiln simulate`), and spread across them when not."""
    if not profile.has_gpu:
        return None
    device = profile.gpu_memory_per_device_gib
    if requested is not None:
        return GpuUse(requested, f"gpuPlacement {requested.value}")
    if profile.gpus_per_instance == 1:
        return GpuUse(GpuPlacement.WORKER_PER_GPU, "one GPU per instance")
    if model_memory_gib is None:
        return GpuUse(GpuPlacement.WORKER_PER_GPU, "gpuPlacement unset, model size not known here")
    if model_memory_gib <= device:
        return GpuUse(GpuPlacement.WORKER_PER_GPU, f"the model needs ~{model_memory_gib:.1f} GiB, one {device:g} GiB GPU holds it")
    return GpuUse(GpuPlacement.SPREAD_ACROSS_GPUS,
                  f"the model needs ~{model_memory_gib:.1f} GiB, more than one {device:g} GiB GPU")


def workers_per_instance(instance: InstanceType, profile: ComputeProfile,
                         placement: GpuPlacement = GpuPlacement.WORKER_PER_GPU,
                         worker_memory_gib: float | None = None) -> int:
    """Workers one instance can run: memory-bound on CPU (capped by vCPUs), each worker given
    `worker_memory_gib` (measured) or the compute type's memory per concurrency (nominal); on
    GPU one per GPU, or one for the whole instance when the model is spread across its GPUs."""
    if profile.has_gpu:
        return 1 if placement is GpuPlacement.SPREAD_ACROSS_GPUS else instance.gpus
    per_worker = worker_memory_gib or profile.memory_per_concurrency_gib
    by_memory = math.floor(round((instance.memory_gib - OS_RESERVE_GIB) / per_worker, 9))
    return max(0, min(by_memory, instance.vcpus))


def size_on(instance: InstanceType, profile: ComputeProfile, concurrency: ConcurrencyRange,
            placement: GpuPlacement = GpuPlacement.WORKER_PER_GPU, worker_memory_gib: float | None = None) -> Sizing | None:
    workers = workers_per_instance(instance, profile, placement, worker_memory_gib)
    if workers == 0:
        return None
    return Sizing(
        instance=instance,
        workers_per_instance=workers,
        min_instances=math.ceil(concurrency.minimum / workers),
        max_instances=max(1, math.ceil(concurrency.maximum / workers)),
    )


def choose_sizing(profile: ComputeProfile, concurrency: ConcurrencyRange, instance_type: str | None = None,
                  placement: GpuPlacement = GpuPlacement.WORKER_PER_GPU, worker_memory_gib: float | None = None) -> Sizing:
    """The cheapest instance size that covers the range: by cost at max, then at min, then smaller."""
    candidates = [instance_type] if instance_type else list(profile.default_instances)
    sizings = [s for name in candidates
               if (s := size_on(INSTANCES[name], profile, concurrency, placement, worker_memory_gib))]
    if not sizings:
        raise ValueError(
            f"no instance among {', '.join(candidates)} fits one {profile.compute_type.value} worker "
            f"({worker_memory_gib or profile.memory_per_concurrency_gib:g} GiB + {OS_RESERVE_GIB:g} GiB reserve)"
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
    gpu: GpuUse | None = None
    # Set when the plan sized workers from the reload check's measurements (`sizing: measured`).
    measured: WorkerMeasurement | None = None
    # Requests one worker call may take (adaptive batching; 1: off).
    max_batch_size: int = 1

    @property
    def in_flight_per_worker(self) -> int:
        """Requests a fully used worker holds: one, or a full batch with batching on. The in-flight
        target scales with it, so a batching model is not scaled out for the queue its batches
        are made of. The requests-per-minute target stays the unbatched one: what a batch saves
        is known only once serving, and counting on it would scale out too late."""
        return self.max_batch_size

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
            self._workers_line(),
            f"instances {s.min_instances}-{s.max_instances} "
            f"(= ceil({self.concurrency.minimum}/{s.workers_per_instance})-ceil({self.concurrency.maximum}/{s.workers_per_instance}))",
            f"scaling target {self.target_requests_per_minute:g} requests/target/min "
            f"(= {s.workers_per_instance} × 1000/{self.latency_ms:g} ms × 60 × {self.target_utilization:g})",
            f"cost ${s.hourly_cost_min:.2f}-${s.hourly_cost_max:.2f}/h (= instances × ${s.instance.hourly_usd}/h)",
            *([f"batches of up to {self.max_batch_size}: in flight per fully used worker {self.in_flight_per_worker} "
               "(the requests target stays unbatched)"] if self.max_batch_size > 1 else []),
        ]


    def _workers_line(self) -> str:
        s = self.sizing
        if self.gpu is None and self.measured is not None:
            m = self.measured
            return (f"{s.instance.name}: {s.workers_per_instance} workers per instance (= min(floor(({s.instance.memory_gib:g} "
                    f"- {OS_RESERVE_GIB:g} GiB reserve) / {m.memory_gib:.2f} GiB measured per worker), {s.instance.vcpus} vCPUs); "
                    f"{m.memory_gib:.2f} GiB = {m.peak_gib:.2f} GiB peak × {1 + MEASURED_MEMORY_HEADROOM:g}, {m.source}")
        if self.gpu is None:
            return f"{s.instance.name}: {_workers(s.workers_per_instance)} per instance"
        gpus = s.instance.gpus
        device = s.instance.gpu_memory_per_device_gib
        if self.gpu.placement is GpuPlacement.SPREAD_ACROSS_GPUS:
            use = f"1 worker per instance with the model across its {gpus} GPUs ({gpus} × {device:g} = {s.instance.gpu_memory_gib:g} GiB)"
        else:
            use = f"{_workers(s.workers_per_instance)} per instance (one per GPU, {device:g} GiB each)"
        return f"{s.instance.name}: {gpus} GPU{'s' if gpus != 1 else ''}; {self.gpu.placement.value} ({self.gpu.reason}): {use}"


def _workers(count: int) -> str:
    return f"{count} worker{'' if count == 1 else 's'}"


def plan_capacity(served: ServedModel, model_memory_gib: float | None = None,
                  measured: WorkerMeasurement | None = None) -> CapacityPlan:
    """The capacity of one served model; its model's memory (files × factor + worker, from the
    bake) decides how a multi-GPU instance is used when the stack does not say. With `measured`
    (`sizing: measured`) a CPU worker gets its measured memory plus headroom instead of the
    compute type's nominal memory per concurrency, and the scaling target the measured latency;
    a worker that needs more than the compute type's memory per concurrency is refused."""
    profile = PROFILES[served.compute_type]
    worker_memory = None
    if measured is not None and not profile.has_gpu:
        worker_memory = measured.memory_gib
        if worker_memory > profile.memory_per_concurrency_gib:
            raise SizingError(
                f"a worker needs {worker_memory:.2f} GiB measured ({measured.peak_gib:.2f} GiB peak × "
                f"{1 + MEASURED_MEMORY_HEADROOM:g}, {measured.source}), {profile.compute_type.value} gives "
                f"{profile.memory_per_concurrency_gib:g} GiB per concurrency; choose a compute type with more memory per "
                "concurrency (CPU_LARGE: 16 GiB) or shrink the model")
    latency = (max(measured.latency_ms, MIN_MEASURED_LATENCY_MS) if measured is not None and measured.latency_ms is not None
               else served.expected_latency_ms or DEFAULT_LATENCY_MS)
    concurrency = requested_concurrency(served, latency if measured is not None else None)
    gpu = choose_gpu_placement(profile, served.gpu_placement, model_memory_gib)
    placement = gpu.placement if gpu else GpuPlacement.WORKER_PER_GPU
    sizing = choose_sizing(profile, concurrency, served.instance_type, placement, worker_memory)
    utilization = served.scaling.target_utilization
    return CapacityPlan(
        max_batch_size=served.max_batch_size or (DEFAULT_GPU_BATCH_SIZE if profile.has_gpu else 1),
        concurrency=concurrency,
        sizing=sizing,
        latency_ms=latency,
        target_requests_per_minute=requests_per_target_per_minute(sizing.workers_per_instance, latency, utilization),
        target_utilization=utilization,
        gpu=gpu,
        measured=measured,
    )

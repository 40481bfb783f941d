"""The policies the simulator compares, and the timings they run on.

Every timing below is either read from a source (given) or an estimate (marked ESTIMATE,
with the reasoning). docs/scaling.md repeats them in one table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from infra.plan.catalog import HEALTH_CHECK_INTERVAL_SECONDS, HEALTHY_THRESHOLD, HOURS_PER_MONTH
from infra.plan.scaling import ALB_METRIC_PERIOD_SECONDS, SCALE_IN_FRACTION
from infra.plan.stack import ServedModelPlan
from runtime.contract import HIGH_RESOLUTION_PERIOD_SECONDS

# --- instance ready times, per accelerator -------------------------------------------------
# ESTIMATE: EC2 RunInstances to a booted OS with Docker: ~40 s for Amazon Linux 2023 on
# c7i, ~90 s for the Deep Learning GPU AMI (larger AMI, NVIDIA driver init). AWS publishes
# no launch-time SLA.
CPU_BOOT_SECONDS = 40
GPU_BOOT_SECONDS = 90
# ESTIMATE: pulling the environment image from ECR in-region: ~1.5 GB CPU image ≈ 30 s,
# ~8 GB CUDA image ≈ 120 s (pull plus layer extraction; extraction dominates).
CPU_IMAGE_PULL_SECONDS = 30
GPU_IMAGE_PULL_SECONDS = 120
# ESTIMATE: model download by digest + load + warm-up prediction (readiness,
# docs/decisions.md, decision 4): small CPU models ~15 s, GPU models (weights to GPU memory) ~60 s.
CPU_MODEL_LOAD_SECONDS = 15
GPU_MODEL_LOAD_SECONDS = 60
# ESTIMATE: StartInstances on a Stopped warm-pool instance to a booted OS: ~20 s CPU,
# ~45 s GPU; the image and model are already on disk, so only the load remains.
CPU_WARM_START_SECONDS = 20
GPU_WARM_START_SECONDS = 45

# --- metric lags ----------------------------------------------------------------------------
# ESTIMATE: ALB metrics reach CloudWatch about a minute after their 1-minute period ends
# (AWS documents "every 60 seconds" publication, not the delay).
ALB_METRIC_LAG_SECONDS = 60
# ESTIMATE: a 10 s custom metric is readable a few seconds after PutMetricData; the
# runtime publishes at the end of each period.
HIGH_RESOLUTION_LAG_SECONDS = 10
# The alarms EC2 Auto Scaling creates for target tracking: scale-out after 3 breaching
# data points (observed in the alarms AWS creates: 3 of 3 for 1-minute metrics; the same
# count is assumed for 10 s metrics, per docs.aws.amazon.com/autoscaling/ec2/userguide/
# policy-creating-high-resolution-metrics.html "respond ... more quickly").
SCALE_OUT_DATAPOINTS = 3
# ESTIMATE: the activator's Lambda invocation plus SetDesiredCapacity, ~1 s.
ACTIVATOR_REACTION_SECONDS = 1

# --- Databricks' stated behaviour (serving-anchors.md 1.2) -------------------------------
# "Scale-up happens almost immediately": modelled as 0 s detection (idealised).
DATABRICKS_DETECTION_SECONDS = 0
# "Scale-down happens every 5 minutes."
DATABRICKS_SCALE_DOWN_SECONDS = 300
# "Goes to zero after 30 minutes without traffic."
DATABRICKS_IDLE_SECONDS = 30 * 60
# "Cold start is usually 10-20 s but can take minutes": the upper typical value.
DATABRICKS_COLD_START_SECONDS = 20

# The Kiln runtime queues up to one request per worker beyond the ones it runs
# (KILN_QUEUE_SIZE defaults to the worker count); past that it answers 503.
QUEUE_PER_WORKER = 1
# gp3 storage, us-east-1: $0.08 per GB-month (aws.amazon.com/ebs/pricing), 730 h a month.
GP3_USD_PER_GB_MONTH = 0.08
# ESTIMATE: requests the activator can hold at once (the default Lambda concurrency quota
# is 1,000 per account and region; Kiln leaves room for the account's other functions).
ACTIVATOR_HOLD_LIMIT = 500


@dataclass(frozen=True)
class Signal:
    """One scale-out metric: what it measures, how often, how late, and the target."""

    kind: str  # "in_flight" (per instance) or "requests_per_minute" (per target)
    period_seconds: int
    lag_seconds: int
    datapoints: int
    target: float


@dataclass(frozen=True)
class SimPolicy:
    """Everything the model needs to replay one served model under one scaling policy."""

    name: str
    label: str
    workers_per_instance: int
    latency_seconds: float
    min_instances: int
    max_instances: int
    hourly_usd: float
    target_utilization: float
    signals: tuple[Signal, ...]
    # Kiln-style scale-in: one instance per window after a whole window below the threshold.
    scale_in_window_seconds: int
    scale_in_threshold_rpm: float
    # Databricks-style scale-in: every period, straight to the needed capacity.
    scale_down_every_seconds: int | None
    detection_seconds: int | None  # idealised immediate scale-out (Databricks), else None
    scale_to_zero: bool
    idle_seconds: int
    hold_at_zero: bool  # requests wait for a wake (activator) instead of failing
    wake_reaction_seconds: int
    ready_seconds: int  # launch to serving
    warm_ready_seconds: int  # warm-pool start to serving
    cold_start_seconds: int | None  # overrides ready time from zero (Databricks' stated value)
    warm_pool_size: int
    warm_pool_hourly_usd: float  # per stopped instance: its EBS volume
    request_timeout_seconds: int

    @property
    def floor(self) -> int:
        return max(self.min_instances, 1)


def ready_seconds(plan: ServedModelPlan) -> int:
    """Launch to first request: boot, image pull, model load, then the ALB's health checks."""
    gpu = plan.profile.has_gpu
    return (
        (GPU_BOOT_SECONDS if gpu else CPU_BOOT_SECONDS)
        + (GPU_IMAGE_PULL_SECONDS if gpu else CPU_IMAGE_PULL_SECONDS)
        + (GPU_MODEL_LOAD_SECONDS if gpu else CPU_MODEL_LOAD_SECONDS)
        + HEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL_SECONDS
    )


def warm_ready_seconds(plan: ServedModelPlan) -> int:
    """Warm pool start to first request: start a stopped instance, load the model from disk, health checks."""
    gpu = plan.profile.has_gpu
    return (
        (GPU_WARM_START_SECONDS if gpu else CPU_WARM_START_SECONDS)
        + (GPU_MODEL_LOAD_SECONDS if gpu else CPU_MODEL_LOAD_SECONDS)
        + HEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL_SECONDS
    )


def stack_policy(plan: ServedModelPlan) -> SimPolicy:
    """The stack's own settings, as the components deploy them."""
    scaling = plan.scaling
    alb = Signal(
        "requests_per_minute", ALB_METRIC_PERIOD_SECONDS, ALB_METRIC_LAG_SECONDS, SCALE_OUT_DATAPOINTS,
        scaling.alb_target_requests_per_minute,
    )
    in_flight = Signal(
        "in_flight", HIGH_RESOLUTION_PERIOD_SECONDS, HIGH_RESOLUTION_LAG_SECONDS, SCALE_OUT_DATAPOINTS,
        scaling.in_flight_target,
    )
    warm = scaling.warm_pool
    return SimPolicy(
        name="stack",
        label="this stack" + (" (ALB + 10 s in-flight)" if scaling.high_resolution_metric else " (ALB only)"),
        workers_per_instance=scaling.workers_per_instance,
        latency_seconds=plan.capacity.latency_ms / 1000,
        min_instances=scaling.min_instances,
        max_instances=scaling.max_instances,
        hourly_usd=plan.capacity.sizing.instance.hourly_usd,
        target_utilization=scaling.target_utilization,
        signals=(alb, in_flight) if scaling.high_resolution_metric else (alb,),
        scale_in_window_seconds=scaling.scale_in_cooldown_seconds,
        scale_in_threshold_rpm=scaling.alb_target_requests_per_minute * SCALE_IN_FRACTION,
        scale_down_every_seconds=None,
        detection_seconds=None,
        scale_to_zero=scaling.scale_to_zero,
        # The idle alarm needs idle minutes of 1-minute ALB data, which arrive a lag late.
        idle_seconds=scaling.idle_minutes_before_zero * 60 + ALB_METRIC_LAG_SECONDS,
        hold_at_zero=True,
        wake_reaction_seconds=ACTIVATOR_REACTION_SECONDS,
        ready_seconds=ready_seconds(plan),
        warm_ready_seconds=warm_ready_seconds(plan),
        cold_start_seconds=None,
        warm_pool_size=warm.min_size if warm else 0,
        warm_pool_hourly_usd=plan.profile.root_volume_gib * GP3_USD_PER_GB_MONTH / HOURS_PER_MONTH,
        request_timeout_seconds=plan.request_timeout_seconds,
    )


def alb_only_policy(plan: ServedModelPlan) -> SimPolicy:
    """The same stack, scaling out on the 1-minute ALB request count alone."""
    policy = stack_policy(plan)
    return replace(policy, name="alb-only", label="ALB request count only", signals=policy.signals[:1])


def databricks_policy(plan: ServedModelPlan) -> SimPolicy:
    """Databricks' stated behaviour on the same hardware numbers (idealised where it says 'almost')."""
    policy = stack_policy(plan)
    return replace(
        policy,
        name="databricks",
        label="Databricks (stated)",
        signals=(),
        scale_in_window_seconds=0,
        scale_down_every_seconds=DATABRICKS_SCALE_DOWN_SECONDS,
        detection_seconds=DATABRICKS_DETECTION_SECONDS,
        idle_seconds=DATABRICKS_IDLE_SECONDS,
        wake_reaction_seconds=0,
        cold_start_seconds=DATABRICKS_COLD_START_SECONDS,
        warm_pool_size=0,
    )


def policies_for(plan: ServedModelPlan) -> list[SimPolicy]:
    return [stack_policy(plan), alb_only_policy(plan), databricks_policy(plan)]

"""How long a new instance takes to serve, as planned: the one place the ready time comes from.

The autoscaling group's instance warm-up, the launch hook's and instance refresh's timings and
the simulator's launches all derive from these numbers, so a change here moves them together.
AWS publishes no launch-time figure, so most of them are estimates: each carries a low and a
high bound besides the value Kiln plans with, and `kiln simulate` shows what the bounds do.
Sources, where there are any, are named on the number and collected in docs/sources.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.plan.catalog import (
    GP3_BASELINE_MIB_PER_SECOND,
    HEALTH_CHECK_INTERVAL_SECONDS,
    HEALTHY_THRESHOLD,
    ComputeProfile,
    gp3_hourly_usd,
)
from runtime.contract import HIGH_RESOLUTION_PERIOD_SECONDS

MIB_PER_GIB = 1024


@dataclass(frozen=True)
class Timing:
    """A number the plan or the simulator relies on, with where it comes from.

    `source` is a public URL, a setting of this plan, or "estimate"; an estimate has a range
    (low-high) and the value is the planned one within it."""

    value: float
    source: str
    low: float | None = None
    high: float | None = None

    @property
    def estimate(self) -> bool:
        return self.source == "estimate"

    def at(self, bound: str) -> float:
        """The value at a bound: "low", "planned" or "high" (a sourced number has only one)."""
        if bound == "planned" or not self.estimate:
            return self.value
        return {"low": self.low, "high": self.high}[bound]  # type: ignore[return-value]

    def describe(self, unit: str = "s") -> str:
        value = f"{self.value:g} {unit}".rstrip()
        if self.estimate:
            return f"{value} (estimate, {self.low:g}-{self.high:g})"
        return f"{value} ({self.source})"


ESTIMATE = "estimate"
BOUNDS = ("low", "planned", "high")

# EC2 RunInstances to a booted OS with Docker: Amazon Linux 2023 on c7i, and the Deep Learning
# GPU AMI (larger AMI, NVIDIA driver initialisation). AWS publishes no launch-time figure.
CPU_BOOT = Timing(40, ESTIMATE, 30, 70)
GPU_BOOT = Timing(90, ESTIMATE, 60, 180)
# Uncompressed environment image on the instance's disk: python slim + requirements + runtime
# (CPU), a CUDA runtime + a framework with CUDA kernels (GPU); models/estimates.py estimates it
# per model at bake time, these are the sizes the plan assumes before any bake.
CPU_IMAGE_GIB = Timing(1.5, ESTIMATE, 0.5, 4)
GPU_IMAGE_GIB = Timing(10, ESTIMATE, 6, 20)
# How fast `docker pull` from ECR in-region lands layers on disk when the disk is not the limit
# (download and decompression overlap; decompression of gzip layers dominates).
IMAGE_UNPACK_MIB_PER_SECOND = Timing(200, ESTIMATE, 100, 400)
# gp3: GP3_BASELINE_MIB_PER_SECOND, provisionable up to 1,000 MiB/s at 0.25 MiB/s per
# provisioned IOPS (3,000 IOPS baseline: up to 750 MiB/s without more IOPS)
# (https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html#gp3-ebs-volume-type).
GP3_MAX_MIB_PER_SECOND_AT_BASELINE_IOPS = 750
# A GPU group's root volume gets enough throughput to write its image in about this long.
IMAGE_WRITE_GOAL_SECONDS = 30
# Model download by digest + load + the warm-up prediction (readiness, decision 4).
CPU_MODEL_LOAD = Timing(15, ESTIMATE, 5, 60)
GPU_MODEL_LOAD = Timing(60, ESTIMATE, 20, 300)
# StartInstances on a stopped warm-pool instance to a booted OS (image and model already on disk).
CPU_WARM_START = Timing(20, ESTIMATE, 15, 40)
GPU_WARM_START = Timing(45, ESTIMATE, 30, 90)
# The target group takes a new target after HEALTHY_THRESHOLD passing checks INTERVAL apart
# (this plan's own health-check settings, infra/plan/catalog.py).
HEALTH_CHECKS = Timing(HEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL_SECONDS, "the target group's health check settings")


def root_volume_throughput_mib(profile: ComputeProfile) -> int | None:
    """gp3 throughput for the root volume: None (the 125 MiB/s baseline) on CPU; on GPU enough to
    write the planned image in IMAGE_WRITE_GOAL_SECONDS, within what baseline IOPS allow. A
    multi-GB image at 125 MiB/s spends over a minute on disk writes alone."""
    if not profile.has_gpu:
        return None
    wanted = math.ceil(GPU_IMAGE_GIB.value * MIB_PER_GIB / IMAGE_WRITE_GOAL_SECONDS / 25) * 25
    return max(GP3_BASELINE_MIB_PER_SECOND, min(wanted, GP3_MAX_MIB_PER_SECOND_AT_BASELINE_IOPS))


def root_volume_hourly_usd(profile: ComputeProfile) -> float:
    """What one instance's root volume costs an hour: all a stopped warm-pool instance costs."""
    return gp3_hourly_usd(profile.root_volume_gib, root_volume_throughput_mib(profile))


def image_pull_seconds(profile: ComputeProfile, bound: str = "planned") -> float:
    """The image's size over the slower of unpacking and the root volume's throughput."""
    size = (GPU_IMAGE_GIB if profile.has_gpu else CPU_IMAGE_GIB).at(bound) * MIB_PER_GIB
    disk = root_volume_throughput_mib(profile) or GP3_BASELINE_MIB_PER_SECOND
    return size / min(IMAGE_UNPACK_MIB_PER_SECOND.at(_opposite(bound)), disk)


def until_runtime_ready_seconds(profile: ComputeProfile, bound: str = "planned") -> int:
    """Launch to a runtime answering /ping: boot, image pull, model load. The launch hook holds
    the instance in Pending:Wait for this long, so AWS sees it InService only at its end."""
    gpu = profile.has_gpu
    return math.ceil((GPU_BOOT if gpu else CPU_BOOT).at(bound) + image_pull_seconds(profile, bound)
                     + (GPU_MODEL_LOAD if gpu else CPU_MODEL_LOAD).at(bound))


def ready_seconds(profile: ComputeProfile, bound: str = "planned") -> int:
    """Launch to the first request: the runtime is ready, then the ALB's health checks pass."""
    return until_runtime_ready_seconds(profile, bound) + int(HEALTH_CHECKS.value)


def warm_ready_seconds(profile: ComputeProfile, bound: str = "planned") -> int:
    """Warm-pool start to the first request: start a stopped instance, load the model from disk,
    health checks (nothing to pull)."""
    gpu = profile.has_gpu
    return math.ceil((GPU_WARM_START if gpu else CPU_WARM_START).at(bound)
                     + (GPU_MODEL_LOAD if gpu else CPU_MODEL_LOAD).at(bound) + HEALTH_CHECKS.value)


def instance_warmup_seconds() -> int:
    """The group's default instance warm-up (also the instance refresh's and the policies').

    AWS starts the warm-up when an instance reaches InService
    (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-default-instance-warmup.html),
    and Kiln's launch hook keeps an instance out of InService until its runtime answers /ping. What
    is left of the planned ready time after InService is the ALB's health checks; one in-flight
    metric period more and the instance's first data point covers real traffic. Longer would
    delay scale-out decisions and block scale-in for nothing; shorter would average in an
    instance the ALB does not send requests to yet."""
    return int(HEALTH_CHECKS.value) + HIGH_RESOLUTION_PERIOD_SECONDS


def _opposite(bound: str) -> str:
    """A fast unpack rate is the optimistic (low-time) end, so its bound is mirrored."""
    return {"low": "high", "high": "low"}.get(bound, bound)

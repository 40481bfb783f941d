"""The compute catalog: Databricks compute types and the EC2 instance types that back them.

Prices are approximate Linux on-demand rates in us-east-1, read from the AWS EC2 on-demand
pricing page (https://aws.amazon.com/ec2/pricing/on-demand/) and cross-checked for g5.xlarge
($1.006/h) against factualminds.com, "Amazon EC2 On-Demand Pricing ... (2026)", 2026-06-17.
Other regions differ (roughly 0.85x-1.4x); the plan labels every cost with PRICES_AS_OF.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

PRICES_AS_OF = "2026-06 us-east-1 Linux on-demand (aws.amazon.com/ec2/pricing/on-demand)"
# The month of the AWS pricing pages, for monthly costs.
HOURS_PER_MONTH = 730
# AWS PrivateLink, us-east-1: an interface VPC endpoint is billed $0.01 per hour in each
# Availability Zone it has a network interface in; a gateway endpoint costs nothing
# (https://aws.amazon.com/privatelink/pricing/, docs/sources.md). Data processed ($0.01/GB)
# depends on traffic and is left out, like the NAT gateway's it replaces.
INTERFACE_ENDPOINT_AZ_HOURLY_USD = 0.01
# gp3 EBS, us-east-1 (https://aws.amazon.com/ebs/pricing/): storage per GB-month, and throughput
# provisioned above the 125 MiB/s baseline per MiB/s-month. What a stopped warm-pool instance
# costs; a running instance's volume is left out of the plan's cost like its data transfer.
GP3_USD_PER_GB_MONTH = 0.08
GP3_USD_PER_MIBPS_MONTH = 0.04
# The baseline throughput every gp3 volume gets
# (https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html#gp3-ebs-volume-type).
GP3_BASELINE_MIB_PER_SECOND = 125


def gp3_hourly_usd(gib: float, throughput_mib: float | None = None) -> float:
    """One gp3 volume per hour: its size, plus any throughput above the free baseline."""
    provisioned = max((throughput_mib or GP3_BASELINE_MIB_PER_SECOND) - GP3_BASELINE_MIB_PER_SECOND, 0)
    return (gib * GP3_USD_PER_GB_MONTH + provisioned * GP3_USD_PER_MIBPS_MONTH) / HOURS_PER_MONTH

# Databricks' own deployment window: the image build timeout unless the stack sets one
# (CodeBuild accepts 5-2160 minutes), and the most the policy pack allows unless configured.
DEFAULT_BUILD_TIMEOUT_MINUTES = 60

# What the OS, Docker and the Kiln runtime's parent process keep for themselves on every
# instance, before model workers are counted.
OS_RESERVE_GIB = 2.0

# Time from launch to a ready runtime before the ASG trusts ELB health checks (and the
# image's HEALTHCHECK start period) = the time before the model load starts (instance boot,
# image pull, model fetch; GPU images carry CUDA and are several GB larger) + the runtime's
# own limit on loading and warming up (KILN_LOAD_TIMEOUT_SECONDS, which the plan sets from
# here). One is derived from the other so the ASG never replaces an instance whose runtime
# is still allowed to be loading: a GPU grace of 900 s against a load limit of 1800 s did.
CPU_START_SECONDS = 120
GPU_START_SECONDS = 300
CPU_MODEL_LOAD_TIMEOUT_SECONDS = 180
# Large GPU models (up to GPU_MEDIUM_8's 192 GiB) are read from disk and copied to the devices.
GPU_MODEL_LOAD_TIMEOUT_SECONDS = 1800


# The target group's health check on the runtime's readiness path: a new instance takes
# traffic after HEALTHY_THRESHOLD passes in a row, leaves after UNHEALTHY_THRESHOLD fails.
HEALTH_CHECK_INTERVAL_SECONDS = 10
HEALTH_CHECK_TIMEOUT_SECONDS = 5
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 3
# Every log group Kiln creates (runtime containers, image builds, the activator).
LOG_RETENTION_DAYS = 30


def model_load_timeout_seconds(gpu: bool) -> int:
    """How long the runtime's workers may take to load and warm up the model on an instance."""
    return GPU_MODEL_LOAD_TIMEOUT_SECONDS if gpu else CPU_MODEL_LOAD_TIMEOUT_SECONDS


def health_check_grace_seconds(gpu: bool) -> int:
    """Launch to ready: the start before the load, then the runtime's whole load timeout."""
    return (GPU_START_SECONDS if gpu else CPU_START_SECONDS) + model_load_timeout_seconds(gpu)


class ComputeType(str, Enum):
    CPU_MEDIUM = "CPU_MEDIUM"
    CPU_LARGE = "CPU_LARGE"
    GPU_SMALL = "GPU_SMALL"
    GPU_MEDIUM = "GPU_MEDIUM"
    MULTIGPU_MEDIUM = "MULTIGPU_MEDIUM"
    GPU_MEDIUM_8 = "GPU_MEDIUM_8"


class GpuPlacement(str, Enum):
    """How a served model uses an instance with several GPUs (the stack key gpuPlacement)."""

    # One worker per GPU, each seeing only its own device: for a model that fits one device.
    WORKER_PER_GPU = "workerPerGpu"
    # One worker whose model is spread across every GPU (MLflow's Transformers device map):
    # for a model larger than one device's memory.
    SPREAD_ACROSS_GPUS = "spreadAcrossGpus"


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_memory_gib: float
    hourly_usd: float

    @property
    def gpu_memory_per_device_gib(self) -> float:
        """One GPU's memory: what a model on one device (MLflow's default) can use."""
        return self.gpu_memory_gib / self.gpus if self.gpus else 0.0


@dataclass(frozen=True)
class ComputeProfile:
    """How one compute type maps onto EC2."""

    compute_type: ComputeType
    memory_per_concurrency_gib: float
    allowed_instances: tuple[str, ...]
    default_instances: tuple[str, ...]
    root_volume_gib: int

    @property
    def has_gpu(self) -> bool:
        return self.compute_type.value.startswith(("GPU", "MULTIGPU"))

    @property
    def health_check_grace_seconds(self) -> int:
        return health_check_grace_seconds(self.has_gpu)

    @property
    def model_load_timeout_seconds(self) -> int:
        return model_load_timeout_seconds(self.has_gpu)

    @property
    def gpu_instance(self) -> InstanceType:
        """The default instance, whose GPUs every allowed instance of the profile shares (same
        count, same device), so GPU arithmetic needs no particular size."""
        return INSTANCES[self.default_instances[0]]

    @property
    def gpus_per_instance(self) -> int:
        return self.gpu_instance.gpus

    @property
    def gpu_memory_per_device_gib(self) -> float:
        return self.gpu_instance.gpu_memory_per_device_gib


def _instances(*rows: tuple[str, int, float, int, float, float]) -> dict[str, InstanceType]:
    return {row[0]: InstanceType(*row) for row in rows}


INSTANCES: dict[str, InstanceType] = _instances(
    # name, vCPU, memory GiB, GPUs, GPU memory GiB (total), USD/hour
    ("c7i.large", 2, 4, 0, 0, 0.08925),
    ("c7i.xlarge", 4, 8, 0, 0, 0.1785),
    ("c7i.2xlarge", 8, 16, 0, 0, 0.357),
    ("c7i.4xlarge", 16, 32, 0, 0, 0.714),
    ("c7i.8xlarge", 32, 64, 0, 0, 1.428),
    ("c7i.12xlarge", 48, 96, 0, 0, 2.142),
    ("c7i.16xlarge", 64, 128, 0, 0, 2.856),
    ("c7i.24xlarge", 96, 192, 0, 0, 4.284),
    ("c6i.large", 2, 4, 0, 0, 0.085),
    ("c6i.xlarge", 4, 8, 0, 0, 0.17),
    ("c6i.2xlarge", 8, 16, 0, 0, 0.34),
    ("c6i.4xlarge", 16, 32, 0, 0, 0.68),
    ("c6i.8xlarge", 32, 64, 0, 0, 1.36),
    ("c6i.12xlarge", 48, 96, 0, 0, 2.04),
    ("c6i.16xlarge", 64, 128, 0, 0, 2.72),
    ("c6i.24xlarge", 96, 192, 0, 0, 4.08),
    ("g4dn.xlarge", 4, 16, 1, 16, 0.526),
    ("g4dn.2xlarge", 8, 32, 1, 16, 0.752),
    ("g5.xlarge", 4, 16, 1, 24, 1.006),
    ("g5.2xlarge", 8, 32, 1, 24, 1.212),
    ("g5.12xlarge", 48, 192, 4, 96, 5.672),
    ("g5.48xlarge", 192, 768, 8, 192, 16.288),
)

_C7I = tuple(name for name in INSTANCES if name.startswith("c7i."))
_CPU_ALLOWED = _C7I + tuple(name for name in INSTANCES if name.startswith("c6i."))

PROFILES: dict[ComputeType, ComputeProfile] = {
    profile.compute_type: profile
    for profile in (
        ComputeProfile(ComputeType.CPU_MEDIUM, 8, _CPU_ALLOWED, _C7I, 30),
        ComputeProfile(ComputeType.CPU_LARGE, 16, _CPU_ALLOWED, _C7I, 30),
        ComputeProfile(ComputeType.GPU_SMALL, 16, ("g4dn.xlarge", "g4dn.2xlarge"), ("g4dn.xlarge",), 100),
        ComputeProfile(ComputeType.GPU_MEDIUM, 24, ("g5.xlarge", "g5.2xlarge"), ("g5.xlarge",), 100),
        ComputeProfile(ComputeType.MULTIGPU_MEDIUM, 96, ("g5.12xlarge",), ("g5.12xlarge",), 200),
        ComputeProfile(ComputeType.GPU_MEDIUM_8, 192, ("g5.48xlarge",), ("g5.48xlarge",), 300),
    )
}

# Public SSM parameters that always name the current AMI. CPU: Amazon Linux 2023 (Docker
# is installed by user-data). GPU: the Deep Learning Base OSS Nvidia Driver AMI, which
# ships the NVIDIA driver, Docker and the NVIDIA container toolkit. A stack pins the ids they
# name in `kiln:amis` (`kiln amis STACK` reads them): an id read at every `pulumi up` would
# change the launch templates, and so roll every group, whenever AWS publishes a new AMI.
CPU_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
GPU_AMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
)
# The NVIDIA driver on that AMI, from its release notes: "Deep Learning Base OSS Nvidia Driver GPU
# AMI (Amazon Linux 2023) 20260901" lists nvidia_driver 595.91.07 and NVIDIA container toolkit
# 1.20.0 (https://docs.aws.amazon.com/dlami/latest/devguide/aws-deep-learning-ami-gpubaseoss-al2023-2026-09-04.html).
# The parameter follows the latest release, whose driver only moves forward; the packaging checks
# compare it with the CUDA a model's resolved packages carry (models/checks.py, gpu-driver-too-old).
GPU_AMI_NVIDIA_DRIVER = "595.91.07"

# `kiln:amis` keys: one AMI per compute class.
AMI_PARAMETERS = {"cpu": CPU_AMI_PARAMETER, "gpu": GPU_AMI_PARAMETER}


def ami_class(profile: ComputeProfile) -> str:
    return "gpu" if profile.has_gpu else "cpu"


def ami_parameter(profile: ComputeProfile) -> str:
    return AMI_PARAMETERS[ami_class(profile)]

"""Size and time estimates for an environment image, made before anything is built.

Why estimates at all: a CodeBuild run that fills its disk, or an instance whose root volume
cannot hold the pulled and extracted image, fails 20-60 minutes into a deployment. These
numbers let the packaging checks fail in seconds instead, with the arithmetic shown.

They are deliberately rough and on the high side. Every constant says where it comes from;
"estimate" means no measurement was possible from this machine (no Docker, no AWS), and
docs/bake.md lists them as the first thing to calibrate against a real CodeBuild run.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.manifest import requirement_name

GIB = 1024**3
MIB = 1024**2

# Installed (uncompressed) size in MiB of packages that dominate image size. Estimates from
# PyPI manylinux wheel sizes × ~2.5 for unpacking, rounded up. torch's default Linux wheel
# pulls the nvidia-* CUDA wheels (cuBLAS, cuDNN, NCCL…), which are most of its size; a
# `+cpu` build from download.pytorch.org/whl/cpu is a tenth of it.
PACKAGE_MIB: dict[str, int] = {
    "torch": 6500,
    "torch+cpu": 800,
    "tensorflow": 2000,
    "tensorflow-cpu": 1300,
    "jax": 300,
    "jaxlib": 350,
    "vllm": 1200,
    "xgboost": 350,
    "catboost": 300,
    "lightgbm": 15,
    "transformers": 100,
    "tokenizers": 15,
    "sentence-transformers": 5,
    "onnxruntime": 60,
    "onnxruntime-gpu": 600,
    "opencv-python": 200,
    "scikit-learn": 45,
    "scipy": 110,
    "numpy": 40,
    "pandas": 70,
    "pyarrow": 130,
    "matplotlib": 40,
    "skops": 5,
    # mlflow (not mlflow-skinny) also installs flask, sqlalchemy, alembic, graphene, docker…
    "mlflow": 350,
    "mlflow-skinny": 40,
}
# A package not in the table: most pure-Python wheels are well under this.
UNKNOWN_PACKAGE_MIB = 20

# Uncompressed base image sizes (GiB). python:3.x-slim-bookworm is ~125-150 MB on Docker
# Hub (the base of CPU images and of GPU images whose framework brings its own CUDA); the
# CUDA cuDNN runtime images are ~3.5-4 GB uncompressed (nvcr.io / Docker Hub tag pages), plus
# a standalone Python (~0.1 GiB) installed on top. The tag pages are in docs/sources.md
# ("Base image sizes").
PYTHON_BASE_GIB = 0.15
CUDA_BASE_GIB = 4.1
# The Kiln runtime and its own requirements (starlette, uvicorn, boto3, mlflow-skinny).
RUNTIME_GIB = 0.15

# Registry layers are gzip-compressed; Python wheels and CUDA libraries compress to about
# 40-50 % (estimate). During `docker pull` a compressed layer and its extracted copy
# coexist on disk until the layer is unpacked.
COMPRESSION_RATIO = 0.45
# Disk the AMI itself occupies on the root volume before any image (estimate: AL2023 with
# Docker is ~3 GiB; the Deep Learning Base GPU AMI ships drivers, CUDA and toolkits).
CPU_AMI_USED_GIB = 4.0
GPU_AMI_USED_GIB = 30.0
# Container logs, /tmp and the runtime's scratch space.
INSTANCE_HEADROOM_GIB = 2.0
# The builder holds the base image, downloaded wheels, the installed layer and the layer
# snapshot Docker exports from it (≈ 2 × installed), plus the compressed push copy.
BUILDER_DEPS_FACTOR = 2.5
BUILDER_HEADROOM_GIB = 5.0

# CodeBuild on-demand LINUX_CONTAINER compute types and their disk (GB), from the CodeBuild
# user guide, "Build environment compute modes and types" (build-env-ref-compute-types),
# on-demand table. Ordered smallest first: the cheapest that fits is chosen.
CODEBUILD_DISK_GB: dict[str, int] = {
    "BUILD_GENERAL1_SMALL": 64,
    "BUILD_GENERAL1_MEDIUM": 128,
    "BUILD_GENERAL1_LARGE": 128,
    "BUILD_GENERAL1_XLARGE": 256,
    "BUILD_GENERAL1_2XLARGE": 824,
}
# Docker builds of multi-GB CUDA images are CPU- and memory-hungry; MEDIUM (8 GiB, 4 vCPU)
# is the smallest type we start from so pip's resolver and layer compression do not swap.
MIN_CODEBUILD_COMPUTE = "BUILD_GENERAL1_MEDIUM"

# Build time model (estimate): CodeBuild queue + provisioning of a privileged container
# (typically 1-2 min), base pull at ~100 MiB/s, pip download + install at ~25 MiB/s of
# installed size, layer export + compressed push at ~40 MiB/s of image size.
BUILD_PROVISION_MINUTES = 2.0
PULL_MIB_PER_SECOND = 100.0
INSTALL_MIB_PER_SECOND = 25.0
PUSH_MIB_PER_SECOND = 40.0


@dataclass(frozen=True)
class ImageEstimate:
    """The numbers behind the disk and build-time checks, all in GiB or minutes."""

    base_gib: float
    dependencies_gib: float
    runtime_gib: float
    model_gib: float
    builder_compute_type: str | None
    builder_needs_gib: float
    builder_disk_gib: float
    instance_needs_gib: float
    build_minutes: float
    # True when dependencies_gib is the reload check's virtualenv as installed (the model's and
    # the runtime's requirements, which is what the image's Python layer holds), not the table.
    measured: bool = False

    @property
    def image_gib(self) -> float:
        return self.base_gib + self.dependencies_gib + self.runtime_gib

    def breakdown(self) -> str:
        if self.measured:
            return (
                f"image ~{self.image_gib:.1f} GiB = base {self.base_gib:.1f} + installed requirements "
                f"{self.dependencies_gib:.2f} (measured in the reload check's virtualenv); model {self.model_gib:.2f} GiB"
            )
        return (
            f"image ~{self.image_gib:.1f} GiB = base {self.base_gib:.1f} + dependencies {self.dependencies_gib:.1f}"
            f" + runtime {self.runtime_gib:.2f}; model {self.model_gib:.2f} GiB"
        )


def is_cpu_only_torch(requirement: str) -> bool:
    """`torch==2.4.0+cpu` (or a --index-url to the CPU wheel index) installs no CUDA libraries."""
    return requirement_name(requirement) == "torch" and "+cpu" in requirement


def package_mib(requirement: str) -> int:
    name = requirement_name(requirement)
    if is_cpu_only_torch(requirement):
        return PACKAGE_MIB["torch+cpu"]
    return PACKAGE_MIB.get(name, UNKNOWN_PACKAGE_MIB)


def dependencies_gib(requirements: tuple[str, ...]) -> float:
    """Sum over declared requirements; pip options (`--index-url …`) are not packages."""
    return sum(package_mib(r) for r in requirements if not r.startswith("-")) / 1024


def codebuild_compute_type(needs_gib: float) -> tuple[str | None, float]:
    """The smallest compute type (from MEDIUM) whose disk holds the build, and that disk in GiB."""
    names = list(CODEBUILD_DISK_GB)
    for name in names[names.index(MIN_CODEBUILD_COMPUTE):]:
        disk_gib = CODEBUILD_DISK_GB[name] * 1e9 / GIB
        if needs_gib <= disk_gib:
            return name, disk_gib
    return None, CODEBUILD_DISK_GB[names[-1]] * 1e9 / GIB


def estimate_image(requirements: tuple[str, ...], model_bytes: int, gpu: bool, system_cuda: bool,
                   installed_bytes: int | None = None) -> ImageEstimate:
    """`gpu`: served on a GPU instance (its AMI); `system_cuda`: the image starts from a CUDA base.
    With `installed_bytes` (the reload check's virtualenv, holding the model's and the runtime's
    requirements as pip installed them) that measurement replaces the package table and RUNTIME_GIB."""
    base = CUDA_BASE_GIB if system_cuda else PYTHON_BASE_GIB
    measured = installed_bytes is not None
    deps = installed_bytes / GIB if installed_bytes is not None else dependencies_gib(requirements)
    runtime = 0.0 if measured else RUNTIME_GIB
    model = model_bytes / GIB
    image = base + deps + runtime
    builder_needs = base + deps * BUILDER_DEPS_FACTOR + image * COMPRESSION_RATIO + BUILDER_HEADROOM_GIB
    compute, disk = codebuild_compute_type(builder_needs)
    ami = GPU_AMI_USED_GIB if gpu else CPU_AMI_USED_GIB
    # Pull: compressed layers + extracted image; the model is downloaded and verified once.
    instance_needs = ami + image * (1 + COMPRESSION_RATIO) + model + INSTANCE_HEADROOM_GIB
    seconds = (
        base * 1024 / PULL_MIB_PER_SECOND
        + deps * 1024 / INSTALL_MIB_PER_SECOND
        + image * 1024 / PUSH_MIB_PER_SECOND
    )
    return ImageEstimate(
        base_gib=base,
        dependencies_gib=deps,
        runtime_gib=runtime,
        model_gib=model,
        builder_compute_type=compute,
        builder_needs_gib=builder_needs,
        builder_disk_gib=disk,
        instance_needs_gib=instance_needs,
        build_minutes=BUILD_PROVISION_MINUTES + seconds / 60,
        measured=measured,
    )

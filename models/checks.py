"""Packaging checks: what breaks a model at serving time, found before anything is provisioned.

Each check is a pure function of the model's manifest, where and how it will be served,
and the image estimate. Each finding has a stable id, a level and a message that says how
to fix it (the Databricks packaging advice, with its sources in docs/sources.md).
An error-level finding stops `pulumi up` and `kiln plan`; warnings are printed by
`kiln bake` and kept for the review.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from packaging.version import Version

from infra.plan.capacity import choose_gpu_placement
from infra.plan.catalog import DEFAULT_BUILD_TIMEOUT_MINUTES, GPU_AMI_NVIDIA_DRIVER, ComputeProfile, GpuPlacement
from infra.plan.packaging import (
    BUILD_TIME,
    BUILD_TIME_MARGIN,
    MODEL_SIGNATURE,
    NO_CONDA_DEFAULTS_CHANNEL,
    anaconda_channels,
    finding_level,
)
from models.environment import SUPPORTED_PYTHON, Environment, python_minor
from models.estimates import ImageEstimate, is_cpu_only_torch
from models.manifest import Manifest, requirement_name
from models.resolved import IMAGE_PLATFORM, ResolvedPackages

Level = Literal["error", "warning"]

# Test, notebook and lint tooling: each adds install time and image size and, in an image
# that serves requests, attack surface. They belong in a dev requirements file.
DEV_PACKAGES = frozenset(
    {
        "pytest", "pytest-cov", "pytest-mock", "coverage", "tox", "nox", "hypothesis", "mock",
        "jupyter", "jupyterlab", "notebook", "ipython", "ipykernel", "ipywidgets", "nbconvert",
        "black", "ruff", "flake8", "pylint", "mypy", "isort", "pre-commit",
    }
)
# MLflow up to 1.17 wrote `defaults` into conda.yaml (Databricks Runtime ML ≤ 8.3).
LAST_LEGACY_MLFLOW = (1, 17)
# Above this share of the build timeout, a slow mirror or a cold cache times the build out.
BUILD_TIME_WARNING_SHARE = 0.75
# A loaded model typically needs more memory than its files: deserialized objects,
# framework buffers, one prediction's intermediates (estimate; the compute catalog's
# memory per concurrency is per worker process), on top of the worker's own interpreter + libraries.
MODEL_MEMORY_FACTOR = 2.0
WORKER_BASELINE_GIB = 0.5
# The lowest NVIDIA driver branch that runs each CUDA major under CUDA minor version
# compatibility (any 12.x on ≥ 525, any 13.x on ≥ 580): NVIDIA, "CUDA Compatibility", table 1,
# https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html, and the
# CUDA Toolkit release notes' driver table.
MIN_DRIVER_BY_CUDA_MAJOR = {11: 450, 12: 525, 13: 580}


def worker_memory_gib(model_gib: float) -> float:
    """Memory one worker needs for a model of `model_gib` GiB of files (an estimate, see above)."""
    return model_gib * MODEL_MEMORY_FACTOR + WORKER_BASELINE_GIB


@dataclass(frozen=True)
class Finding:
    id: str
    level: Level
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "level": self.level, "message": self.message}


@dataclass(frozen=True)
class ServingTarget:
    """Where the model will run: the served model's name, stack environment, compute, build limit."""

    served_model: str
    environment: str
    profile: ComputeProfile
    build_timeout_minutes: int = DEFAULT_BUILD_TIMEOUT_MINUTES
    # The stack's gpuPlacement; None lets the model's memory decide, as the plan does.
    gpu_placement: GpuPlacement | None = None


@dataclass(frozen=True)
class CheckInput:
    manifest: Manifest
    environment: Environment
    estimate: ImageEstimate
    target: ServingTarget
    # What pip installed for the requirements (the reload check's virtualenv), when `kiln bake`
    # built one: the GPU checks then read the resolved wheels instead of the requirement text.
    resolved: ResolvedPackages | None = None

    @property
    def resolved_for_image(self) -> ResolvedPackages | None:
        """The resolved packages if they were resolved for the image's platform, else None."""
        return self.resolved if self.resolved is not None and self.resolved.for_image_platform else None


class PackagingError(Exception):
    """Error-level findings for one served model; the message names it, each check and its fix."""

    def __init__(self, served_model: str, findings: list[Finding]) -> None:
        self.served_model = served_model
        self.findings = [f for f in findings if f.level == "error"]
        lines = [f"served model {served_model} cannot be packaged:"]
        lines += [f"  [{f.id}] {f.message}" for f in self.findings]
        super().__init__("\n".join(lines))


def _finding(c: CheckInput, rule_id: str, message: str) -> Finding:
    """A finding at the level the pack's rule of the same id has in the target's environment
    (infra/plan/packaging.py): one table of levels for checks and pack."""
    return Finding(rule_id, finding_level(rule_id, c.target.environment), message)


def _signature(c: CheckInput) -> list[Finding]:
    if c.manifest.has_signature:
        return []
    return [
        _finding(
            c,
            MODEL_SIGNATURE,
            "the model has no signature, so requests are not validated and Unity Catalog-style registries reject it; "
            "log it with signature=infer_signature(X, model.predict(X))",
        )
    ]


def _input_example(c: CheckInput) -> list[Finding]:
    if c.manifest.has_input_example:
        return []
    return [
        _finding(c, "input-example-missing", "no input example: the reload check and the runtime's warm-up prediction cannot prove the model answers "
            "before it takes traffic; log it with input_example=X[:3]",
        )
    ]


def _is_pinned(requirement: str) -> bool:
    """An exact `==`/`===` version (`==2.*` is a prefix match, not a pin), or a direct reference
    `name @ url` (PEP 508: the spaces around `@` are optional)."""
    return "@" in requirement or re.search(r"===?\s*[\w.+!-]+(?![\w.+!*-])", requirement) is not None


def _requirements(c: CheckInput) -> list[Finding]:
    requirements = [r for r in c.manifest.requirements if not r.startswith("-")]
    if not requirements:
        return [
            _finding(c, "requirements-missing", "the model declares no pip requirements (requirements.txt is missing or empty), so the image cannot "
                "reproduce its environment; log it with pip_requirements=[...] pinned to what it was trained with",
            )
        ]
    unpinned = [r for r in requirements if not _is_pinned(r)]
    if not unpinned:
        return []
    return [
        _finding(c, "requirements-unpinned", f"requirements without an exact version: {', '.join(unpinned)}; the image installs whatever is newest "
            "at build time, which the image tag does not capture; pin them with == (e.g. the versions in pip freeze)",
        )
    ]


def _dev_packages(c: CheckInput) -> list[Finding]:
    found = sorted({requirement_name(r) for r in c.manifest.requirements} & DEV_PACKAGES)
    if not found:
        return []
    return [
        _finding(c, "dev-packages", f"test or notebook packages in the serving requirements: {', '.join(found)}; they enlarge the image "
            "and are not needed to serve; drop them from pip_requirements",
        )
    ]


def _mlflow_version(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _conda(c: CheckInput) -> list[Finding]:
    findings = []
    # The pack's rule decides both what is an Anaconda channel and how much it matters where:
    # advisory in dev and staging, mandatory in prod (docs/policies.md).
    if anaconda_channels(c.manifest.conda_channels):
        findings.append(
            _finding(
                c,
                NO_CONDA_DEFAULTS_CHANNEL,
                "conda.yaml uses Anaconda's `defaults` channel, which falls under Anaconda's commercial terms; "
                "re-log the model with conda_env using conda-forge, or with pip_requirements",
            )
        )
    logged_with = _mlflow_version(c.manifest.mlflow_version)
    if logged_with is not None and logged_with <= LAST_LEGACY_MLFLOW:
        findings.append(
            _finding(c, "mlflow-legacy", f"logged with MLflow {c.manifest.mlflow_version} (≤ 1.17), whose environments default to the Anaconda "
                "`defaults` channel and predate requirements.txt; re-log it with a current MLflow and pip_requirements",
            )
        )
    return findings


def _python(c: CheckInput) -> list[Finding]:
    version = python_minor(c.manifest.python_version)
    if version in SUPPORTED_PYTHON:
        return []
    shown = c.manifest.python_version or "(not recorded)"
    return [
        _finding(c, "python-unsupported", f"Python {shown} has no Kiln base image (supported: {', '.join(SUPPORTED_PYTHON)}); "
            "re-log the model from one of those Python versions",
        )
    ]


def _accelerator(c: CheckInput) -> list[Finding]:
    profile = c.target.profile
    compute = profile.compute_type.value
    frameworks = c.manifest.gpu_frameworks
    resolved = c.resolved_for_image
    if resolved is not None:
        cpu_torch = resolved.torch is not None and resolved.cuda is None
    else:
        cpu_torch = any(is_cpu_only_torch(r) for r in c.manifest.requirements)
    if not profile.has_gpu:
        if frameworks and not cpu_torch:
            return [
                _finding(c, "gpu-framework-on-cpu", f"the model uses a GPU framework ({', '.join(frameworks)}) but {compute} has no GPU: it will "
                    "run, slowly, in an image carrying unused CUDA libraries; choose GPU_SMALL/GPU_MEDIUM, or pin a "
                    "CPU build (torch==X+cpu) if CPU is intended",
                )
            ]
        return []
    if cpu_torch and resolved is not None:
        return [
            _finding(c, "cpu-torch-on-gpu", f"pip resolves the model's requirements to torch {resolved.torch}, a build without CUDA (no CUDA "
                f"runtime wheel installed), but it is served on {compute}: it would never use the GPU you pay for; "
                "drop the CPU wheel index (--extra-index-url …/whl/cpu) or pin a CUDA build, or serve it on "
                "CPU_MEDIUM/CPU_LARGE",
            )
        ]
    if cpu_torch:
        return [
            _finding(c, "cpu-torch-on-gpu", f"the model pins a CPU-only torch build (+cpu) but is served on {compute}: it would never use the GPU "
                "you pay for; re-log with the CUDA build of torch, or serve it on CPU_MEDIUM/CPU_LARGE",
            )
        ]
    if not frameworks:
        return [
            _finding(c, "no-gpu-framework-on-gpu", f"the model uses no GPU framework (flavors {', '.join(c.manifest.flavors)}; no torch, tensorflow, jax, "
                f"transformers or onnxruntime-gpu in its requirements) but is served on {compute}: it would run on "
                "the CPU of a GPU instance; serve it on CPU_MEDIUM/CPU_LARGE, or add the GPU framework it uses to "
                "pip_requirements",
            )
        ]
    return []


def _gpu_packages(c: CheckInput) -> list[Finding]:
    """What only the resolved wheels show on GPU compute: the CUDA they carry against the AMI's
    driver, a second CUDA stack under a CUDA base, and a resolution that says nothing about the image."""
    if not c.target.profile.has_gpu or c.resolved is None:
        return []
    if not c.resolved.for_image_platform:
        return [
            _finding(c, "resolved-elsewhere", f"the reload check resolved the requirements on {c.resolved.platform}, the image is {IMAGE_PLATFORM}: "
                "the CUDA the image carries (and whether torch is a CPU build) is known only from the requirement "
                f"text; run kiln bake on {IMAGE_PLATFORM} to check the resolved wheels",
            )
        ]
    cuda = c.resolved.cuda
    if cuda is None:
        return []
    findings = []
    driver = Version(GPU_AMI_NVIDIA_DRIVER)
    needed = MIN_DRIVER_BY_CUDA_MAJOR.get(cuda.version.major)
    if needed is None or driver.major < needed:
        supported = [f"CUDA {major}" for major, branch in MIN_DRIVER_BY_CUDA_MAJOR.items() if driver.major >= branch]
        need = f"a driver ≥ {needed}" if needed else "a driver newer than any CUDA major Kiln knows"
        findings.append(
            _finding(c, "gpu-driver-too-old", f"the resolved packages carry CUDA {cuda.version} ({cuda.source}), which needs {need}; the GPU AMI's "
                f"NVIDIA driver is {GPU_AMI_NVIDIA_DRIVER}: CUDA would fail to initialise on the instance; pin the "
                f"framework to a build for {' or '.join(supported)}",
            )
        )
    if c.environment.system_cuda:
        findings.append(
            _finding(c, "gpu-two-cuda-stacks", f"the image starts from {c.environment.base_image} because no requirement names a framework that "
                f"brings its own CUDA, yet the resolved packages carry CUDA {cuda.version} ({cuda.source}): the image "
                "holds two CUDA stacks; name that framework (e.g. torch==X) in pip_requirements so the image starts "
                "from the slim Python base",
            )
        )
    return findings


def _memory(c: CheckInput) -> list[Finding]:
    profile = c.target.profile
    needs = worker_memory_gib(c.estimate.model_gib)
    arithmetic = f"{c.estimate.model_gib:.1f} GiB of files × {MODEL_MEMORY_FACTOR:g} + {WORKER_BASELINE_GIB} GiB runtime"
    gpu = choose_gpu_placement(profile, c.target.gpu_placement, needs)
    if gpu is None:
        limit = profile.memory_per_concurrency_gib
        if needs <= limit:
            return []
        return [_finding(c, "memory-per-concurrency", f"the model needs ~{needs:.1f} GiB per worker ({arithmetic}), {profile.compute_type.value} gives "
                        f"{limit:g} GiB per concurrency; choose a larger compute type or shrink the model")]
    if gpu.placement is GpuPlacement.SPREAD_ACROSS_GPUS:
        return _spread_memory(c, needs)
    # One worker per GPU: all of a worker's model sits on its one device (MLflow loads onto one).
    device = profile.gpu_memory_per_device_gib
    if needs <= device:
        return []
    spread = ("set gpuPlacement: spreadAcrossGpus to spread it across the instance's "
              f"{profile.gpus_per_instance} GPUs" if profile.gpus_per_instance > 1
              else "choose MULTIGPU_MEDIUM or GPU_MEDIUM_8 to spread it across GPUs")
    return [_finding(c, "memory-per-concurrency", f"the model needs ~{needs:.1f} GiB per worker ({arithmetic}), one {profile.compute_type.value} GPU "
                    f"has {device:g} GiB ({gpu.placement.value}: {gpu.reason}); {spread}, or shrink the model")]


def _spread_memory(c: CheckInput, needs: float) -> list[Finding]:
    """One model across every GPU: only MLflow's Transformers flavour places a model that way
    (its device map), and each device then holds its share plus a CUDA context."""
    profile = c.target.profile
    gpus, device = profile.gpus_per_instance, profile.gpu_memory_per_device_gib
    compute = profile.compute_type.value
    if "transformers" not in c.manifest.flavors:
        return [_finding(c, "gpu-spread-unsupported", f"spreading one model across {compute}'s {gpus} GPUs needs MLflow's Transformers device map "
                        f"(MLFLOW_HUGGINGFACE_USE_DEVICE_MAP); a {', '.join(c.manifest.flavors)} model loads onto one "
                        f"{device:g} GiB GPU; set gpuPlacement: workerPerGpu if ~{needs:.1f} GiB fits one, or log it "
                        "with mlflow.transformers")]
    model = needs - WORKER_BASELINE_GIB
    per_device = model / gpus + WORKER_BASELINE_GIB
    if per_device <= device:
        return []
    return [_finding(c, "memory-per-concurrency", f"spread across {compute}'s {gpus} GPUs the model needs ~{per_device:.1f} GiB per GPU "
                    f"({model:.1f} GiB / {gpus} + {WORKER_BASELINE_GIB} GiB runtime) of {device:g} GiB, "
                    f"~{model + gpus * WORKER_BASELINE_GIB:.1f} of {gpus * device:g} GiB in total; choose a compute type "
                    "with more GPUs (GPU_MEDIUM_8: 8 × 24 GiB) or shrink the model")]


def _disk(c: CheckInput) -> list[Finding]:
    e = c.estimate
    findings = []
    if e.builder_compute_type is None:
        findings.append(
            _finding(c, "image-disk-builder", f"building the image needs ~{e.builder_needs_gib:.0f} GiB of builder disk, the largest CodeBuild "
                f"compute type has {e.builder_disk_gib:.0f} GiB ({e.breakdown()}); drop dependencies from the "
                "serving requirements",
            )
        )
    root = c.target.profile.root_volume_gib
    if e.instance_needs_gib > root:
        findings.append(
            _finding(c, "image-disk-instance", f"needs ~{e.instance_needs_gib:.0f} GiB, {c.target.profile.compute_type.value} root volume is {root} GiB "
                f"(AMI + pulled and extracted image + model: {e.breakdown()}); slim the requirements or choose a "
                "compute type with a larger root volume",
            )
        )
    return findings


def _build_time(c: CheckInput) -> list[Finding]:
    minutes = c.estimate.build_minutes
    limit = c.target.build_timeout_minutes
    if minutes > limit:
        rule_id, verdict = BUILD_TIME, "exceeds"
    elif minutes > limit * BUILD_TIME_WARNING_SHARE:
        rule_id, verdict = BUILD_TIME_MARGIN, "is close to"
    else:
        return []
    return [
        _finding(
            c,
            rule_id,
            f"estimated build time ~{minutes:.0f} min {verdict} build.timeoutMinutes {limit} ({c.estimate.breakdown()}); "
            "raise kiln:build.timeoutMinutes or slim the requirements",
        )
    ]


CHECKS: tuple[Callable[[CheckInput], list[Finding]], ...] = (
    _signature,
    _input_example,
    _requirements,
    _dev_packages,
    _conda,
    _python,
    _accelerator,
    _gpu_packages,
    _memory,
    _disk,
    _build_time,
)


def check_packaging(check_input: CheckInput) -> list[Finding]:
    """Every finding for one served model, errors first, in a stable order."""
    findings = [finding for check in CHECKS for finding in check(check_input)]
    return sorted(findings, key=lambda f: f.level != "error")


def raise_for_errors(served_model: str, findings: list[Finding]) -> None:
    if any(f.level == "error" for f in findings):
        raise PackagingError(served_model, findings)

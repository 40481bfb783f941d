"""Packaging checks case by case, on manifests and estimates written as plain data.

Every check is a pure function of (manifest, estimate, target), so each threshold is
tested below / at / above, each accepted spelling of a checked value is listed, and each
level is checked per stack environment. tests/models/test_bake_checks.py covers the same checks
end to end on real MLflow models.
"""

from __future__ import annotations

import dataclasses

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

import models.checks as checks_module
from infra.plan.catalog import PROFILES, ComputeType, GpuPlacement
from models.checks import (
    CheckInput,
    Finding,
    PackagingError,
    ServingTarget,
    check_packaging,
    raise_for_errors,
)
from models.environment import SYSTEM_CUDA_BASE, Environment
from models.estimates import ImageEstimate
from models.manifest import Manifest
from models.resolved import ResolvedPackages
from tests.manifests import SKLEARN_MANIFEST

CLEAN = SKLEARN_MANIFEST
# A small CPU image, far from every disk and time limit: only the field a test sets matters.
SMALL = ImageEstimate(
    base_gib=0.15,
    dependencies_gib=0.5,
    runtime_gib=0.15,
    model_gib=0.5,
    builder_compute_type="BUILD_GENERAL1_MEDIUM",
    builder_needs_gib=7.0,
    builder_disk_gib=119.2,
    instance_needs_gib=8.0,
    build_minutes=4.0,
)
# SMALL's breakdown as the disk and build-time messages print it (0.15 + 0.5 + 0.15 = 0.8).
BREAKDOWN = "image ~0.8 GiB = base 0.1 + dependencies 0.5 + runtime 0.15; model 0.50 GiB"
ENVIRONMENTS = ("dev", "staging", "prod")
CPU_TYPES = (ComputeType.CPU_MEDIUM, ComputeType.CPU_LARGE)
GPU_TYPES = (ComputeType.GPU_SMALL, ComputeType.GPU_MEDIUM, ComputeType.MULTIGPU_MEDIUM, ComputeType.GPU_MEDIUM_8)


def _findings(
    manifest: Manifest = CLEAN,
    estimate: ImageEstimate = SMALL,
    environment: str = "dev",
    compute: ComputeType = ComputeType.CPU_MEDIUM,
    timeout: int = 60,
    resolved: ResolvedPackages | None = None,
    base_image: str = "public.ecr.aws/docker/library/python:3.11-slim-bookworm",
) -> list[Finding]:
    image = Environment("3.11", manifest.requirements, base_image)
    target = ServingTarget("fraud.champion", environment, PROFILES[compute], timeout)
    return check_packaging(CheckInput(manifest, image, estimate, target, resolved))


def _resolved(*pins: str, platform: str = "linux-x86_64") -> ResolvedPackages:
    """What pip installed, as `name==version` pins (the reload check's virtualenv, read back)."""
    return ResolvedPackages({canonicalize_name(n): Version(v) for n, v in (pin.split("==") for pin in pins)}, platform)


def _with(**changes) -> Manifest:
    return dataclasses.replace(CLEAN, **changes)


def _model_for(compute: ComputeType) -> Manifest:
    """A clean model that suits the compute type: scikit-learn on CPU, PyTorch on GPU."""
    if PROFILES[compute].has_gpu:
        return _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.5.1"))
    return CLEAN


def _levels(findings: list[Finding]) -> dict[str, str]:
    return {f.id: f.level for f in findings}


def _one(findings: list[Finding], finding_id: str) -> Finding:
    [finding] = [f for f in findings if f.id == finding_id]
    return finding


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("compute", CPU_TYPES)
def test_a_clean_manifest_has_no_findings_anywhere_on_cpu(environment: str, compute: ComputeType) -> None:
    assert _findings(environment=environment, compute=compute) == []


# --- levels per environment ----------------------------------------------------------------


@pytest.mark.parametrize(("environment", "level"), [("dev", "warning"), ("staging", "warning"), ("prod", "error")])
def test_a_missing_signature_is_an_error_only_in_prod(environment: str, level: str) -> None:
    assert _levels(_findings(_with(has_signature=False), environment=environment)) == {"model-signature": level}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_a_missing_input_example_is_a_warning_in_every_environment(environment: str) -> None:
    finding = _one(_findings(_with(has_input_example=False), environment=environment), "input-example-missing")

    assert finding.level == "warning" and "input_example=X[:3]" in finding.message


@pytest.mark.parametrize(("environment", "level"), [("dev", "warning"), ("staging", "warning"), ("prod", "error")])
def test_unpinned_requirements_are_an_error_only_in_prod(environment: str, level: str) -> None:
    manifest = _with(requirements=("mlflow==2.17.2", "pandas>=2"))

    assert _levels(_findings(manifest, environment=environment)) == {"requirements-unpinned": level}


# --- requirements: every spelling of a pin ---------------------------------------------


@pytest.mark.parametrize(
    "requirement",
    [
        "pandas==2.2.3",
        "pandas===2.2.3",  # arbitrary equality
        "pandas == 2.2.3",
        "pandas[performance]==2.2.3",  # extras
        "pandas==2.2.3 ; python_version >= '3.9'",  # environment marker
        "pandas==2.2.3;python_version>='3.9'",
        "torch==2.5.1+cpu",  # local version label
        "pandas==1!2.2.3",  # epoch
        "pandas==2.2.3.post1",
        "pandas>=2,==2.2.3",
        "pandas @ https://files.pythonhosted.org/packages/pandas-2.2.3-cp311-manylinux.whl",  # direct reference
        "pandas@https://files.pythonhosted.org/packages/pandas-2.2.3-cp311-manylinux.whl",  # PEP 508: spaces optional
        "pandas[performance]@ https://files.pythonhosted.org/packages/pandas-2.2.3-cp311-manylinux.whl",
    ],
)
def test_every_spelling_of_an_exact_pin_counts_as_pinned(requirement: str) -> None:
    assert _findings(_with(requirements=("mlflow==2.17.2", requirement)), environment="prod") == []


@pytest.mark.parametrize(
    "requirement",
    [
        "pandas",
        "pandas>=2.2",
        "pandas~=2.2",
        "pandas!=2.2.0",
        "pandas<=2.2.3",
        "pandas==2.*",  # a prefix match: installs whatever 2.x is newest at build time
        "pandas==2.2.*",
        "pandas[performance]>=2",
        "pandas>=2 ; python_version == '3.11'",  # an == in the marker pins nothing
    ],
)
def test_every_spelling_without_an_exact_version_is_unpinned(requirement: str) -> None:
    finding = _one(
        _findings(_with(requirements=("mlflow==2.17.2", requirement)), environment="prod"), "requirements-unpinned"
    )

    assert finding.level == "error"
    assert finding.message.startswith(f"requirements without an exact version: {requirement}; ")


def test_the_unpinned_finding_lists_every_unpinned_requirement_in_file_order() -> None:
    manifest = _with(requirements=("pandas>=2", "mlflow==2.17.2", "numpy", "scipy~=1.14"))

    finding = _one(_findings(manifest), "requirements-unpinned")

    assert finding.message.startswith("requirements without an exact version: pandas>=2, numpy, scipy~=1.14; ")
    assert "pin them with ==" in finding.message


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize(
    "requirements",
    [(), ("--extra-index-url https://download.pytorch.org/whl/cpu",), ("-r base.txt", "--no-binary :all:")],
)
def test_no_requirements_besides_pip_options_is_an_error_everywhere(
    environment: str, requirements: tuple[str, ...]
) -> None:
    findings = _findings(_with(requirements=requirements), environment=environment)

    assert _levels(findings) == {"requirements-missing": "error"}
    assert "pip_requirements=[...]" in findings[0].message


def test_pip_options_beside_pinned_requirements_are_not_requirements() -> None:
    manifest = _with(requirements=("--extra-index-url https://download.pytorch.org/whl/cpu", "mlflow==2.17.2"))

    assert _findings(manifest, environment="prod") == []


# --- dev packages ----------------------------------------------------------------------------


def test_dev_packages_are_named_once_sorted_and_normalized() -> None:
    manifest = _with(
        requirements=(
            "mlflow==2.17.2",
            "PyTest==8.3.0",
            "pre_commit==3.8.0",
            "ipykernel==6.29.5",
            "pytest==8.3.0 ; python_version>'3'",
        )
    )

    finding = _one(_findings(manifest, environment="prod"), "dev-packages")

    assert finding.level == "warning"
    assert finding.message.startswith(
        "test or notebook packages in the serving requirements: ipykernel, pre-commit, pytest; "
    )


@pytest.mark.parametrize(
    "package", ["pytest-xdist==3.6.1", "pytest_asyncio==0.24.0", "black-box==1.0", "coverage-badge==1.1"]
)
def test_packages_that_only_share_a_prefix_with_dev_tools_are_not_flagged(package: str) -> None:
    assert _findings(_with(requirements=("mlflow==2.17.2", package))) == []


# --- conda channels: every name of Anaconda's channels --------------------------------------


@pytest.mark.parametrize(
    "channel",
    [
        "defaults",
        "main",
        "r",
        "msys2",
        "anaconda",
        "pkgs/main",
        "pkgs/r",
        "https://repo.anaconda.com/pkgs/main",
        "https://repo.anaconda.com/pkgs/main/",
        "https://repo.anaconda.com/pkgs/r",
        "http://repo.anaconda.com/pkgs/free",
        "https://repo.continuum.io/pkgs/free",
        "https://conda.anaconda.org/anaconda",
        "https://conda.anaconda.org/main/",
        "conda.anaconda.org/r",
        "https://anaconda.org/anaconda",
        "Defaults",
        " defaults ",
    ],
)
def test_every_name_of_anacondas_channels_is_an_error_in_prod(channel: str) -> None:
    findings = _findings(_with(conda_channels=("conda-forge", channel)), environment="prod")

    assert _levels(findings) == {"no-conda-defaults-channel": "error"}
    assert "conda-forge" in findings[0].message


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_anacondas_channels_are_a_warning_where_the_pack_only_advises(environment: str) -> None:
    """The packaging check takes the pack rule's levels, so the rule can fire where it advises."""
    findings = _findings(_with(conda_channels=("defaults",)), environment=environment)

    assert _levels(findings) == {"no-conda-defaults-channel": "warning"}


@pytest.mark.parametrize(
    "channels",
    [
        (),
        ("conda-forge",),
        ("conda-forge", "nodefaults"),
        ("https://conda.anaconda.org/conda-forge",),
        ("pytorch", "nvidia"),
        ("bioconda",),
        ("https://conda.anaconda.org/mainline",),
        ("main-mirror",),
    ],
)
def test_community_channels_and_nodefaults_are_not_flagged(channels: tuple[str, ...]) -> None:
    assert _findings(_with(conda_channels=channels)) == []


# --- MLflow version at the 1.17 boundary ------------------------------------------------


@pytest.mark.parametrize("version", ["0.9.1", "1.9.0", "1.16.0", "1.17.0", "1.17.2", "1.17.0rc0"])
def test_models_logged_with_mlflow_up_to_1_17_are_an_error(version: str) -> None:
    findings = _findings(_with(mlflow_version=version))

    assert _levels(findings) == {"mlflow-legacy": "error"}
    assert findings[0].message.startswith(f"logged with MLflow {version} (≤ 1.17)")


@pytest.mark.parametrize("version", ["1.18.0", "1.30.1", "2.0.0", "2.17.2", "10.1.0", "", "unknown"])
def test_models_logged_with_mlflow_from_1_18_or_no_version_pass(version: str) -> None:
    assert _findings(_with(mlflow_version=version)) == []


def test_a_legacy_model_with_the_defaults_channel_gets_both_errors_channel_first() -> None:
    findings = _findings(_with(mlflow_version="1.16.0", conda_channels=("defaults",)), environment="prod")

    assert [f.id for f in findings] == ["no-conda-defaults-channel", "mlflow-legacy"]


# --- Python versions ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.9", "3.9.21", "3.10.4", "3.11", "3.12.8", "3.13.1"])
def test_supported_pythons_pass_with_any_patch_level(version: str) -> None:
    assert _findings(_with(python_version=version)) == []


@pytest.mark.parametrize(
    ("version", "shown"),
    [("3.8.20", "3.8.20"), ("3.14.0", "3.14.0"), ("2.7.18", "2.7.18"), ("3", "3"), ("", "(not recorded)")],
)
def test_pythons_without_a_base_image_are_an_error_naming_the_version(version: str, shown: str) -> None:
    findings = _findings(_with(python_version=version))

    assert _levels(findings) == {"python-unsupported": "error"}
    assert findings[0].message == (
        f"Python {shown} has no Kiln base image (supported: 3.9, 3.10, 3.11, 3.12, 3.13); "
        "re-log the model from one of those Python versions"
    )


# --- accelerator: GPU frameworks on CPU compute and CPU torch on GPU compute --------


@pytest.mark.parametrize("compute", CPU_TYPES)
@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"requirements": ("mlflow==2.17.2", "torch==2.5.1")}, "torch"),
        ({"requirements": ("mlflow==2.17.2", "transformers==4.46.3")}, "transformers"),
        ({"requirements": ("mlflow==2.17.2", "tensorflow==2.18.0")}, "tensorflow"),
        ({"requirements": ("mlflow==2.17.2", "onnxruntime-gpu==1.20.1")}, "onnxruntime-gpu"),
        ({"flavors": ("python_function", "pytorch")}, "pytorch"),
        ({"flavors": ("python_function", "keras")}, "keras"),
        ({"flavors": ("python_function", "pytorch"), "requirements": ("mlflow==2.17.2", "torch==2.5.1")}, "pytorch, torch"),
    ],
)
def test_a_gpu_framework_on_cpu_compute_is_a_warning_naming_the_framework_and_compute(
    compute: ComputeType, changes: dict, named: str
) -> None:
    # Only the GPU frameworks: python_function and sklearn are no GPU framework.
    findings = _findings(_with(**changes), environment="prod", compute=compute)

    assert _levels(findings) == {"gpu-framework-on-cpu": "warning"}
    assert findings[0].message.startswith(f"the model uses a GPU framework ({named}) but {compute.value} has no GPU")


@pytest.mark.parametrize("compute", CPU_TYPES)
def test_a_cpu_build_of_torch_on_cpu_compute_is_fine(compute: ComputeType) -> None:
    manifest = _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.5.1+cpu"))

    assert _findings(manifest, environment="prod", compute=compute) == []


@pytest.mark.parametrize("compute", GPU_TYPES)
def test_a_gpu_framework_on_gpu_compute_is_fine(compute: ComputeType) -> None:
    manifest = _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.5.1"))

    assert _findings(manifest, environment="prod", compute=compute) == []


@pytest.mark.parametrize("compute", GPU_TYPES)
def test_a_cpu_build_of_torch_on_gpu_compute_is_an_error_naming_the_compute(compute: ComputeType) -> None:
    manifest = _with(requirements=("mlflow==2.17.2", "torch==2.5.1+cpu"))

    findings = _findings(manifest, compute=compute)

    assert _levels(findings) == {"cpu-torch-on-gpu": "error"}
    assert f"is served on {compute.value}: it would never use the GPU" in findings[0].message


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("compute", GPU_TYPES)
def test_a_model_without_a_gpu_framework_on_gpu_compute_is_a_warning(compute: ComputeType, environment: str) -> None:
    findings = _findings(compute=compute, environment=environment)

    assert _levels(findings) == {"no-gpu-framework-on-gpu": "warning"}
    assert "flavors python_function, sklearn; no torch, tensorflow" in findings[0].message
    assert f"is served on {compute.value}: it would run on the CPU of a GPU instance" in findings[0].message


# --- the resolved environment (kiln bake): what pip installed, not what the text says ----

CUDA_TORCH = ("torch==2.9.0", "nvidia-cuda-runtime-cu12==12.8.90", "nvidia-cublas-cu12==12.8.4.1")
CUDA13_TORCH = ("torch==2.14.1", "nvidia-cuda-runtime==13.0.96", "cuda-toolkit==13.0.3")


@pytest.mark.parametrize("compute", GPU_TYPES)
@pytest.mark.parametrize(
    "installed",
    [
        ("torch==2.9.0+cpu",),  # --extra-index-url https://download.pytorch.org/whl/cpu + torch==2.9.0
        ("torch==2.9.0",),  # no local label, and no CUDA runtime wheel either
        ("torch==2.5.1+rocm6.2",),
    ],
)
def test_a_torch_resolved_without_cuda_on_gpu_compute_is_an_error(compute: ComputeType, installed: tuple[str, ...]) -> None:
    # The requirement text says nothing: `torch==2.9.0` behind a CPU wheel index.
    manifest = _with(requirements=("--extra-index-url https://download.pytorch.org/whl/cpu", "mlflow==2.17.2", "torch==2.9.0"))

    findings = _findings(manifest, compute=compute, resolved=_resolved("mlflow==2.17.2", *installed))

    assert _levels(findings) == {"cpu-torch-on-gpu": "error"}
    assert findings[0].message.startswith(f"pip resolves the model's requirements to torch {installed[0].split('==')[1]}")
    assert f"served on {compute.value}: it would never use the GPU" in findings[0].message


@pytest.mark.parametrize("installed", [CUDA_TORCH, CUDA13_TORCH, ("torch==2.0.1+cu118",)])
def test_a_torch_resolved_with_cuda_on_gpu_compute_is_fine(installed: tuple[str, ...]) -> None:
    manifest = _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.9.0"))

    assert _findings(manifest, compute=ComputeType.GPU_SMALL, resolved=_resolved(*installed)) == []


def test_a_torch_resolved_without_cuda_on_cpu_compute_carries_no_unused_cuda() -> None:
    manifest = _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.9.0"))

    assert _findings(manifest, resolved=_resolved("torch==2.9.0+cpu")) == []
    assert _levels(_findings(manifest, resolved=_resolved(*CUDA_TORCH))) == {"gpu-framework-on-cpu": "warning"}


def test_a_resolution_on_another_platform_is_named_and_the_requirement_text_decides() -> None:
    # On macOS pip installs torch without CUDA whatever the image would get.
    manifest = _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.9.0"))

    findings = _findings(manifest, compute=ComputeType.GPU_SMALL, resolved=_resolved("torch==2.9.0", platform="macosx-14.0-arm64"))

    assert _levels(findings) == {"resolved-elsewhere": "warning"}
    assert "resolved the requirements on macosx-14.0-arm64, the image is linux-x86_64" in findings[0].message


@pytest.mark.parametrize(
    ("driver", "installed", "cuda", "supported"),
    [
        # The Amazon Linux 2 Deep Learning AMI's driver branch: CUDA 12 yes, 13 no.
        ("570.195.03", CUDA13_TORCH, "13.0", "CUDA 11 or CUDA 12"),
        ("595.91.07", ("torch==2.20.0", "nvidia-cuda-runtime==14.0.10"), "14.0", "CUDA 11 or CUDA 12 or CUDA 13"),
        ("520.61.05", CUDA_TORCH, "12.8", "CUDA 11"),
    ],
)
def test_a_cuda_the_ami_driver_cannot_run_is_an_error(
    monkeypatch: pytest.MonkeyPatch, driver: str, installed: tuple[str, ...], cuda: str, supported: str
) -> None:
    monkeypatch.setattr(checks_module, "GPU_AMI_NVIDIA_DRIVER", driver)
    manifest = _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.9.0"))

    findings = _findings(manifest, compute=ComputeType.GPU_MEDIUM, resolved=_resolved(*installed))

    assert _levels(findings) == {"gpu-driver-too-old": "error"}
    assert f"carry CUDA {cuda} (" in findings[0].message
    assert f"the GPU AMI's NVIDIA driver is {driver}" in findings[0].message
    assert findings[0].message.endswith(f"pin the framework to a build for {supported}")


@pytest.mark.parametrize("installed", [CUDA_TORCH, CUDA13_TORCH])
def test_the_gpu_ami_driver_runs_the_cuda_of_current_torch_wheels(installed: tuple[str, ...]) -> None:
    # torch 2.9 (CUDA 12.8) and 2.14 (CUDA 13.0) on the recorded AMI driver (595).
    manifest = _with(flavors=("python_function", "pytorch"), requirements=("mlflow==2.17.2", "torch==2.9.0"))

    assert _findings(manifest, compute=ComputeType.GPU_SMALL, resolved=_resolved(*installed)) == []


def test_a_cuda_base_under_packages_that_bring_their_cuda_is_two_cuda_stacks() -> None:
    # sentence-transformers pulls torch in, but no requirement names it: the plan chose the CUDA base.
    manifest = _with(flavors=("python_function", "sentence_transformers"), requirements=("sentence-transformers==3.3.1",))

    findings = _findings(manifest, compute=ComputeType.GPU_SMALL, resolved=_resolved(*CUDA_TORCH), base_image=SYSTEM_CUDA_BASE)

    assert _levels(findings) == {"gpu-two-cuda-stacks": "warning"}
    assert "CUDA 12.8 (nvidia-cuda-runtime-cu12==12.8.90): the image holds two CUDA stacks" in findings[0].message


# --- memory per concurrency: files × 2 + 0.5 GiB against the compute type ----------------


@pytest.mark.parametrize(
    ("compute", "model_gib", "flagged"),
    [
        # CPU_MEDIUM gives 8 GiB: 3.75 × 2 + 0.5 = 8.0 fits exactly.
        (ComputeType.CPU_MEDIUM, 3.7, False),
        (ComputeType.CPU_MEDIUM, 3.75, False),
        (ComputeType.CPU_MEDIUM, 3.8, True),  # 3.8 × 2 + 0.5 = 8.1
        # CPU_LARGE gives 16 GiB: 7.75 × 2 + 0.5 = 16.0.
        (ComputeType.CPU_LARGE, 7.75, False),
        (ComputeType.CPU_LARGE, 7.8, True),
        # GPU_MEDIUM gives 24 GiB: 11.75 × 2 + 0.5 = 24.0.
        (ComputeType.GPU_MEDIUM, 11.75, False),
        (ComputeType.GPU_MEDIUM, 11.8, True),
    ],
)
def test_model_memory_against_memory_per_concurrency_below_at_and_above(
    compute: ComputeType, model_gib: float, flagged: bool
) -> None:
    findings = _findings(_model_for(compute), dataclasses.replace(SMALL, model_gib=model_gib), compute=compute)

    assert _levels(findings) == ({"memory-per-concurrency": "error"} if flagged else {})


def test_the_memory_finding_shows_the_arithmetic() -> None:
    findings = _findings(estimate=dataclasses.replace(SMALL, model_gib=5.0))

    # 5.0 × 2 + 0.5 = 10.5 GiB against CPU_MEDIUM's 8.
    assert _one(findings, "memory-per-concurrency").message == (
        "the model needs ~10.5 GiB per worker (5.0 GiB of files × 2 + 0.5 GiB runtime), CPU_MEDIUM gives "
        "8 GiB per concurrency; choose a larger compute type or shrink the model"
    )


def _gpu_memory_findings(model_gib: float, compute: ComputeType, placement: GpuPlacement | None = None,
                         flavors: tuple[str, ...] = ("python_function", "transformers")) -> dict[str, str]:
    manifest = _with(flavors=flavors)
    image = Environment("3.11", manifest.requirements, "public.ecr.aws/docker/library/python:3.11-slim-bookworm")
    target = ServingTarget("llm.champion", "dev", PROFILES[compute], gpu_placement=placement)
    findings = check_packaging(CheckInput(manifest, image, dataclasses.replace(SMALL, model_gib=model_gib), target))
    return {f.id: f.message for f in findings}


def test_one_worker_per_gpu_must_fit_one_device_not_the_instances_total() -> None:
    """Issue 18: the check counted MULTIGPU_MEDIUM's 96 GiB where one worker's GPU has 24."""
    findings = _gpu_memory_findings(15.0, ComputeType.MULTIGPU_MEDIUM, GpuPlacement.WORKER_PER_GPU)

    # 15.0 × 2 + 0.5 = 30.5 GiB against one A10G's 24
    assert findings == {"memory-per-concurrency": (
        "the model needs ~30.5 GiB per worker (15.0 GiB of files × 2 + 0.5 GiB runtime), one MULTIGPU_MEDIUM GPU has "
        "24 GiB (workerPerGpu: gpuPlacement workerPerGpu); set gpuPlacement: spreadAcrossGpus to spread it across the "
        "instance's 4 GPUs, or shrink the model")}


@pytest.mark.parametrize(("model_gib", "flagged"), [(46.9, False), (47.0, False), (47.1, True)])
def test_a_spread_model_is_checked_per_device_and_in_total(model_gib: float, flagged: bool) -> None:
    # Each A10G holds its share plus a CUDA context: 47.0 GiB of files × 2 / 4 GPUs + 0.5 = 24.0 GiB exactly.
    findings = _gpu_memory_findings(model_gib, ComputeType.MULTIGPU_MEDIUM)

    assert ("memory-per-concurrency" in findings) is flagged


def test_the_spread_memory_finding_shows_per_device_and_total() -> None:
    findings = _gpu_memory_findings(50.0, ComputeType.MULTIGPU_MEDIUM)

    assert findings == {"memory-per-concurrency": (
        "spread across MULTIGPU_MEDIUM's 4 GPUs the model needs ~25.5 GiB per GPU (100.0 GiB / 4 + 0.5 GiB runtime) "
        "of 24 GiB, ~102.0 of 96 GiB in total; choose a compute type with more GPUs (GPU_MEDIUM_8: 8 × 24 GiB) or "
        "shrink the model")}


def test_only_a_transformers_model_can_be_spread_across_gpus() -> None:
    findings = _gpu_memory_findings(15.0, ComputeType.MULTIGPU_MEDIUM, flavors=("python_function", "pytorch"))

    assert list(findings) == ["gpu-spread-unsupported"]
    assert findings["gpu-spread-unsupported"].startswith(
        "spreading one model across MULTIGPU_MEDIUM's 4 GPUs needs MLflow's Transformers device map")


# --- disk: instance root volume and builder ------------------------------------------


@pytest.mark.parametrize(
    ("compute", "needs_gib", "flagged"),
    [
        (ComputeType.CPU_MEDIUM, 29.5, False),
        (ComputeType.CPU_MEDIUM, 30.0, False),  # CPU root volume: 30 GiB
        (ComputeType.CPU_MEDIUM, 30.5, True),
        (ComputeType.GPU_SMALL, 100.0, False),  # GPU root volume: 100 GiB
        (ComputeType.GPU_SMALL, 100.5, True),
    ],
)
def test_instance_disk_against_the_root_volume_below_at_and_above(
    compute: ComputeType, needs_gib: float, flagged: bool
) -> None:
    findings = _findings(_model_for(compute), dataclasses.replace(SMALL, instance_needs_gib=needs_gib), compute=compute)

    assert _levels(findings) == ({"image-disk-instance": "error"} if flagged else {})


def test_the_instance_disk_finding_names_need_volume_and_breakdown() -> None:
    estimate = dataclasses.replace(SMALL, instance_needs_gib=41.2)

    message = _one(_findings(estimate=estimate), "image-disk-instance").message

    assert message == (
        f"needs ~41 GiB, CPU_MEDIUM root volume is 30 GiB (AMI + pulled and extracted image + model: {BREAKDOWN}); "
        "slim the requirements or choose a compute type with a larger root volume"
    )


def test_a_build_no_codebuild_type_can_hold_is_an_error_with_the_numbers() -> None:
    estimate = dataclasses.replace(SMALL, builder_compute_type=None, builder_needs_gib=900.4, builder_disk_gib=767.4)

    findings = _findings(estimate=estimate)

    assert _levels(findings) == {"image-disk-builder": "error"}
    assert findings[0].message == (
        f"building the image needs ~900 GiB of builder disk, the largest CodeBuild compute type has 767 GiB "
        f"({BREAKDOWN}); drop dependencies from the serving requirements"
    )


def test_a_build_that_fits_a_codebuild_type_has_no_builder_finding() -> None:
    estimate = dataclasses.replace(SMALL, builder_compute_type="BUILD_GENERAL1_2XLARGE", builder_needs_gib=700.0)

    assert _findings(estimate=estimate) == []


# --- build time: warning above 75 % of the timeout, error above it -------------------------


@pytest.mark.parametrize(
    ("timeout", "minutes", "expected"),
    [
        (60, 44.5, {}),
        (60, 45.0, {}),  # 75 % of 60 = 45: not above it
        (60, 45.5, {"build-time-margin": "warning"}),
        (60, 60.0, {"build-time-margin": "warning"}),  # at the timeout: close, not over
        (60, 60.5, {"build-time": "error"}),
        (20, 15.0, {}),  # 75 % of 20 = 15
        (20, 15.5, {"build-time-margin": "warning"}),
        (20, 20.5, {"build-time": "error"}),
    ],
)
def test_build_time_against_the_timeout_below_at_and_above(timeout: int, minutes: float, expected: dict) -> None:
    findings = _findings(estimate=dataclasses.replace(SMALL, build_minutes=minutes), timeout=timeout)

    assert _levels(findings) == expected


@pytest.mark.parametrize(("minutes", "rule_id", "verdict"),
                         [(50.0, "build-time-margin", "is close to"), (75.0, "build-time", "exceeds")])
def test_the_build_time_finding_says_how_close_and_how_to_fix(minutes: float, rule_id: str, verdict: str) -> None:
    findings = _findings(estimate=dataclasses.replace(SMALL, build_minutes=minutes))

    assert _one(findings, rule_id).message == (
        f"estimated build time ~{minutes:.0f} min {verdict} build.timeoutMinutes 60 ({BREAKDOWN}); "
        "raise kiln:build.timeoutMinutes or slim the requirements"
    )


# --- each message says what is wrong and how to fix it -------------------------------------


@pytest.mark.parametrize(
    ("changes", "compute", "finding_id", "message"),
    [
        (
            {"has_signature": False},
            ComputeType.CPU_MEDIUM,
            "model-signature",
            "the model has no signature, so requests are not validated and Unity Catalog-style registries reject it; "
            "log it with signature=infer_signature(X, model.predict(X))",
        ),
        (
            {"has_input_example": False},
            ComputeType.CPU_MEDIUM,
            "input-example-missing",
            "no input example: the reload check and the runtime's warm-up prediction cannot prove the model answers "
            "before it takes traffic; log it with input_example=X[:3]",
        ),
        (
            {"requirements": ()},
            ComputeType.CPU_MEDIUM,
            "requirements-missing",
            "the model declares no pip requirements (requirements.txt is missing or empty), so the image cannot "
            "reproduce its environment; log it with pip_requirements=[...] pinned to what it was trained with",
        ),
        (
            {"requirements": ("mlflow==2.17.2", "pandas>=2")},
            ComputeType.CPU_MEDIUM,
            "requirements-unpinned",
            "requirements without an exact version: pandas>=2; the image installs whatever is newest at build time, "
            "which the image tag does not capture; pin them with == (e.g. the versions in pip freeze)",
        ),
        (
            {"requirements": ("mlflow==2.17.2", "pytest==8.3.0")},
            ComputeType.CPU_MEDIUM,
            "dev-packages",
            "test or notebook packages in the serving requirements: pytest; they enlarge the image and are not "
            "needed to serve; drop them from pip_requirements",
        ),
        (
            {"conda_channels": ("main",)},
            ComputeType.CPU_MEDIUM,
            "no-conda-defaults-channel",
            "conda.yaml uses Anaconda's `defaults` channel, which falls under Anaconda's commercial terms; "
            "re-log the model with conda_env using conda-forge, or with pip_requirements",
        ),
        (
            {"mlflow_version": "1.16.0"},
            ComputeType.CPU_MEDIUM,
            "mlflow-legacy",
            "logged with MLflow 1.16.0 (≤ 1.17), whose environments default to the Anaconda `defaults` channel and "
            "predate requirements.txt; re-log it with a current MLflow and pip_requirements",
        ),
        (
            {"requirements": ("mlflow==2.17.2", "torch==2.5.1")},
            ComputeType.CPU_LARGE,
            "gpu-framework-on-cpu",
            "the model uses a GPU framework (torch) but CPU_LARGE has no GPU: it will run, slowly, "
            "in an image carrying unused CUDA libraries; choose GPU_SMALL/GPU_MEDIUM, or pin a CPU build "
            "(torch==X+cpu) if CPU is intended",
        ),
        (
            {"requirements": ("mlflow==2.17.2", "torch==2.5.1+cpu")},
            ComputeType.GPU_SMALL,
            "cpu-torch-on-gpu",
            "the model pins a CPU-only torch build (+cpu) but is served on GPU_SMALL: it would never use the GPU you "
            "pay for; re-log with the CUDA build of torch, or serve it on CPU_MEDIUM/CPU_LARGE",
        ),
    ],
)
def test_each_finding_says_what_is_wrong_and_how_to_fix_it(
    changes: dict, compute: ComputeType, finding_id: str, message: str
) -> None:
    assert _one(_findings(_with(**changes), compute=compute), finding_id).message == message


# --- order, errors and the exception ----------------------------------------------------


def test_findings_list_errors_first_then_warnings_each_in_check_order() -> None:
    manifest = _with(
        has_signature=False,
        has_input_example=False,
        requirements=("mlflow==2.17.2", "pandas", "pytest==8.3.0", "torch==2.5.1"),
        conda_channels=("defaults",),
        python_version="3.8.10",
    )
    estimate = dataclasses.replace(SMALL, model_gib=5.0, build_minutes=50.0)

    findings = _findings(manifest, estimate, environment="dev")

    assert [(f.id, f.level) for f in findings] == [
        ("python-unsupported", "error"),
        ("memory-per-concurrency", "error"),
        ("model-signature", "warning"),
        ("input-example-missing", "warning"),
        ("requirements-unpinned", "warning"),
        ("dev-packages", "warning"),
        ("no-conda-defaults-channel", "warning"),
        ("gpu-framework-on-cpu", "warning"),
        ("build-time-margin", "warning"),
    ]


def test_a_finding_is_reported_as_id_level_and_message() -> None:
    finding = Finding("dev-packages", "warning", "drop pytest")

    assert finding.as_dict() == {"id": "dev-packages", "level": "warning", "message": "drop pytest"}


def test_warnings_alone_do_not_stop_a_deployment() -> None:
    findings = _findings(_with(has_signature=False, has_input_example=False), environment="dev")

    raise_for_errors("fraud.champion", findings)  # no exception: both are warnings in dev


def test_no_findings_do_not_stop_a_deployment() -> None:
    raise_for_errors("fraud.champion", [])


def test_an_error_raises_one_line_per_error_and_none_for_warnings() -> None:
    findings = [
        Finding("model-signature", "warning", "log a signature"),
        Finding("python-unsupported", "error", "re-log from 3.11"),
        Finding("no-conda-defaults-channel", "error", "use conda-forge"),
    ]

    with pytest.raises(PackagingError) as raised:
        raise_for_errors("fraud.champion", findings)

    assert str(raised.value) == (
        "served model fraud.champion cannot be packaged:\n"
        "  [python-unsupported] re-log from 3.11\n"
        "  [no-conda-defaults-channel] use conda-forge"
    )
    assert raised.value.served_model == "fraud.champion"
    assert [f.id for f in raised.value.findings] == ["python-unsupported", "no-conda-defaults-channel"]

"""Packaging checks on real MLflow models, one failure each, plus the pure estimate rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.plan.catalog import PROFILES, ComputeType
from models.bake import BakedModel, bake
from models.checks import CheckInput, PackagingError, ServingTarget, check_packaging, raise_for_errors
from models.estimates import GIB, codebuild_compute_type, estimate_image
from models.examples.seed import pinned
from tests.bake_support import edit_yaml, save_pyfunc


def _target(compute: ComputeType = ComputeType.CPU_MEDIUM, environment: str = "dev", timeout: int = 60) -> ServingTarget:
    return ServingTarget("fraud.champion", environment, PROFILES[compute], timeout)


def _bake(path: Path, tracking_uri: str, gpu: bool = False) -> BakedModel:
    return bake(str(path), tracking_uri, gpu=gpu)


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """The models here are local folders, so no store is read: an empty file store will do
    (the seeded example store would cost seconds per test session, and per mutant)."""
    return (tmp_path / "mlruns").as_uri()


def _ids(findings) -> dict[str, str]:
    return {f.id: f.level for f in findings}


def test_a_well_packaged_model_has_no_findings(tmp_path: Path, tracking_uri: str) -> None:
    baked = _bake(save_pyfunc(tmp_path / "model"), tracking_uri)

    assert baked.findings(_target(environment="prod")) == []


def test_missing_signature_is_an_error_in_prod_and_a_warning_elsewhere(tmp_path: Path, tracking_uri: str) -> None:
    baked = _bake(save_pyfunc(tmp_path / "model", signature=False, input_example=False), tracking_uri)

    assert _ids(baked.findings(_target(environment="prod")))["model-signature"] == "error"
    assert _ids(baked.findings(_target(environment="dev")))["model-signature"] == "warning"


def test_missing_input_example_is_a_warning(tmp_path: Path, tracking_uri: str) -> None:
    baked = _bake(save_pyfunc(tmp_path / "model", input_example=False), tracking_uri)

    assert _ids(baked.findings(_target()))["input-example-missing"] == "warning"


def test_missing_requirements_file_is_an_error(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model")
    (model / "requirements.txt").unlink()

    findings = _bake(model, tracking_uri).findings(_target())

    assert _ids(findings)["requirements-missing"] == "error"


def test_unpinned_requirements_name_each_package(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model", requirements=["mlflow", "pandas>=2"])

    findings = _bake(model, tracking_uri).findings(_target(environment="prod"))

    unpinned = next(f for f in findings if f.id == "requirements-unpinned")
    assert unpinned.level == "error"
    assert "mlflow, pandas>=2" in unpinned.message


def test_test_and_notebook_packages_are_flagged(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model", requirements=[*pinned("mlflow", "pandas"), "pytest==8.3.0", "jupyter==1.1.1"])

    findings = _bake(model, tracking_uri).findings(_target())

    dev = next(f for f in findings if f.id == "dev-packages")
    assert (dev.level, "jupyter, pytest" in dev.message) == ("warning", True)


def test_conda_defaults_channel_is_an_error_in_prod(tmp_path: Path, tracking_uri: str) -> None:
    conda_env = {
        "name": "legacy",
        "channels": ["defaults"],
        "dependencies": ["python=3.11.7", "pip", {"pip": pinned("mlflow", "pandas")}],
    }
    model = save_pyfunc(tmp_path / "model", conda_env=conda_env)

    findings = _bake(model, tracking_uri).findings(_target(environment="prod"))

    assert _ids(findings)["no-conda-defaults-channel"] == "error"


def test_a_model_logged_with_mlflow_1_17_is_an_error(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model")
    edit_yaml(model / "MLmodel", mlflow_version="1.17.0")

    findings = _bake(model, tracking_uri).findings(_target())

    legacy = next(f for f in findings if f.id == "mlflow-legacy")
    assert legacy.level == "error" and "1.17.0" in legacy.message


def test_python_without_a_base_image_is_an_error(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model")
    edit_yaml(model / "python_env.yaml", python="3.7.9")

    findings = _bake(model, tracking_uri).findings(_target())

    python = next(f for f in findings if f.id == "python-unsupported")
    assert python.level == "error" and "3.7.9" in python.message


def test_a_gpu_framework_on_cpu_compute_is_a_warning(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model", requirements=[*pinned("mlflow", "pandas"), "torch==2.5.1"])

    findings = _bake(model, tracking_uri).findings(_target(ComputeType.CPU_MEDIUM))

    assert _ids(findings)["gpu-framework-on-cpu"] == "warning"


def test_cpu_only_torch_on_gpu_compute_is_an_error(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model", requirements=[*pinned("mlflow", "pandas"), "torch==2.5.1+cpu"])

    findings = _bake(model, tracking_uri, gpu=True).findings(_target(ComputeType.GPU_SMALL))

    assert _ids(findings)["cpu-torch-on-gpu"] == "error"


def test_build_time_over_the_timeout_is_an_error_with_the_estimate(tmp_path: Path, tracking_uri: str) -> None:
    model = save_pyfunc(tmp_path / "model", requirements=[*pinned("mlflow", "pandas"), "torch==2.5.1"])

    findings = _bake(model, tracking_uri).findings(_target(timeout=5))

    build = next(f for f in findings if f.id == "build-time")
    assert build.level == "error" and "build.timeoutMinutes 5" in build.message


# Memory and disk need multi-GiB models; writing those in a test costs minutes of I/O, so the
# real manifest of a small model is given a large size (the only field these checks read).
def _with_size(baked: BakedModel, gib: float) -> CheckInput:
    manifest = dataclasses.replace(baked.manifest, size_bytes=int(gib * GIB))
    estimate = estimate_image(manifest.requirements, manifest.size_bytes, gpu=False, system_cuda=False)
    return CheckInput(manifest, baked.environment, estimate, _target(ComputeType.CPU_MEDIUM))


def test_a_model_larger_than_memory_per_concurrency_is_an_error(tmp_path: Path, tracking_uri: str) -> None:
    baked = _bake(save_pyfunc(tmp_path / "model"), tracking_uri)

    findings = check_packaging(_with_size(baked, 5))

    memory = next(f for f in findings if f.id == "memory-per-concurrency")
    assert memory.level == "error" and "8 GiB per concurrency" in memory.message


def test_an_image_and_model_beyond_the_root_volume_fail_with_the_numbers(tmp_path: Path, tracking_uri: str) -> None:
    baked = _bake(save_pyfunc(tmp_path / "model"), tracking_uri)

    findings = check_packaging(_with_size(baked, 40))

    disk = next(f for f in findings if f.id == "image-disk-instance")
    assert "CPU_MEDIUM root volume is 30 GiB" in disk.message and disk.message.startswith("needs ~")


def test_the_builder_is_the_smallest_codebuild_type_whose_disk_fits() -> None:
    assert codebuild_compute_type(10)[0] == "BUILD_GENERAL1_MEDIUM"
    assert codebuild_compute_type(200)[0] == "BUILD_GENERAL1_XLARGE"
    assert codebuild_compute_type(10_000)[0] is None


def test_error_findings_raise_a_packaging_error_naming_model_check_and_fix(tmp_path: Path, tracking_uri: str) -> None:
    baked = _bake(save_pyfunc(tmp_path / "model", signature=False, input_example=False), tracking_uri)

    with pytest.raises(PackagingError) as raised:
        raise_for_errors("fraud.champion", baked.findings(_target(environment="prod")))

    message = str(raised.value)
    assert "fraud.champion" in message and "[model-signature]" in message and "infer_signature" in message
    assert "input-example-missing" not in message  # warnings do not stop a deployment


def test_a_measured_install_replaces_the_package_table_in_the_image_estimate() -> None:
    requirements = ("mlflow==3.17.2", "torch==2.9.0")
    table = estimate_image(requirements, model_bytes=0, gpu=False, system_cuda=False)

    measured = estimate_image(requirements, model_bytes=0, gpu=False, system_cuda=False, installed_bytes=2**30)

    assert (table.measured, measured.measured) == (False, True)
    assert measured.dependencies_gib == 1.0 and measured.runtime_gib == 0.0 < table.runtime_gib
    assert measured.image_gib < table.image_gib and measured.build_minutes < table.build_minutes
    assert "installed requirements 1.00 (measured in the reload check's virtualenv)" in measured.breakdown()

"""Environment hash and build context: what goes into an image, and that it is content-addressed."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

import models.environment as environment_module
from models.build_context import BuildContextError, render_build_context, render_buildspec
from models.environment import SYSTEM_CUDA_BASE, Environment, environment_for
from tests.bake_support import kiln_runtime  # noqa: F401 (fixture)
from tests.manifests import SKLEARN_MANIFEST

MANIFEST = dataclasses.replace(
    SKLEARN_MANIFEST, mlflow_version="3.17.2", requirements=("mlflow==3.17.2", "scikit-learn==1.5.2", "pandas==2.2.3")
)


def test_model_versions_with_the_same_requirements_share_one_image_tag() -> None:
    retrained = dataclasses.replace(MANIFEST, size_bytes=999_999, has_input_example=False, python_version="3.11.9")

    assert environment_for(retrained, gpu=False).image_tag == environment_for(MANIFEST, gpu=False).image_tag


def test_a_changed_requirement_is_a_new_image_tag() -> None:
    upgraded = dataclasses.replace(MANIFEST, requirements=("mlflow==3.17.2", "scikit-learn==1.6.0", "pandas==2.2.3"))

    assert environment_for(upgraded, gpu=False).image_tag != environment_for(MANIFEST, gpu=False).image_tag


def test_a_changed_runtime_is_a_new_image_tag(kiln_runtime: Path) -> None:  # noqa: F811
    before = environment_for(MANIFEST, gpu=False).image_tag
    (kiln_runtime / "extra_module_for_this_test.py").write_text("# changes the runtime\n")
    try:
        assert environment_for(MANIFEST, gpu=False).image_tag != before
    finally:
        (kiln_runtime / "extra_module_for_this_test.py").unlink()


def test_the_cpu_base_is_python_slim_of_the_model_python() -> None:
    assert environment_for(MANIFEST, gpu=False).base_image == "public.ecr.aws/docker/library/python:3.11-slim-bookworm"


def test_the_dockerfile_installs_dependencies_before_the_runtime_and_runs_as_non_root(
    tmp_path: Path, kiln_runtime: Path  # noqa: F811
) -> None:
    context = render_build_context(environment_for(MANIFEST, gpu=False), tmp_path)
    dockerfile = (context.directory / "Dockerfile").read_text()

    assert dockerfile.index("pip install") < dockerfile.index("COPY runtime/")
    assert "FROM public.ecr.aws/docker/library/python:3.11-slim-bookworm" in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert "http://127.0.0.1:8080/ping" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "runtime"]' in dockerfile
    assert (context.directory / "model-requirements.txt").read_text().splitlines() == list(MANIFEST.requirements)
    assert (context.directory / "runtime" / "__main__.py").is_file()
    assert "__pycache__" in (context.directory / ".dockerignore").read_text()


def test_a_torch_gpu_dockerfile_starts_from_python_and_asks_the_container_toolkit_for_the_driver(
    tmp_path: Path, kiln_runtime: Path  # noqa: F811
) -> None:
    torch_model = dataclasses.replace(MANIFEST, requirements=("mlflow==3.17.2", "torch==2.14.1"))
    dockerfile = (render_build_context(environment_for(torch_model, gpu=True), tmp_path).directory / "Dockerfile").read_text()

    assert "FROM public.ecr.aws/docker/library/python:3.11-slim-bookworm" in dockerfile
    assert "NVIDIA_VISIBLE_DEVICES=all" in dockerfile and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in dockerfile
    assert "uv " not in dockerfile and "RUN python -m venv /opt/kiln/venv" in dockerfile


def test_a_cpu_dockerfile_asks_for_no_gpu(tmp_path: Path, kiln_runtime: Path) -> None:  # noqa: F811
    dockerfile = (render_build_context(environment_for(MANIFEST, gpu=False), tmp_path).directory / "Dockerfile").read_text()

    assert "NVIDIA_" not in dockerfile


def test_a_system_cuda_dockerfile_installs_the_model_python_with_uv(tmp_path: Path, kiln_runtime: Path) -> None:  # noqa: F811
    tensorflow = dataclasses.replace(MANIFEST, requirements=("mlflow==3.17.2", "tensorflow==2.18.0"))
    dockerfile = (render_build_context(environment_for(tensorflow, gpu=True), tmp_path).directory / "Dockerfile").read_text()

    assert f"FROM {SYSTEM_CUDA_BASE}" in dockerfile
    assert "uv python install 3.11" in dockerfile


def test_the_context_archive_is_byte_identical_across_renders(tmp_path: Path, kiln_runtime: Path) -> None:  # noqa: F811
    environment = environment_for(MANIFEST, gpu=False)

    first = render_build_context(environment, tmp_path / "a")
    second = render_build_context(environment, tmp_path / "b")

    assert first.archive_sha256 == second.archive_sha256
    names = zipfile.ZipFile(first.archive).namelist()
    assert "Dockerfile" in names and "runtime/__main__.py" in names


def test_a_missing_runtime_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment_module, "RUNTIME_PACKAGE_DIR", tmp_path / "nowhere")

    with pytest.raises(BuildContextError, match="nowhere/__main__.py"):
        render_build_context(Environment("3.11", ("mlflow==3.17.2",), "python:3.11-slim"), tmp_path)


def test_the_buildspec_skips_the_build_when_the_tag_exists_and_pushes_otherwise() -> None:
    buildspec = render_buildspec()

    assert 'describe-images --repository-name "$REPOSITORY_NAME" --image-ids imageTag="$IMAGE_TAG"' in buildspec
    assert 'docker push "$REPOSITORY_URI:$IMAGE_TAG"' in buildspec


def test_the_context_carries_the_runtime_package_whole_and_nothing_else_of_kiln(kiln_runtime: Path) -> None:  # noqa: F811
    files = render_build_context(environment_for(MANIFEST, gpu=False), kiln_runtime.parent / "contexts").directory
    copied = {p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()}
    runtime = {f"runtime/{p.relative_to(kiln_runtime).as_posix()}" for p in kiln_runtime.rglob("*") if p.is_file()}

    assert runtime <= copied and "runtime/requirements.txt" in runtime and "runtime/digest.py" in runtime
    assert copied - runtime == {"Dockerfile", ".dockerignore", "model-requirements.txt", "runtime-requirements.txt",
                                "kiln-environment.json"}

"""The environment hash (the image tag) and the base image, input by input, for CPU and GPU images.

The tag must change when anything that goes into the image changes (else a stale image
serves the new model) and must not change for anything else (else every retrained model
version rebuilds a 20-60 minute image).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import models.environment as environment_module
from models.environment import (
    SYSTEM_CUDA_BASE,
    Environment,
    brings_own_cuda,
    environment_for,
    python_minor,
    recipe_digest,
    runtime_requirements,
)
from models.manifest import Manifest
from tests.manifests import SKLEARN_MANIFEST

ROOT = Path(__file__).resolve().parents[2]
CPU_BASE = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"
GPU_BASE = SYSTEM_CUDA_BASE

CPU_ENVIRONMENT = Environment(
    python_version="3.11",
    requirements=("mlflow==2.17.2", "scikit-learn==1.5.2", "pandas==2.2.3"),
    base_image=CPU_BASE,
    runtime_requirements=("uvicorn>=0.30", "boto3>=1.34"),
    recipe_digest="a" * 64,
)
GPU_ENVIRONMENT = Environment(
    python_version="3.11",
    requirements=("mlflow==2.17.2", "torch==2.5.1", "transformers==4.46.3"),
    base_image=GPU_BASE,
    runtime_requirements=("uvicorn>=0.30", "boto3>=1.34"),
    recipe_digest="a" * 64,
    gpu=True,
)

SKLEARN_MODEL = SKLEARN_MANIFEST
TORCH_MODEL = dataclasses.replace(
    SKLEARN_MODEL,
    flavors=("python_function", "pytorch"),
    loader_module="mlflow.pytorch",
    requirements=("mlflow==2.17.2", "torch==2.5.1", "transformers==4.46.3"),
)

# Every input of the hash, changed one at a time.
INPUT_CHANGES = {
    "base image": {"base_image": "public.ecr.aws/docker/library/python:3.12-slim-bookworm"},
    "python version": {"python_version": "3.12"},
    "a requirement's version": {"requirements": ("mlflow==2.17.2", "scikit-learn==1.6.0", "pandas==2.2.3")},
    "an added requirement": {
        "requirements": ("mlflow==2.17.2", "scikit-learn==1.5.2", "pandas==2.2.3", "xgboost==2.1.3")
    },
    "a removed requirement": {"requirements": ("mlflow==2.17.2", "scikit-learn==1.5.2")},
    "no requirements": {"requirements": ()},
    "a runtime requirement": {"runtime_requirements": ("uvicorn>=0.32", "boto3>=1.34")},
    "no runtime requirements": {"runtime_requirements": ()},
    "the recipe": {"recipe_digest": "b" * 64},
}


@pytest.mark.parametrize("environment", [CPU_ENVIRONMENT, GPU_ENVIRONMENT], ids=["cpu", "gpu"])
@pytest.mark.parametrize("changes", list(INPUT_CHANGES.values()), ids=list(INPUT_CHANGES))
def test_every_input_of_the_hash_changes_the_image_tag(environment: Environment, changes: dict) -> None:
    assert dataclasses.replace(environment, **changes).image_tag != environment.image_tag


@pytest.mark.parametrize("environment", [CPU_ENVIRONMENT, GPU_ENVIRONMENT], ids=["cpu", "gpu"])
def test_a_new_runtime_version_changes_the_image_tag(environment: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    before = environment.image_tag
    monkeypatch.setattr(environment_module, "RUNTIME_VERSION", "0.2.0")

    assert environment.image_tag != before


@pytest.mark.parametrize("environment", [CPU_ENVIRONMENT, GPU_ENVIRONMENT], ids=["cpu", "gpu"])
def test_requirements_in_another_order_share_the_image_tag(environment: Environment) -> None:
    reordered = dataclasses.replace(
        environment,
        requirements=tuple(reversed(environment.requirements)),
        runtime_requirements=tuple(reversed(environment.runtime_requirements)),
    )

    assert reordered.image_tag == environment.image_tag


def test_a_requirement_moved_from_the_model_to_the_runtime_is_a_new_image_tag() -> None:
    # The runtime's requirements are installed in their own layer before the model's.
    moved = dataclasses.replace(
        CPU_ENVIRONMENT,
        requirements=("mlflow==2.17.2", "scikit-learn==1.5.2"),
        runtime_requirements=("pandas==2.2.3", "uvicorn>=0.30", "boto3>=1.34"),
    )

    assert moved.image_tag != CPU_ENVIRONMENT.image_tag


def test_the_image_tag_is_env_and_20_hex_digits_of_the_sha256() -> None:
    tag = CPU_ENVIRONMENT.image_tag

    assert re.fullmatch(r"[0-9a-f]{64}", CPU_ENVIRONMENT.hash)
    assert re.fullmatch(r"env-[0-9a-f]{20}", tag)
    assert tag == f"env-{CPU_ENVIRONMENT.hash[:20]}"


# --- environment_for: what a model contributes, CPU and GPU -----------------------------

NOT_INPUTS = {
    "model size": {"size_bytes": 7 * 1024**3},
    "signature": {"has_signature": False, "signature_inputs": '[{"type": "string"}]'},
    "input example": {"has_input_example": False},
    "python patch level": {"python_version": "3.11.11"},
    "logging mlflow version": {"mlflow_version": "2.18.0"},
    "conda channels": {"conda_channels": ("conda-forge", "pytorch")},
    "code paths": {"code_paths": ("code/features.py",)},
    "loader module": {"loader_module": "mlflow.pyfunc.model"},
    "extra flavor": {"flavors": ("python_function", "sklearn", "onnx")},
}


@pytest.mark.parametrize(("manifest", "gpu"), [(SKLEARN_MODEL, False), (TORCH_MODEL, True)], ids=["cpu", "gpu"])
@pytest.mark.parametrize("changes", list(NOT_INPUTS.values()), ids=list(NOT_INPUTS))
def test_what_the_image_does_not_hold_leaves_the_tag_alone(manifest: Manifest, gpu: bool, changes: dict) -> None:
    assert (
        environment_for(dataclasses.replace(manifest, **changes), gpu).image_tag
        == environment_for(manifest, gpu).image_tag
    )


@pytest.mark.parametrize(("manifest", "gpu"), [(SKLEARN_MODEL, False), (TORCH_MODEL, True)], ids=["cpu", "gpu"])
def test_a_new_python_minor_is_a_new_image_tag_for_cpu_and_gpu_images(manifest: Manifest, gpu: bool) -> None:
    # GPU images share one CUDA base for every Python and install the interpreter on top,
    # so only the Python version itself tells 3.11 and 3.12 apart there.
    newer = dataclasses.replace(manifest, python_version="3.12.8")

    assert environment_for(newer, gpu).image_tag != environment_for(manifest, gpu).image_tag
    assert environment_for(newer, gpu).python_version == "3.12"


def test_the_gpu_image_of_another_python_keeps_the_cuda_base() -> None:
    tensorflow = dataclasses.replace(TORCH_MODEL, requirements=("mlflow==2.17.2", "tensorflow==2.18.0"))
    newer = dataclasses.replace(tensorflow, python_version="3.12.8")

    assert environment_for(newer, gpu=True).base_image == environment_for(tensorflow, gpu=True).base_image == GPU_BASE


@pytest.mark.parametrize(("manifest", "gpu"), [(SKLEARN_MODEL, False), (TORCH_MODEL, True)], ids=["cpu", "gpu"])
def test_a_changed_model_requirement_is_a_new_image_tag_for_cpu_and_gpu_images(manifest: Manifest, gpu: bool) -> None:
    changed = dataclasses.replace(manifest, requirements=(*manifest.requirements[:-1], "numpy==2.1.3"))

    assert environment_for(changed, gpu).image_tag != environment_for(manifest, gpu).image_tag


def test_the_same_model_on_cpu_and_gpu_gets_two_images() -> None:
    # Same slim base (torch brings its CUDA), but the GPU image asks the container toolkit for the driver.
    cpu, gpu = environment_for(TORCH_MODEL, gpu=False), environment_for(TORCH_MODEL, gpu=True)

    assert (cpu.base_image, gpu.base_image) == (CPU_BASE, CPU_BASE)
    assert (cpu.gpu, gpu.gpu) == (False, True)
    assert cpu.image_tag != gpu.image_tag


def test_environment_for_carries_the_model_requirements_runtime_and_recipe() -> None:
    environment = environment_for(SKLEARN_MODEL, gpu=False)

    assert environment == Environment(
        python_version="3.11",
        requirements=("mlflow==2.17.2", "scikit-learn==1.5.2", "pandas==2.2.3"),
        base_image=CPU_BASE,
        runtime_requirements=runtime_requirements(),
        recipe_digest=recipe_digest(),
        gpu=False,
    )
    assert "mlflow>=3.0,<4" in environment.runtime_requirements
    assert re.fullmatch(r"[0-9a-f]{64}", environment.recipe_digest)


@pytest.mark.parametrize(
    ("python", "minor", "base"),
    [
        ("3.9.21", "3.9", "public.ecr.aws/docker/library/python:3.9-slim-bookworm"),
        ("3.13.1", "3.13", "public.ecr.aws/docker/library/python:3.13-slim-bookworm"),
        ("3.10", "3.10", "public.ecr.aws/docker/library/python:3.10-slim-bookworm"),
        # A model that recorded no Python (the packaging check stops it) still names an image.
        ("", "", "public.ecr.aws/docker/library/python:3-slim-bookworm"),
    ],
)
def test_the_cpu_base_image_follows_the_model_python_minor(python: str, minor: str, base: str) -> None:
    environment = environment_for(dataclasses.replace(SKLEARN_MODEL, python_version=python), gpu=False)

    assert (environment.python_version, environment.base_image) == (minor, base)


@pytest.mark.parametrize(
    ("version", "minor"), [("3.11.7", "3.11"), ("3.11", "3.11"), ("3.10.14", "3.10"), ("3", "3"), ("", "")]
)
def test_python_minor_drops_the_patch_level(version: str, minor: str) -> None:
    assert python_minor(version) == minor


def test_the_image_tag_is_the_same_in_another_process() -> None:
    # CodeBuild, `kiln plan` on a laptop and `pulumi up` in CI must agree on the tag.
    code = (
        "from tests.models.test_environment_hash import SKLEARN_MODEL, TORCH_MODEL; from models.environment import environment_for; "
        "print(environment_for(SKLEARN_MODEL, False).image_tag, environment_for(TORCH_MODEL, True).image_tag)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}

    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)

    expected = f"{environment_for(SKLEARN_MODEL, False).image_tag} {environment_for(TORCH_MODEL, True).image_tag}"
    assert output.stdout.strip() == expected


# --- the GPU base: the slim Python base when the framework brings its CUDA, else a CUDA base ---


@pytest.mark.parametrize(
    "requirements",
    [
        # torch's Linux wheels depend on the nvidia-* CUDA wheels, whatever the release: 2.9 on
        # CUDA 12.8, 2.14 on CUDA 13.0 (both got the CUDA 12.4 base from the old table).
        ("torch==2.9.0",),
        ("torch==2.14.1",),
        ("torch==2.5.1",),
        ("torch==2.4.0+cu118",),
        ("Torch==2.7.0",),
        ("torch[opt-einsum]==2.7.0",),
        ("torch @ https://download.pytorch.org/whl/cu128/torch-2.9.0%2Bcu128-cp311-cp311-manylinux_2_28_x86_64.whl",),
        ("tensorflow[and-cuda]==2.18.0",),
        ("jax[cuda12]==0.4.38",),
        ("jax[cuda13]==0.8.0",),
        ("--extra-index-url https://download.pytorch.org/whl/cu128", "mlflow==2.17.2", "numpy==2.1.3", "torch==2.9.0"),
    ],
)
def test_a_gpu_framework_that_brings_its_cuda_gets_the_slim_python_base(requirements: tuple[str, ...]) -> None:
    environment = environment_for(dataclasses.replace(TORCH_MODEL, requirements=requirements), gpu=True)

    assert brings_own_cuda(requirements)
    assert (environment.base_image, environment.gpu, environment.system_cuda) == (CPU_BASE, True, False)


@pytest.mark.parametrize(
    "requirements",
    [
        ("tensorflow==2.18.0",),  # without [and-cuda] it loads CUDA from the system
        ("jax==0.4.38",),
        ("onnxruntime-gpu==1.20.1",),
        ("torchvision==0.20.1+cu118",),  # not torch itself
        ("mlflow==2.17.2", "scikit-learn==1.5.2"),
        ("--extra-index-url https://download.pytorch.org/whl/cu128",),
        ("not a requirement ===",),
        (),
    ],
)
def test_a_gpu_image_without_such_a_framework_gets_the_cuda_base(requirements: tuple[str, ...]) -> None:
    environment = environment_for(dataclasses.replace(TORCH_MODEL, requirements=requirements), gpu=True)

    assert not brings_own_cuda(requirements)
    assert (environment.base_image, environment.system_cuda) == (SYSTEM_CUDA_BASE, True)


def test_a_cpu_image_never_gets_the_cuda_base() -> None:
    tensorflow = dataclasses.replace(TORCH_MODEL, requirements=("tensorflow==2.18.0",))

    assert environment_for(tensorflow, gpu=False).base_image == CPU_BASE


# --- what else goes into the image: the runtime's requirements and the recipe ---------


def test_runtime_requirements_drop_comments_and_blank_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        '# the runtime\nmlflow>=3.0,<4\n\n   \nuvicorn>=0.30  # the server # see docs/runtime.md\n# boto3\nuvloop>=0.19; sys_platform != "win32"\n'
    )
    monkeypatch.setattr(environment_module, "RUNTIME_REQUIREMENTS_FILE", requirements)

    assert runtime_requirements() == ("mlflow>=3.0,<4", "uvicorn>=0.30", 'uvloop>=0.19; sys_platform != "win32"')


@pytest.fixture
def recipe_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private models/ folder with the files the recipe digest reads, small and known."""
    models = tmp_path / "models"
    (models / "templates").mkdir(parents=True)
    (models / "runtime" / "serving").mkdir(parents=True)
    (models / "build_context.py").write_text("# build_context.py\n")
    (models / "templates" / "Dockerfile.j2").write_text("FROM {{ base_image }}\n")
    for name in ("__init__.py", "digest.py"):
        (models / "runtime" / name).write_text(f"# {name}\n")
    (models / "runtime" / "__main__.py").write_text("print('serve')\n")
    (models / "runtime" / "serving" / "app.py").write_text("app = None\n")
    monkeypatch.setattr(environment_module, "MODELS_DIR", models)
    monkeypatch.setattr(environment_module, "TEMPLATES_DIR", models / "templates")
    monkeypatch.setattr(environment_module, "RUNTIME_PACKAGE_DIR", models / "runtime")
    return models


def test_the_recipe_digest_is_the_same_for_the_same_files(recipe_tree: Path) -> None:
    assert recipe_digest() == recipe_digest()


@pytest.mark.parametrize(
    "path",
    [
        "build_context.py",
        "templates/Dockerfile.j2",
        "runtime/__init__.py",
        "runtime/digest.py",
        "runtime/__main__.py",
        "runtime/serving/app.py",
    ],
)
def test_a_changed_recipe_file_changes_the_recipe_digest(recipe_tree: Path, path: str) -> None:
    before = recipe_digest()
    with (recipe_tree / path).open("a") as file:
        file.write("# changed\n")

    assert recipe_digest() != before


@pytest.mark.parametrize("path", ["templates/buildspec.yml.j2", "runtime/limits.py", "runtime/serving/formats.py"])
def test_an_added_recipe_file_changes_the_recipe_digest(recipe_tree: Path, path: str) -> None:
    before = recipe_digest()
    (recipe_tree / path).write_text("x = 1\n")

    assert recipe_digest() != before


def test_a_renamed_recipe_file_changes_the_recipe_digest(recipe_tree: Path) -> None:
    before = recipe_digest()
    (recipe_tree / "runtime" / "serving" / "app.py").rename(recipe_tree / "runtime" / "serving" / "application.py")

    assert recipe_digest() != before


def test_a_file_moved_from_the_templates_to_the_runtime_changes_the_recipe_digest(recipe_tree: Path) -> None:
    before = recipe_digest()
    (recipe_tree / "templates" / "Dockerfile.j2").rename(recipe_tree / "runtime" / "Dockerfile.j2")

    assert recipe_digest() != before


@pytest.mark.parametrize(
    "path",
    [
        "runtime/__pycache__/app.cpython-311.pyc",
        "runtime/serving/__pycache__/app.cpython-311.pyc",
        "runtime/serving/__pycache__/app.cpython-311.pyc.140230864",  # the interpreter's temporary name while writing it
        "runtime/serving/app.pyc",  # `compileall -b` writes it beside the source
        "runtime/serving/app.pyo",
    ],
)
def test_bytecode_the_image_does_not_hold_leaves_the_recipe_digest_alone(recipe_tree: Path, path: str) -> None:
    # render_files (models/build_context.py) copies no bytecode into the image, so none may
    # change the tag and rebuild an identical image.
    before = recipe_digest()
    (recipe_tree / path).parent.mkdir(exist_ok=True)
    (recipe_tree / path).write_bytes(b"\x00\x01")

    assert recipe_digest() == before


def test_empty_folders_do_not_change_the_recipe_digest(recipe_tree: Path) -> None:
    before = recipe_digest()
    (recipe_tree / "runtime" / "empty").mkdir()

    assert recipe_digest() == before


def test_the_recipe_digest_does_not_need_a_templates_folder(recipe_tree: Path) -> None:
    before = recipe_digest()
    (recipe_tree / "templates" / "Dockerfile.j2").unlink()
    (recipe_tree / "templates").rmdir()

    assert re.fullmatch(r"[0-9a-f]{64}", recipe_digest()) and recipe_digest() != before


def test_the_recipe_digest_is_the_same_in_another_process(recipe_tree: Path) -> None:
    # Set and file-system iteration order differ between processes; the digest must not.
    code = (
        "import sys; from pathlib import Path; import models.environment as e; m = Path(sys.argv[1]); "
        "e.MODELS_DIR, e.TEMPLATES_DIR, e.RUNTIME_PACKAGE_DIR = m, m / 'templates', m / 'runtime'; "
        "print(e.recipe_digest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "54321"}

    output = subprocess.run(
        [sys.executable, "-c", code, str(recipe_tree)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )

    assert output.stdout.strip() == recipe_digest()

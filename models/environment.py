"""The serving environment a model needs, and its content hash (the image tag).

Decision 1 in docs/decisions.md: images hold the environment, not the model. Two model versions
with the same base image, Python and requirements share one image, so the hash covers
exactly those, plus what else goes into the image (the Kiln runtime's code and
requirements, and the Dockerfile recipe), and nothing about the model's weights.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import runtime
from models.manifest import Manifest, requirement_name
from runtime import RUNTIME_VERSION

MODELS_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = MODELS_DIR / "templates"
# The serving runtime (`python -m runtime`) that every image runs as its entrypoint; the
# image copies the package whole (its contract, digest and requirements are inside it).
RUNTIME_PACKAGE_DIR = Path(runtime.__file__).resolve().parent
RUNTIME_REQUIREMENTS_FILE = RUNTIME_PACKAGE_DIR / "requirements.txt"

# Python versions with an official python:<v>-slim-bookworm image (and a standalone build
# for GPU images). Older ones are end-of-life upstream and get no security fixes.
SUPPORTED_PYTHON = ("3.9", "3.10", "3.11", "3.12", "3.13")

CPU_BASE_IMAGE = "public.ecr.aws/docker/library/python:{python}-slim-bookworm"
# NVIDIA's CUDA runtime images with cuDNN, from NGC (no Docker Hub pull limits in CodeBuild).
GPU_BASE_IMAGES: dict[str, str] = {
    "11.8": "nvcr.io/nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04",
    "12.1": "nvcr.io/nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04",
    "12.4": "nvcr.io/nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
    "12.6": "nvcr.io/nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04",
    "12.8": "nvcr.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04",
}
DEFAULT_CUDA = "12.4"
# The CUDA version of torch's default Linux wheel on PyPI, per torch minor release
# (pytorch.org "Previous versions" install matrix).
TORCH_DEFAULT_CUDA: dict[str, str] = {
    "2.0": "11.8",
    "2.1": "12.1",
    "2.2": "12.1",
    "2.3": "12.1",
    "2.4": "12.1",
    "2.5": "12.4",
    "2.6": "12.4",
    "2.7": "12.6",
    "2.8": "12.8",
}


@dataclass(frozen=True)
class Environment:
    python_version: str
    requirements: tuple[str, ...]
    base_image: str
    runtime_requirements: tuple[str, ...] = ()
    # sha256 of what else is copied into the image: runtime code and the Dockerfile recipe.
    recipe_digest: str = ""
    gpu: bool = False

    @property
    def hash(self) -> str:
        text = "\n".join(
            [
                self.base_image,
                self.python_version,
                RUNTIME_VERSION,
                self.recipe_digest,
                *sorted(self.requirements),
                "--runtime--",
                *sorted(self.runtime_requirements),
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def image_tag(self) -> str:
        return f"env-{self.hash[:20]}"


def runtime_requirements() -> tuple[str, ...]:
    """The runtime's own pip requirements (runtime/requirements.txt), installed into
    every image beside the model's."""
    lines = (line.split("#", 1)[0].strip() for line in RUNTIME_REQUIREMENTS_FILE.read_text().splitlines())
    return tuple(line for line in lines if line)


def recipe_digest() -> str:
    """Digest of the templates, the context renderer and the runtime package: a change to any is a new image."""
    digest = hashlib.sha256()
    named = {"build_context.py": MODELS_DIR / "build_context.py"}
    for prefix, root in (("templates", TEMPLATES_DIR), ("runtime", RUNTIME_PACKAGE_DIR)):
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                # The same files the build context copies: no bytecode, wherever it lies.
                if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                    named[f"{prefix}/{path.relative_to(root).as_posix()}"] = path
    for name, path in named.items():
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cuda_version_for(requirements: tuple[str, ...]) -> str:
    """The CUDA runtime the model's framework was built against.

    `torch==2.4.0+cu118` names it; a plain `torch==2.5.1` uses the CUDA of that release's
    default PyPI wheel. Anything else gets DEFAULT_CUDA.
    """
    for requirement in requirements:
        if requirement_name(requirement) != "torch":
            continue
        local = re.search(r"\+cu(\d+)(\d)\b", requirement)
        if local:
            version = f"{local.group(1)}.{local.group(2)}"
            if version in GPU_BASE_IMAGES:
                return version
        pinned = re.search(r"==\s*(\d+)\.(\d+)", requirement)
        if pinned:
            return TORCH_DEFAULT_CUDA.get(f"{pinned.group(1)}.{pinned.group(2)}", DEFAULT_CUDA)
    return DEFAULT_CUDA


def python_minor(version: str) -> str:
    """Python major.minor picks the base image; the patch level does not change the ABI."""
    return ".".join(version.split(".")[:2])


def environment_for(manifest: Manifest, gpu: bool) -> Environment:
    python = python_minor(manifest.python_version)
    base = GPU_BASE_IMAGES[cuda_version_for(manifest.requirements)] if gpu else CPU_BASE_IMAGE.format(python=python or "3")
    return Environment(
        python_version=python,
        requirements=manifest.requirements,
        base_image=base,
        runtime_requirements=runtime_requirements(),
        recipe_digest=recipe_digest(),
        gpu=gpu,
    )

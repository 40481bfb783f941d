"""The serving environment a model needs, and its content hash (the image tag).

Decision 1 in docs/decisions.md: images hold the environment, not the model. Two model versions
with the same base image, Python and requirements share one image, so the hash covers
exactly those, plus what else goes into the image (the Kiln runtime's code and
requirements, and the Dockerfile recipe), and nothing about the model's weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import runtime
from models.manifest import Manifest
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

# GPU frameworks whose Linux x86_64 wheels bring their own CUDA libraries (the nvidia-* wheels
# they depend on), by requirement name → the extras that make them do so (none for torch):
# torch's PyPI wheels depend on nvidia-*-cu12 wheels (from 2.14 on cuda-toolkit 13 and
# nvidia-*-cu13); `tensorflow[and-cuda]` (tensorflow.org/install/pip) and `jax[cuda12]` /
# `jax[cuda13]` (docs.jax.dev/en/latest/installation.html) install the same kind of wheels.
# Such an image needs no system CUDA: the slim Python base is enough, and the NVIDIA container
# toolkit mounts the host's driver into it (`docker run --gpus`). A CUDA base under them would
# be a second, unused CUDA stack of several GiB.
FRAMEWORKS_WITH_OWN_CUDA: dict[str, frozenset[str]] = {
    "torch": frozenset(),
    "tensorflow": frozenset({"and-cuda"}),
    "jax": frozenset({"cuda12", "cuda13"}),
}
# For GPU frameworks that load CUDA from the system (tensorflow without [and-cuda],
# onnxruntime-gpu): NVIDIA's CUDA runtime image with cuDNN, at the newest CUDA 12 release.
# CUDA and cuDNN keep their sonames within a major version (libcudart.so.12, libcudnn.so.9), so
# a framework built for any 12.x loads them; the newest minor is also the tag furthest from
# deletion: NVIDIA deletes a CUDA image tag six months after it reaches end of life, on NGC and
# Docker Hub alike (https://gitlab.com/nvidia/container-images/cuda/-/blob/master/doc/support-policy.md).
# It carries no Python of our choosing: the Dockerfile installs one with uv.
SYSTEM_CUDA_BASE = "nvcr.io/nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04"


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
        # `gpu` too: a GPU image on the slim Python base differs from the CPU one only in what
        # it asks of the NVIDIA container toolkit.
        text = "\n".join(
            [
                self.base_image,
                "gpu" if self.gpu else "cpu",
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

    @property
    def system_cuda(self) -> bool:
        """The base is NVIDIA's CUDA image, which has no Python: the Dockerfile installs one."""
        return self.base_image == SYSTEM_CUDA_BASE


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


def brings_own_cuda(requirements: tuple[str, ...]) -> bool:
    """Whether a requirement installs a GPU framework together with its CUDA libraries
    (FRAMEWORKS_WITH_OWN_CUDA); pip options (`--extra-index-url …`) are not requirements."""
    for line in requirements:
        if line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # the image's pip reports it; the base choice does not hinge on it
        extras = FRAMEWORKS_WITH_OWN_CUDA.get(canonicalize_name(requirement.name))
        if extras is not None and (not extras or extras & {canonicalize_name(e) for e in requirement.extras}):
            return True
    return False


def python_minor(version: str) -> str:
    """Python major.minor picks the base image; the patch level does not change the ABI."""
    return ".".join(version.split(".")[:2])


def environment_for(manifest: Manifest, gpu: bool) -> Environment:
    python = python_minor(manifest.python_version)
    python_base = CPU_BASE_IMAGE.format(python=python or "3")
    base = SYSTEM_CUDA_BASE if gpu and not brings_own_cuda(manifest.requirements) else python_base
    return Environment(
        python_version=python,
        requirements=manifest.requirements,
        base_image=base,
        runtime_requirements=runtime_requirements(),
        recipe_digest=recipe_digest(),
        gpu=gpu,
    )

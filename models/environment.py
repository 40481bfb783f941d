"""The serving environment a model needs, and its content hash (the image tag).

Decision 1 in DESIGN.md: images hold the environment, not the model. Two model versions
with the same base image, Python and requirements share one image, so the hash covers
exactly those and nothing about the model's weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from models import RUNTIME_VERSION
from models.manifest import Manifest

CPU_BASE_IMAGE = "public.ecr.aws/docker/library/python:{python}-slim-bookworm"
GPU_BASE_IMAGE = "public.ecr.aws/docker/library/nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"


@dataclass(frozen=True)
class Environment:
    python_version: str
    requirements: tuple[str, ...]
    base_image: str

    @property
    def hash(self) -> str:
        text = "\n".join([self.base_image, self.python_version, RUNTIME_VERSION, *sorted(self.requirements)])
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def image_tag(self) -> str:
        return f"env-{self.hash[:20]}"


def environment_for(manifest: Manifest, gpu: bool) -> Environment:
    """Python major.minor picks the base image; the patch level does not change the ABI."""
    python = ".".join(manifest.python_version.split(".")[:2])
    base = GPU_BASE_IMAGE if gpu else CPU_BASE_IMAGE.format(python=python or "3")
    return Environment(python_version=python, requirements=manifest.requirements, base_image=base)

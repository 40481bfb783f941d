"""The serving environment a model needs, and its content hash (the image tag).

Decision 1 in DESIGN.md: images hold the environment, not the model. Two model versions
with the same base image, Python and requirements share one image, so the hash covers
exactly those and nothing about the model's weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from models import RUNTIME_VERSION

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


def python_version(model_dir: Path) -> str:
    """major.minor from python_env.yaml (MLflow ≥ 2), else conda.yaml, else MLmodel."""
    env_file = model_dir / "python_env.yaml"
    if env_file.is_file():
        full = str((yaml.safe_load(env_file.read_text()) or {}).get("python", ""))
    else:
        full = str((yaml.safe_load((model_dir / "MLmodel").read_text()) or {}).get("python_version", ""))
    return ".".join(full.split(".")[:2]) if full else ""


def declared_requirements(model_dir: Path) -> tuple[str, ...]:
    path = model_dir / "requirements.txt"
    if not path.is_file():
        return ()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line)


def environment_for(model_dir: Path, gpu: bool) -> Environment:
    version = python_version(model_dir)
    base = GPU_BASE_IMAGE if gpu else CPU_BASE_IMAGE.format(python=version or "3")
    return Environment(python_version=version, requirements=declared_requirements(model_dir), base_image=base)

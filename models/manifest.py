"""What an MLflow model says about itself, read from its own files.

MLmodel, requirements.txt, python_env.yaml and conda.yaml are parsed here, with MLflow's
own Model class for MLmodel, so every later step (checks, environment hash, policies,
review) reads one typed manifest instead of re-parsing files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Flavors whose models run their predictions on a GPU when one is present (MLflow moves
# PyTorch and Transformers models to the device itself).
GPU_FLAVORS = ("pytorch", "transformers", "sentence_transformers", "tensorflow", "keras")
GPU_PACKAGES = ("torch", "tensorflow", "jax", "transformers", "sentence-transformers", "vllm", "onnxruntime-gpu")


@dataclass(frozen=True)
class Manifest:
    flavors: tuple[str, ...]
    loader_module: str
    python_version: str
    mlflow_version: str
    has_signature: bool
    signature_inputs: str | None
    has_input_example: bool
    requirements: tuple[str, ...]
    conda_channels: tuple[str, ...]
    code_paths: tuple[str, ...]
    size_bytes: int

    @property
    def gpu_frameworks(self) -> tuple[str, ...]:
        """The flavours and requirements that expect an accelerator (`pytorch`, `torch`, …), and
        only those: a finding that names them must not name `python_function` or `sklearn`."""
        names = {requirement_name(r) for r in self.requirements}
        return tuple(f for f in self.flavors if f in GPU_FLAVORS) + tuple(p for p in GPU_PACKAGES if p in names)

    def as_properties(self) -> dict[str, Any]:
        """The manifest as Pulumi resource properties, so the policy pack can read it."""
        return {
            "flavors": list(self.flavors),
            "loaderModule": self.loader_module,
            "pythonVersion": self.python_version,
            "mlflowVersion": self.mlflow_version,
            "hasSignature": self.has_signature,
            "hasInputExample": self.has_input_example,
            "requirements": list(self.requirements),
            "condaChannels": list(self.conda_channels),
            "sizeBytes": self.size_bytes,
        }


def requirement_name(requirement: str) -> str:
    """`scikit-learn==1.5.0 ; python_version>'3'` → `scikit-learn` (PEP 503-normalized)."""
    name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_lines(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line)


def _yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def read_manifest(model_dir: Path) -> Manifest:
    from mlflow.models import Model

    model = Model.load(str(model_dir / "MLmodel"))
    pyfunc = model.flavors.get("python_function", {})
    python_env = _yaml(model_dir / "python_env.yaml")
    conda = _yaml(model_dir / "conda.yaml")
    python_version = str(python_env.get("python") or pyfunc.get("python_version") or "")
    example_info = model.saved_input_example_info or {}
    code = pyfunc.get("code")
    return Manifest(
        flavors=tuple(model.flavors),
        loader_module=str(pyfunc.get("loader_module", "")),
        python_version=python_version,
        mlflow_version=str(model.mlflow_version or ""),
        has_signature=model.signature is not None,
        signature_inputs=model.signature.inputs.to_json() if model.signature and model.signature.inputs else None,
        has_input_example=bool(example_info.get("artifact_path"))
        and (model_dir / example_info["artifact_path"]).is_file(),
        requirements=_read_lines(model_dir / "requirements.txt"),
        conda_channels=tuple(str(c) for c in conda.get("channels", []) or []),
        code_paths=(code,) if isinstance(code, str) else tuple(code or ()),
        size_bytes=sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()),
    )

"""A well-packaged scikit-learn model's manifest as plain data: checks and hashes bend one field at a time."""

from __future__ import annotations

from models.manifest import Manifest

SKLEARN_MANIFEST = Manifest(
    flavors=("python_function", "sklearn"),
    loader_module="mlflow.sklearn",
    python_version="3.11.7",
    mlflow_version="2.17.2",
    has_signature=True,
    signature_inputs=None,
    has_input_example=True,
    requirements=("mlflow==2.17.2", "scikit-learn==1.5.2", "pandas==2.2.3"),
    conda_channels=("conda-forge",),
    code_paths=(),
    size_bytes=4096,
)

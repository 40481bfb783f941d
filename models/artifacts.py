"""Fetch a model's files from MLflow and name them by content.

Every model URI form MLflow understands (models:/name/version, models:/name@alias,
runs:/, s3://, a local path) goes through MLflow's own resolver, against the stack's
tracking URI. The files land in a local cache keyed by their content digest, which is also
their key in the S3 artifact store: the same bytes are stored and fetched once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.config import PROJECT_ROOT

CACHE_DIR = Path(os.environ.get("KILN_CACHE_DIR", PROJECT_ROOT / ".kiln" / "cache"))
# Registry bookkeeping MLflow writes next to a run's copy of a registered model (name and
# version), absent from the models:/ download. Not model content: dropped before hashing,
# so every URI form of the same model has the same digest and is stored once.
REGISTRY_METADATA_FILES = ("registered_model_meta",)


class ModelResolutionError(Exception):
    """A model URI that cannot be resolved or downloaded; says which and from where."""


@dataclass(frozen=True)
class ModelFiles:
    model_uri: str
    resolved_uri: str
    directory: Path
    digest: str


def tree_digest(directory: Path) -> str:
    """sha256 over relative paths and file contents, independent of timestamps and order."""
    outer = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        outer.update(path.relative_to(directory).as_posix().encode() + b"\0")
        outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.hexdigest()


def resolve_model_uri(model_uri: str, tracking_uri: str) -> str:
    """Pin aliases to versions (models:/fraud@champion → models:/fraud/3) so a plan is reproducible."""
    if not model_uri.startswith("models:/") or "@" not in model_uri:
        return model_uri
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, alias = model_uri.removeprefix("models:/").split("@", 1)
    try:
        version = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(name, alias)
    except MlflowException as error:
        raise ModelResolutionError(f"{model_uri}: {error.message} (registry {tracking_uri})") from None
    return f"models:/{name}/{version.version}"


def download_location(resolved_uri: str, tracking_uri: str) -> str:
    """Where the files are: a registry version's storage location, or the URI itself.

    Asking the registry directly keeps the download independent of MLflow's process-wide
    registry URI, which a library must not change.
    """
    if resolved_uri.startswith("models:/"):
        from mlflow import MlflowClient

        name, version = resolved_uri.removeprefix("models:/").split("/", 1)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        return client.get_model_version_download_uri(name, version)
    if resolved_uri.startswith(("runs:/", "s3://", "file:")):
        return resolved_uri
    return str((PROJECT_ROOT / Path(resolved_uri).expanduser()).resolve())


def fetch_model(model_uri: str, tracking_uri: str) -> ModelFiles:
    """Download (or reuse) the model's files; raises ModelResolutionError naming the URI."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    resolved = resolve_model_uri(model_uri, tracking_uri)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=".download-"))
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=download_location(resolved, tracking_uri),
            dst_path=str(staging),
            tracking_uri=tracking_uri,
        )
        directory = Path(local)
        if not (directory / "MLmodel").is_file():
            raise ModelResolutionError(f"{model_uri}: no MLmodel file at {resolved}; is this an MLflow model?")
        for name in REGISTRY_METADATA_FILES:
            (directory / name).unlink(missing_ok=True)
        digest = tree_digest(directory)
        cached = CACHE_DIR / digest
        if not cached.exists():
            directory.rename(cached)
    except MlflowException as error:
        raise ModelResolutionError(f"{model_uri}: {error.message} (tracking URI {tracking_uri})") from None
    except OSError as error:
        raise ModelResolutionError(f"{model_uri}: cannot read the model ({error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ModelFiles(model_uri, resolved, cached, digest)

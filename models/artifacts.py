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

from infra.plan.config import PROJECT_ROOT
from models.examples.seed import DEFAULT_STORE, LocalStore
from runtime.digest import tree_digest

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


def require_store(tracking_uri: str) -> None:
    """A sqlite store that is not there is a typo or a missing `kiln examples`, and MLflow
    would silently create an empty database in its place. `kiln examples` fills one store
    only, so the hint says which: suggesting it for any other path (MLflow's default
    ./mlflow.db, say) sends the user to fill a store the command never reads."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return
    path = Path(tracking_uri.removeprefix(prefix))
    if path.is_file():
        return
    example = LocalStore(DEFAULT_STORE)
    if path.resolve() == (example.root / "mlflow.db").resolve():
        raise ModelResolutionError(f"no MLflow store at {tracking_uri}: run `kiln examples` to fill it with the example models")
    raise ModelResolutionError(
        f"no MLflow store at {tracking_uri}; the example models of `kiln examples` are in {example.tracking_uri}"
    )


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


def registry_version(resolved_uri: str) -> tuple[str, str] | None:
    """(name, version) of a pinned registry URI (models:/fraud-scorer/3); None for anything else,
    whose files carry no registry identity (runs:/, s3://, a path)."""
    if not resolved_uri.startswith("models:/"):
        return None
    name, _, version = resolved_uri.removeprefix("models:/").partition("/")
    return (name, version) if name and version.isdigit() else None


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
    if resolved_uri.startswith("runs:/"):
        return run_artifact_location(resolved_uri, tracking_uri)
    if resolved_uri.startswith(("s3://", "file:")):
        return resolved_uri
    return str((PROJECT_ROOT / Path(resolved_uri).expanduser()).resolve())


def run_artifact_location(runs_uri: str, tracking_uri: str) -> str:
    """runs:/<run id>/<path> → where its files are, looked up in this store only.

    An MLflow 3 model logged in a run lives apart from the run's artifacts, as a logged
    model. MLflow's own runs:/ resolver finds it but then opens it through the process-wide
    default registry, whatever tracking URI it was given (ModelsArtifactRepository in
    mlflow 3.x), so with MLFLOW_TRACKING_URI or an earlier set_tracking_uri pointing
    elsewhere the model is "not found". Kiln looks the logged model up itself.
    """
    from mlflow import MlflowClient
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    run_id, path = RunsArtifactRepository.parse_runs_uri(runs_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.get_run(run_id)
    name, _, rest = (path or "").partition("/")
    page_token = None
    while name:
        page = client.search_logged_models(experiment_ids=[run.info.experiment_id], filter_string=f"name = '{name}'",
                                           page_token=page_token)
        model = next((m for m in page if m.source_run_id == run_id), None)
        if model:
            return f"{model.artifact_location.rstrip('/')}/{rest}" if rest else model.artifact_location
        if not page.token:
            break
        page_token = page.token
    return f"{run.info.artifact_uri.rstrip('/')}/{path}" if path else run.info.artifact_uri


def _index_entry(resolved_uri: str, tracking_uri: str) -> Path | None:
    """Registry versions never change their files, so their digest can be remembered;
    run artifacts, S3 objects and local folders can, so they are always fetched again."""
    if not resolved_uri.startswith("models:/") or "@" in resolved_uri:
        return None
    return CACHE_DIR / "index" / hashlib.sha256(f"{tracking_uri}|{resolved_uri}".encode()).hexdigest()


def _known_digest(resolved_uri: str, tracking_uri: str) -> str | None:
    entry = _index_entry(resolved_uri, tracking_uri)
    return entry.read_text().strip() if entry and entry.is_file() else None


def _remember_digest(resolved_uri: str, tracking_uri: str, digest: str) -> None:
    entry = _index_entry(resolved_uri, tracking_uri)
    if entry:
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text(digest)


def fetch_model(model_uri: str, tracking_uri: str) -> ModelFiles:
    """Download (or reuse) the model's files; raises ModelResolutionError naming the URI."""
    import mlflow.artifacts
    from botocore.exceptions import BotoCoreError, ClientError
    from mlflow.exceptions import MlflowException

    if model_uri.startswith(("models:/", "runs:/")):
        # Only these are looked up in the store; a path or s3:// URI needs none.
        require_store(tracking_uri)
    resolved = resolve_model_uri(model_uri, tracking_uri)
    known = _known_digest(resolved, tracking_uri)
    if known and (CACHE_DIR / known).is_dir():
        return ModelFiles(model_uri, resolved, CACHE_DIR / known, known)
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
        _remember_digest(resolved, tracking_uri, digest)
    except MlflowException as error:
        raise ModelResolutionError(f"{model_uri}: {error.message} (tracking URI {tracking_uri})") from None
    except OSError as error:
        raise ModelResolutionError(f"{model_uri}: cannot read the model ({error})") from None
    except (BotoCoreError, ClientError) as error:
        # An s3:// location (the URI itself, or where a registry keeps a version) is read with
        # the AWS credentials at hand, which an offline machine does not have.
        raise ModelResolutionError(
            f"{model_uri}: cannot fetch it from S3 ({error}); Kiln reads s3:// models with the AWS credentials "
            "of this shell (AWS_PROFILE, AWS_ACCESS_KEY_ID), so give it some that may read the object, or register "
            "the model in the stack's MLflow registry and write models:/<name>/<version>"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ModelFiles(model_uri, resolved, cached, digest)


def local_model_uri(model_uri: str, tracking_uri: str | None) -> str:
    """What `kiln runtime` hands the runtime: s3:// artifact-store URIs and model directories
    as given, anything else (models:/, runs:/) fetched through MLflow to a cached directory.
    The runtime itself resolves nothing: the image is only ever given s3:// URIs."""
    if model_uri.startswith("s3://") or Path(model_uri).expanduser().is_dir():
        return model_uri
    import mlflow

    return str(fetch_model(model_uri, tracking_uri or mlflow.get_tracking_uri()).directory)

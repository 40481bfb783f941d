"""Every model URI form resolves to the same files and the same content digest."""

from __future__ import annotations

from pathlib import Path

import boto3
import mlflow
import pytest
from mlflow import MlflowClient

from models.artifacts import ModelResolutionError, fetch_model
from tests.bake_support import aws, moto_endpoint  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def champion(example_store):
    client = MlflowClient(tracking_uri=example_store.tracking_uri, registry_uri=example_store.tracking_uri)
    version = client.get_model_version_by_alias("fraud-scorer", "champion")
    return version, fetch_model(f"models:/fraud-scorer/{version.version}", example_store.tracking_uri)


def test_an_alias_is_pinned_to_its_version_with_the_same_digest(example_store, champion) -> None:
    version, by_version = champion

    by_alias = fetch_model("models:/fraud-scorer@champion", example_store.tracking_uri)

    assert by_alias.resolved_uri == f"models:/fraud-scorer/{version.version}"
    assert by_alias.digest == by_version.digest


def test_a_runs_uri_has_the_registered_version_digest(example_store, champion) -> None:
    version, by_version = champion

    by_run = fetch_model(f"runs:/{version.run_id}/model", example_store.tracking_uri)

    assert by_run.digest == by_version.digest


def test_a_local_path_has_the_same_digest(example_store, champion, tmp_path: Path) -> None:
    _, by_version = champion

    local = fetch_model(str(by_version.directory), example_store.tracking_uri)

    assert local.digest == by_version.digest


def test_an_s3_uri_has_the_same_digest(example_store, champion, aws: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    _, by_version = champion
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", aws)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="team-models")
    for path in by_version.directory.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "team-models", f"fraud/{path.relative_to(by_version.directory).as_posix()}")

    from_s3 = fetch_model("s3://team-models/fraud", example_store.tracking_uri)

    assert from_s3.digest == by_version.digest


def test_an_unknown_alias_names_the_uri_and_the_registry(example_store) -> None:
    with pytest.raises(ModelResolutionError, match="models:/fraud-scorer@nightly"):
        fetch_model("models:/fraud-scorer@nightly", example_store.tracking_uri)


def test_a_runs_uri_resolves_in_the_stack_store_whatever_the_process_default(example_store, champion, tmp_path) -> None:
    """MLflow resolves an MLflow 3 model's runs:/ URI through the registry; a process whose
    default store is another one (MLFLOW_TRACKING_URI, an earlier set_tracking_uri) must
    still fetch from the stack's own store."""
    version, by_version = champion
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/elsewhere.db")
    try:
        by_run = fetch_model(f"runs:/{version.run_id}/model", example_store.tracking_uri)
    finally:
        mlflow.set_tracking_uri(previous)

    assert by_run.digest == by_version.digest

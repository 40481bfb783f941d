"""Fetching model files from a real MLflow store into the content-addressed cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.artifacts import ModelResolutionError, fetch_model, resolve_model_uri, tree_digest
from models.examples.seed import DEFAULT_STORE, LocalStore
from tests.bake_support import save_pyfunc


def test_alias_is_pinned_to_its_version(example_store) -> None:
    assert resolve_model_uri("models:/fraud-scorer@challenger", example_store.tracking_uri) == "models:/fraud-scorer/2"


def test_files_land_in_the_cache_under_their_digest(example_store) -> None:
    files = fetch_model("models:/fraud-scorer/1", example_store.tracking_uri)

    assert files.directory.name == files.digest == tree_digest(files.directory)
    assert (files.directory / "MLmodel").is_file()


def test_registry_versions_are_downloaded_once(example_store, tmp_path: Path) -> None:
    first = fetch_model("models:/fraud-scorer@champion", example_store.tracking_uri)
    # With the store's artifacts gone, only the cache can answer.
    moved = tmp_path / "artifacts"
    shutil.move(example_store.root / "artifacts", moved)
    try:
        again = fetch_model("models:/fraud-scorer/1", example_store.tracking_uri)
    finally:
        shutil.move(moved, example_store.root / "artifacts")

    assert again.directory == first.directory


def test_local_model_folder_is_fetched_by_path(example_store) -> None:
    cached = fetch_model("models:/ticket-router/1", example_store.tracking_uri)

    local = fetch_model(str(cached.directory), example_store.tracking_uri)

    assert local.digest == cached.digest


def test_digest_ignores_timestamps_but_not_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "MLmodel").write_text("flavors: {}\n")
    before = tree_digest(tmp_path / "a")
    (tmp_path / "a" / "MLmodel").touch()
    assert tree_digest(tmp_path / "a") == before
    (tmp_path / "a" / "MLmodel").write_text("flavors: {x: 1}\n")
    assert tree_digest(tmp_path / "a") != before


def test_folder_without_mlmodel_is_refused(tmp_path: Path, example_store) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0")

    with pytest.raises(ModelResolutionError, match="no MLmodel file"):
        fetch_model(str(tmp_path), example_store.tracking_uri)


def test_unknown_version_names_the_uri(example_store) -> None:
    with pytest.raises(ModelResolutionError, match="models:/fraud-scorer/42"):
        fetch_model("models:/fraud-scorer/42", example_store.tracking_uri)


def test_missing_local_store_is_reported_not_created(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"

    with pytest.raises(ModelResolutionError) as raised:
        fetch_model("models:/fraud-scorer/1", f"sqlite:///{store}")

    assert not store.exists()
    # `kiln examples` fills another store: the hint names that one, not "run kiln examples".
    assert str(raised.value) == (f"no MLflow store at sqlite:///{store}; the example models of `kiln examples` "
                                 f"are in {LocalStore(DEFAULT_STORE).tracking_uri}")


def test_a_missing_example_store_says_kiln_examples_fills_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh clone before `make plan`: the relative URI the stacks and docs use, from the project folder.
    monkeypatch.setattr("models.artifacts.DEFAULT_STORE", tmp_path / ".kiln" / "mlflow")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ModelResolutionError, match="run `kiln examples` to fill it"):
        fetch_model("models:/fraud-scorer/1", "sqlite:///.kiln/mlflow/mlflow.db")


def test_a_local_model_needs_no_store_but_a_registry_uri_names_the_missing_one(tmp_path: Path) -> None:
    absent = f"sqlite:///{tmp_path / 'absent.db'}"

    files = fetch_model(str(save_pyfunc(tmp_path / "model")), absent)

    assert (files.directory / "MLmodel").is_file() and not (tmp_path / "absent.db").exists()
    with pytest.raises(ModelResolutionError, match="no MLflow store at sqlite:///"):
        fetch_model("models:/fraud-scorer/1", absent)

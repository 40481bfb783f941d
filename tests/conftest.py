"""Shared fixtures: a real MLflow store with the example models, and stack files to bend."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

# Model downloads and reload virtualenvs go to a throwaway cache, never the developer's
# .kiln/cache, and it goes when the run ends: each run fills it with gigabytes.
if "KILN_CACHE_DIR" not in os.environ:
    os.environ["KILN_CACHE_DIR"] = tempfile.mkdtemp(prefix="kiln-test-cache-")
    atexit.register(shutil.rmtree, os.environ["KILN_CACHE_DIR"], ignore_errors=True)

from infra.plan.config import NAMESPACE, read_stack_file, resolve_stack_path  # noqa: E402
from models.examples.seed import LocalStore, seed  # noqa: E402

SHIPPED_STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def example_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """A sqlite MLflow store holding the example models under the aliases the stacks use."""
    store = LocalStore(tmp_path_factory.mktemp("mlflow-store"))
    seed(store)
    return store


def stack_config(stack: str, store: LocalStore) -> dict[str, Any]:
    """A shipped stack's `config:` mapping, resolving models against the test store."""
    config = read_stack_file(resolve_stack_path(stack))
    return {**config, f"{NAMESPACE}:mlflowTrackingUri": store.tracking_uri}


def write_stack(directory: Path, config: dict[str, Any], stack: str = "test") -> Path:
    path = directory / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return path

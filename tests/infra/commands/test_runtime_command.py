"""`kiln runtime` resolves registry and run URIs itself and hands the runtime a directory:
the runtime in the image resolves nothing but s3:// and local directories."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from models.artifacts import fetch_model
from tests.runtime_support import free_port, start, start_runtime


def test_kiln_runtime_serves_a_registry_alias_from_the_given_store(tmp_path: Path, example_store) -> None:
    port = free_port()
    command = [sys.executable, "-m", "infra.commands.cli", "runtime", "--model-uri", "models:/fraud-scorer@champion",
               "--mlflow-tracking-uri", example_store.tracking_uri, "--port", str(port), "--workers", "1"]
    runtime = start(command, {}, tmp_path / "runtime.log", port)
    try:
        seen = runtime.wait_for_ping()
        version = httpx.get(f"{runtime.url}/version", timeout=5).json()
    finally:
        runtime.stop()

    assert seen[-1:] == [200], runtime.log()
    assert version["model_digest"] == fetch_model("models:/fraud-scorer/1", example_store.tracking_uri).digest
    assert (version["model"], version["model_version"]) == ("fraud-scorer", "1")


def test_python_m_runtime_refuses_a_registry_uri_naming_what_it_takes(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, "registry", KILN_MODEL_URI="models:/fraud-scorer/1")
    code = runtime.process.wait(60)

    assert code == 1
    assert "neither s3://bucket/models/<digest>/ nor a local model directory" in runtime.log()

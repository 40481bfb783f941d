"""Start and stop real runtime processes on 127.0.0.1 for the runtime tests, bounded in time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.stack import free_port
from tests.fakes import moto_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 90


@dataclass
class RunningProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_ping(self, timeout: float = START_TIMEOUT_SECONDS) -> list[int]:
        """Poll readiness until 200 or the process exits; returns every status seen."""
        return self.wait_for_status(200, "/ping", timeout)

    def wait_for_status(self, status: int, path: str, timeout: float = START_TIMEOUT_SECONDS) -> list[int]:
        """Poll `path` until it answers `status` or the process exits; returns every status seen."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return seen
            try:
                seen.append(httpx.get(self.url + path, timeout=2).status_code)
                if seen[-1] == status:
                    return seen
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.url}{path} not ready within {timeout} s; log:\n{self.log()}")

    def wait_for_in_flight(self, count: int, timeout: float = 10) -> None:
        """Until the runtime's own gauge says `count` requests are in flight (so a signal sent
        next finds them there)."""
        deadline = time.monotonic() + timeout
        while not re.search(rf"^kiln_requests_in_flight {count}$", httpx.get(f"{self.url}/metrics").text, re.MULTILINE):
            assert time.monotonic() < deadline, f"never {count} requests in flight; log:\n{self.log()}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def server_timing(response: httpx.Response) -> dict[str, float]:
    """The runtime's Server-Timing header as {metric name: milliseconds}, in the order sent."""
    spans = [span.strip().split(";dur=") for span in response.headers["server-timing"].split(",")]
    return {name: float(ms) for name, ms in spans}


def start(command: list[str], env: dict[str, str], log_path: Path, port: int) -> RunningProcess:
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env}
    log = log_path.open("w")
    process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT)
    return RunningProcess(process, f"http://127.0.0.1:{port}", log_path)


def start_runtime(tmp: Path, name: str, **kiln_env: str) -> RunningProcess:
    """`python -m runtime` (the image entrypoint) with KILN_* env, on a free port."""
    port = free_port()
    env = {"KILN_HOST": "127.0.0.1", "KILN_PORT": str(port), **kiln_env}
    return start([sys.executable, "-m", "runtime"], env, tmp / f"{name}.log", port)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[dict[str, str]]:
    """moto on loopback (S3, CloudWatch: every service) and the env that points boto3 at it; never real AWS."""
    with moto_server() as endpoint:
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def upload_model(s3_env: dict[str, str], directory: Path, bucket: str = "kiln-artifacts") -> str:
    """Store a model directory as `pulumi up` does: the model upload resource's own code puts
    its files under models/<tree digest>/ and the completion marker last."""
    import boto3

    from infra.providers.model_artifact import ModelArtifactProvider
    from runtime.digest import tree_digest

    def client(service: str, region: str) -> Any:
        return boto3.client(service, endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    s3 = client("s3", s3_env["AWS_DEFAULT_REGION"])
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)
    digest = tree_digest(directory)
    props = {"region": s3_env["AWS_DEFAULT_REGION"], "bucket": bucket, "prefix": f"models/{digest}/", "digest": digest,
             "sourceDir": str(directory)}
    return ModelArtifactProvider(client_factory=client).create(props).outs["uri"]


@pytest.fixture(scope="session")
def fraud_model_dir(example_store) -> Path:  # type: ignore[no-untyped-def]
    from models.artifacts import fetch_model

    return fetch_model("models:/fraud-scorer@champion", example_store.tracking_uri).directory

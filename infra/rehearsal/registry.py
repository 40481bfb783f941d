"""A self-hosted MLflow registry for the rehearsal: `mlflow server` on 127.0.0.1 with a
sqlite backend and its artifact store in the stand-in account's S3, as a platform team runs
one, holding a copy of every registered model version the stack serves.

The program then resolves `models:/name@alias` over MLflow's REST API and downloads through
the `mlflow-artifacts:/` scheme the server hands out (the server reads S3 with its own
credentials), which is what a stack pointed at a real registry does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from infra.local.stack import free_port
from infra.plan.config import StackFile
from infra.rehearsal.local_aws import LocalAws
from models.artifacts import fetch_model

START_TIMEOUT_SECONDS = 120
MIRROR_BUCKET = "kiln-rehearsal-mlflow"


class RegistryError(Exception):
    """The tracking server did not start, or a model could not be copied into it."""


@dataclass
class RegistryMirror:
    tracking_uri: str
    bucket: str
    models: list[str] = field(default_factory=list)


def _registry_uris(stack_file: StackFile) -> list[str]:
    return sorted({served.model_uri for endpoint in stack_file.config.endpoints for served in endpoint.served_models})


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
                raise RegistryError(f"`mlflow server` did not come up at {url}:\n{tail}") from error
            time.sleep(0.25)


def _copy_version(source_uri: str, source_tracking_uri: str, target_tracking_uri: str) -> None:
    """Register the model `source_uri` names under the same name in the target registry, with
    the same alias or version number, its files logged as a run's artifacts (so they travel
    through the server into S3)."""
    from mlflow import MlflowClient

    files = fetch_model(source_uri, source_tracking_uri)
    name, _, selector = source_uri.removeprefix("models:/").partition("@")
    version = ""
    if not selector:
        name, _, version = name.partition("/")
    client = MlflowClient(tracking_uri=target_tracking_uri, registry_uri=target_tracking_uri)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    experiment = client.get_experiment_by_name("kiln-rehearsal")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("kiln-rehearsal")
    run = client.create_run(experiment_id)
    client.log_artifacts(run.info.run_id, str(files.directory), "model")
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/model"
    # A version number is kept by registering up to it (earlier numbers hold the same files).
    target_version = int(version) if version.isdigit() else 1
    while True:
        created = client.create_model_version(name, source, run_id=run.info.run_id)
        if int(created.version) >= target_version:
            break
    if selector:
        client.set_registered_model_alias(name, selector, created.version)


@contextmanager
def mirrored_registry(aws: LocalAws, stack_file: StackFile, work_dir: Path) -> Iterator[RegistryMirror]:
    aws.client("s3").create_bucket(Bucket=MIRROR_BUCKET)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work_dir / "mlflow-server.log"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    server_env.update(aws.process_env(aws.operator), MLFLOW_S3_ENDPOINT_URL=aws.endpoint)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{work_dir / 'registry.db'}",
             "--artifacts-destination", f"s3://{MIRROR_BUCKET}/artifacts"],
            env=server_env, stdout=output, stderr=subprocess.STDOUT, cwd=work_dir)
    # The server hands out presigned URLs of the stand-in S3: downloads go straight there.
    trusted = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(aws.ca_bundle)
    try:
        _wait_until_up(url, process, log)
        mirror = RegistryMirror(url, MIRROR_BUCKET)
        for uri in _registry_uris(stack_file):
            _copy_version(uri, stack_file.config.mlflow_tracking_uri, url)
            mirror.models.append(uri)
        yield mirror
    finally:
        if trusted is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = trusted
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

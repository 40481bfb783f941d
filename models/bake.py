"""The bake interface the Pulumi program calls: model URI in, image tag and artifact key out.

The program never invents an image or an S3 key: both are content addresses computed from
the model's own files, so a plan names exactly what `pulumi up` will build and fetch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from models.artifacts import ModelResolutionError, fetch_model
from models.environment import Environment, environment_for
from models.manifest import Manifest, read_manifest

# MLflow retries an unreachable server for minutes by default; a plan should say so at once.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@dataclass(frozen=True)
class BakedModel:
    model_uri: str
    resolved_uri: str
    artifact_digest: str
    manifest: Manifest
    environment: Environment

    @property
    def artifact_key(self) -> str:
        """S3 key prefix of the model files in the artifact store."""
        return f"models/{self.artifact_digest}/"

    @property
    def image_tag(self) -> str:
        return self.environment.image_tag


def bake(model_uri: str, tracking_uri: str, gpu: bool) -> BakedModel:
    files = fetch_model(model_uri, tracking_uri)
    manifest = read_manifest(files.directory)
    return BakedModel(
        model_uri=model_uri,
        resolved_uri=files.resolved_uri,
        artifact_digest=files.digest,
        manifest=manifest,
        environment=environment_for(manifest, gpu),
    )


__all__ = ["BakedModel", "ModelResolutionError", "bake"]

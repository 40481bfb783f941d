"""The bake interface the Pulumi program calls: model URI in, image tag and artifact key out.

The program never invents an image or an S3 key: both are content addresses computed from
the model's own files, so a plan names exactly what `pulumi up` will build and fetch.
`inspect` adds the packaging checks, which need to know where the model will be served.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from models.artifacts import ModelResolutionError, fetch_model
from models.checks import CheckInput, Finding, PackagingError, ServingTarget, check_packaging
from models.environment import Environment, environment_for
from models.estimates import ImageEstimate, estimate_image
from models.manifest import Manifest, read_manifest
from models.measurements import recorded_installed_size
from models.resolved import ResolvedPackages

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
    # The model's files in the local cache (named by artifact_digest): what gets uploaded.
    model_dir: Path
    estimate: ImageEstimate

    @property
    def artifact_key(self) -> str:
        """S3 key prefix of the model files in the artifact store."""
        return f"models/{self.artifact_digest}/"

    @property
    def image_tag(self) -> str:
        return self.environment.image_tag

    def table_estimate(self, gpu: bool) -> ImageEstimate:
        """The image estimate from the package table alone, whatever was measured."""
        return estimate_image(self.manifest.requirements, self.manifest.size_bytes, gpu, self.environment.system_cuda)

    def calibrated(self, installed_bytes: int, gpu: bool) -> BakedModel:
        """This model with the image estimate taken from a measured install (the reload
        check's virtualenv) instead of the package table."""
        estimate = estimate_image(self.manifest.requirements, self.manifest.size_bytes, gpu,
                                  self.environment.system_cuda, installed_bytes)
        return replace(self, estimate=estimate)

    def findings(self, target: ServingTarget, resolved: ResolvedPackages | None = None) -> list[Finding]:
        """The packaging checks for this model served on `target`; with `resolved` (what pip
        installed in the reload check's virtualenv) the GPU checks read the resolved wheels."""
        return check_packaging(CheckInput(self.manifest, self.environment, self.estimate, target, resolved))


def bake(model_uri: str, tracking_uri: str, gpu: bool) -> BakedModel:
    """The model resolved and inspected; its image estimated from the installed size a reload
    check of the same environment measured here (`kiln bake`), else from the package table."""
    files = fetch_model(model_uri, tracking_uri)
    manifest = read_manifest(files.directory)
    environment = environment_for(manifest, gpu)
    return BakedModel(
        model_uri=model_uri,
        resolved_uri=files.resolved_uri,
        artifact_digest=files.digest,
        manifest=manifest,
        environment=environment,
        model_dir=files.directory,
        estimate=estimate_image(manifest.requirements, manifest.size_bytes, gpu, environment.system_cuda,
                                recorded_installed_size(environment.image_tag)),
    )


def bake_and_check(model_uri: str, tracking_uri: str, target: ServingTarget) -> tuple[BakedModel, list[Finding]]:
    """Bake a model for `target` and run the packaging checks: the one path a stack's served
    model (the program, `kiln bake STACK`) and a model URI alone (`kiln bake MODEL_URI`) share,
    so both report the same findings for the same model and target."""
    baked = bake(model_uri, tracking_uri, gpu=target.profile.has_gpu)
    return baked, baked.findings(target)


__all__ = ["BakedModel", "ModelResolutionError", "PackagingError", "ServingTarget", "bake", "bake_and_check"]

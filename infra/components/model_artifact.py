"""A model's files in the artifact store, uploaded once under their content digest."""

from __future__ import annotations

import pulumi

from infra.components.artifact_store import ArtifactStore
from infra.providers.model_artifact import ModelArtifact
from models.bake import BakedModel


class ModelArtifactUpload(pulumi.ComponentResource):
    """s3://<bucket>/models/<digest>/: what the runtime fetches and verifies at container start."""

    def __init__(self, name: str, baked: BakedModel, artifact_store: ArtifactStore, region: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kiln:storage:ModelArtifact", name, {"digest": baked.artifact_digest}, opts)
        self.upload = ModelArtifact(
            f"{name}-upload",
            {
                "region": region,
                "bucket": artifact_store.bucket.bucket,
                "prefix": baked.artifact_key,
                "digest": baked.artifact_digest,
                "sourceDir": str(baked.model_dir),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.uri = self.upload.uri
        self.register_outputs({"uri": self.uri})

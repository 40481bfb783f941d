"""What every served model of a stack stands on: network, gateway, artifact store, registry."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.components.artifact_store import ArtifactStore
from infra.components.gateway import Gateway
from infra.components.image_registry import ImageRegistry
from infra.components.vpc_endpoints import VpcEndpoints
from models.bake import BakedModel
from models.checks import Finding


@dataclass(frozen=True)
class Foundation:
    """The stack-wide pieces, created once and shared by every endpoint."""

    gateway: Gateway
    artifact_store: ArtifactStore
    registry: ImageRegistry
    vpc_id: str
    subnet_ids: list[str]
    # The stack's customer managed KMS key, for what it creates encrypted (None: AWS managed keys).
    kms_key_arn: str | None = None
    # The stack's VPC endpoints (kiln:network.vpcEndpoints): what else in the VPC calls AWS must be admitted.
    vpc_endpoints: VpcEndpoints | None = None


@dataclass(frozen=True)
class Release:
    """One served model's bake result: the checked model, its built image, its uploaded files."""

    baked: BakedModel
    findings: list[Finding]
    image: pulumi.Input[str]  # digest-pinned reference from the image build
    artifact: pulumi.Resource  # the model upload; instances start only after it exists

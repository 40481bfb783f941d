"""The Kiln Pulumi program: stack config → plan → bake → components → outputs."""

import pulumi

from infra.components.artifact_store import ArtifactStore
from infra.components.endpoint import Endpoint
from infra.components.foundation import Foundation, Release
from infra.components.gateway import Gateway
from infra.components.image_build import EnvironmentImage, ImageBuilder
from infra.components.image_registry import ImageRegistry
from infra.components.inference_table import InferenceTables
from infra.components.model_artifact import ModelArtifactUpload
from infra.components.monitoring import stack_dashboard
from infra.components.vpc_endpoints import VpcEndpoints
from infra.plan.stack import ServedModelPlan, plan_stack
from infra.program.bake import bake_served_models, builder_compute_type, model_memory, worker_measurements
from infra.program.physical_names import refuse_names_aws_rejects
from infra.program.stack_config import stack_config_from_pulumi
from models.build_context import render_build_context

stack = pulumi.get_stack()
# Before any resource: a physical name AWS would refuse stops the program as it is declared.
pulumi.runtime.register_stack_transformation(refuse_names_aws_rejects(f"stacks/Pulumi.{stack}.yaml"))
config = stack_config_from_pulumi()
plan = plan_stack(stack, config)
network = config.network
# Resolve, inspect and check every model before declaring anything (PackagingError stops here).
checked = bake_served_models(plan)
baked = [model for model, _ in checked.values()]
# Planned again now that each model's memory is known: it decides how a multi-GPU served model
# without gpuPlacement uses its instance (one worker per GPU, or one spread across them), and
# what `kiln bake` measured sizes the served models that say `sizing: measured`.
plan = plan_stack(stack, config, model_memory(checked), worker_measurements(checked))

artifact_store = ArtifactStore("artifacts", tags=plan.tags, kms_key_arn=config.kms_key_arn)
registry = ImageRegistry("images", tags=plan.tags)
builder = ImageBuilder(
    "images", registry, artifact_store, builder_compute_type(baked), config.build.timeout_minutes,
    config.region, tags=plan.tags,
)
# Content addresses dedupe: one image per environment, one upload per model digest.
images = {}
artifacts = {}
for model in baked:
    if model.image_tag not in images:
        images[model.image_tag] = EnvironmentImage(model.image_tag, render_build_context(model.environment), builder, plan.tags)
    if model.artifact_digest not in artifacts:
        artifacts[model.artifact_digest] = ModelArtifactUpload(
            f"model-{model.artifact_digest[:16]}", model, artifact_store, config.region
        )
gateway = Gateway("gateway", plan.gateway, network.vpc_id, tags=plan.tags)
vpc_endpoints = (
    VpcEndpoints("vpc-endpoints", plan.vpc_endpoints, network.vpc_id, gateway.instance_security_group, plan.tags)
    if plan.vpc_endpoints else None
)
foundation = Foundation(gateway, artifact_store, registry, network.vpc_id, network.private_subnet_ids, config.kms_key_arn,
                        vpc_endpoints)


def release(served: ServedModelPlan) -> Release:
    model, findings = checked[served.resource_name]
    return Release(model, findings, images[model.image_tag].image_uri, artifacts[model.artifact_digest].upload)


endpoints = {
    endpoint.name: Endpoint(endpoint.name, endpoint, {s.name: release(s) for s in endpoint.served_models}, foundation)
    for endpoint in plan.endpoints
}
# One dashboard for the stack, a row per served model (docs/operate.md).
dashboard = stack_dashboard(plan, [
    (served, gateway.load_balancer.arn_suffix, endpoints[served.endpoint].served_models[served.name].target_group.arn_suffix)
    for served in plan.served_models
], config.region)

if plan.captures:
    InferenceTables("inference-tables", plan.captures, artifact_store.bucket.bucket, plan.tags)
    pulumi.export("inferenceTables", {capture.endpoint: capture.qualified_table for capture in plan.captures})

pulumi.export("endpoints", {name: endpoint.url for name, endpoint in endpoints.items()})
pulumi.export("servedModels", {served.resource_name: served.capacity_outputs() for served in plan.served_models})
pulumi.export("artifactBucket", artifact_store.bucket.bucket)
pulumi.export("imageRepository", registry.repository.repository_url)
pulumi.export("images", {tag: image.image_uri for tag, image in images.items()})
pulumi.export("dashboard", dashboard.dashboard_name)
# Where to put each endpoint's token hashes (docs/security.md), for the endpoints whose secret Kiln creates.
pulumi.export("tokenHashSecrets", {name: e.token_secret.arn for name, e in endpoints.items() if e.token_secret})

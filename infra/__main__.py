"""The Kiln Pulumi program: stack config → plan → bake → components → outputs."""

import pulumi

from infra.components.artifact_store import ArtifactStore
from infra.components.endpoint import Endpoint
from infra.components.gateway import Gateway
from infra.components.image_registry import ImageRegistry
from infra.program_config import stack_config_from_pulumi
from infra.plan import plan_stack
from models.bake import bake

stack = pulumi.get_stack()
config = stack_config_from_pulumi()
plan = plan_stack(stack, config)
network = config.network

artifact_store = ArtifactStore("artifacts", tags=plan.tags)
registry = ImageRegistry("images", tags=plan.tags)
gateway = Gateway("gateway", plan.gateway, network.vpc_id, tags=plan.tags)
endpoints = {
    endpoint.name: Endpoint(
        endpoint.name,
        endpoint,
        {s.name: bake(s.model_uri, config.mlflow_tracking_uri, gpu=s.profile.has_gpu) for s in endpoint.served_models},
        gateway,
        artifact_store,
        registry,
        network.vpc_id,
        network.private_subnet_ids,
    )
    for endpoint in plan.endpoints
}

pulumi.export("endpoints", {name: endpoint.url for name, endpoint in endpoints.items()})
pulumi.export(
    "servedModels",
    {
        served.resource_name: {
            "instanceType": served.capacity.sizing.instance.name,
            "minInstances": served.capacity.sizing.min_instances,
            "maxInstances": served.capacity.sizing.max_instances,
        }
        for served in plan.served_models
    },
)
pulumi.export("artifactBucket", artifact_store.bucket.bucket)
pulumi.export("imageRepository", registry.repository.repository_url)

"""Instances: IMDSv2, encrypted root volumes, instance types that fit the compute type."""

from __future__ import annotations

from infra.plan.catalog import GPU_AMI_PARAMETER, INSTANCES, PROFILES, ComputeType
from policies.rules.resource_types import LAUNCH_TEMPLATE, SERVED_MODEL
from policies.rules.rule import MANDATORY, Config, Props, ResourceRule, items, prop, truthy


def imdsv2_required(props: Props, config: Config) -> list[str]:
    """IMDSv1 answers any GET, so an SSRF in model code would hand out the instance role's keys."""
    if prop(props, "metadataOptions.httpEndpoint") == "disabled":
        return []
    tokens = prop(props, "metadataOptions.httpTokens", "optional (the EC2 default)")
    if tokens == "required":
        return []
    return [f"metadataOptions.httpTokens is {tokens!r}; set metadata_options.http_tokens='required' (IMDSv2 only)"]


def root_volume_encrypted(props: Props, config: Config) -> list[str]:
    mappings = items(props.get("blockDeviceMappings"))
    if not mappings:
        return [
            ("no blockDeviceMappings: the root volume takes the AMI's default, which is unencrypted unless the "
            "account turned on EBS encryption by default; add a mapping for the root device with ebs.encrypted='true'")
        ]
    messages = []
    for index, mapping in enumerate(mappings):
        if prop(mapping, "ebs") is None:
            continue
        if not truthy(prop(mapping, "ebs.encrypted")):
            device = prop(mapping, "deviceName", f"#{index}")
            messages.append(f"EBS volume {device} is not encrypted; set ebs.encrypted='true' in block_device_mappings")
    return messages


def instance_type_allowed(props: Props, config: Config) -> list[str]:
    compute_type, instance_type = props.get("computeType"), props.get("instanceType")
    valid = [member.value for member in ComputeType]
    if compute_type not in valid:
        return [f"compute type {compute_type!r} is not one of {', '.join(valid)}; pick one in the stack file"]
    allowed = PROFILES[ComputeType(compute_type)].allowed_instances
    if instance_type in allowed:
        return []
    return [
        (f"instance type {instance_type!r} is not allowed for {compute_type}; use one of {', '.join(allowed)} "
        "(or change computeType)")
    ]


def gpu_on_gpu_ami(props: Props, config: Config) -> list[str]:
    """A GPU instance on a plain AMI has no NVIDIA driver: the model silently runs on CPU, or not at all."""
    compute_type, instance_type = props.get("computeType"), props.get("instanceType")
    instance = INSTANCES.get(instance_type) if isinstance(instance_type, str) else None
    gpu = (instance is not None and instance.gpus > 0) or str(compute_type).startswith(("GPU", "MULTIGPU"))
    if not gpu:
        return []
    allowed = list(config.get("gpuAmiParameters", []))
    ami = props.get("amiParameter")
    if ami in allowed:
        return []
    return [
        (f"{compute_type} on {instance_type} boots AMI {ami!r}, which is not a GPU AMI; use the SSM parameter "
        f"{allowed[0] if allowed else GPU_AMI_PARAMETER} (NVIDIA driver + container toolkit) or list yours in "
        "this policy's gpuAmiParameters")
    ]


IMDSV2 = ResourceRule(
    id="imdsv2-required",
    description="Instances require IMDSv2 session tokens.",
    levels=MANDATORY,
    checks={LAUNCH_TEMPLATE: imdsv2_required},
    fix="Set metadata_options={'http_tokens': 'required'} on the launch template.",
)

ENCRYPTED_ROOT_VOLUME = ResourceRule(
    id="encrypted-root-volume",
    description="Instance volumes are encrypted at rest.",
    levels=MANDATORY,
    checks={LAUNCH_TEMPLATE: root_volume_encrypted},
    fix="Give every EBS block device mapping ebs.encrypted='true'.",
)

INSTANCE_TYPE_ALLOWED = ResourceRule(
    id="instance-type-allowed",
    description="A served model runs on an instance type allowed for its compute type.",
    levels=MANDATORY,
    checks={SERVED_MODEL: instance_type_allowed},
    fix="Remove instanceType from the served model (the planner picks one) or choose one the compute type allows.",
)

GPU_AMI = ResourceRule(
    id="gpu-instance-on-gpu-ami",
    description="GPU compute boots an AMI with the NVIDIA driver and container toolkit.",
    levels=MANDATORY,
    checks={SERVED_MODEL: gpu_on_gpu_ami},
    fix=f"Boot GPU instances from {GPU_AMI_PARAMETER} or add your GPU AMI parameter to gpuAmiParameters.",
    config={
        "gpuAmiParameters": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "default": [GPU_AMI_PARAMETER],
            "description": "SSM parameters that name AMIs with the NVIDIA driver and container toolkit",
        }
    },
)

RULES = [IMDSV2, ENCRYPTED_ROOT_VOLUME, INSTANCE_TYPE_ALLOWED, GPU_AMI]

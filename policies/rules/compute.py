"""Instances: IMDSv2, encrypted root volumes, instance types that fit the compute type."""

from __future__ import annotations

from infra.plan.catalog import GPU_AMI_PARAMETER, INSTANCES, PROFILES, ComputeType
from policies.rules.resource_types import LAUNCH_TEMPLATE, SERVED_MODEL
from policies.rules.rule import MANDATORY, Config, Props, ResourceRule, items, prop, truthy

# The runtime runs in a container, whose requests to IMDS cross the Docker bridge: one hop
# more than the host's, so it needs a hop limit of 2 (AWS recommends 2 for containers,
# docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-metadata-options.html). More lets a token
# travel further still (a container behind another proxy), which is what the limit prevents.
MAX_HOP_LIMIT = 2
# The root device names of the AMIs Kiln boots (Amazon Linux 2023 and the Deep Learning AMIs:
# /dev/xvda) and of AMIs that use the older naming (/dev/sda1).
ROOT_DEVICE_NAMES = ["/dev/xvda", "/dev/sda1"]


def imdsv2_required(props: Props, config: Config) -> list[str]:
    """IMDSv1 answers any GET, so an SSRF in model code would hand out the instance role's keys."""
    if prop(props, "metadataOptions.httpEndpoint") == "disabled":
        return []
    messages = []
    tokens = prop(props, "metadataOptions.httpTokens", "optional (the EC2 default)")
    if tokens != "required":
        messages.append(f"metadataOptions.httpTokens is {tokens!r}; set metadata_options.http_tokens='required' (IMDSv2 only)")
    hops = prop(props, "metadataOptions.httpPutResponseHopLimit")
    limit = config.get("maxHopLimit", MAX_HOP_LIMIT)
    if hops is not None and int(hops) > limit:
        messages.append(
            f"metadataOptions.httpPutResponseHopLimit is {int(hops)}; set it to at most {int(limit)}: 2 lets the runtime's "
            "container reach IMDS through the Docker bridge, more lets the token travel beyond the instance"
        )
    return messages


def root_volume_encrypted(props: Props, config: Config) -> list[str]:
    mappings = items(props.get("blockDeviceMappings"))
    if not mappings:
        return [
            ("no blockDeviceMappings: the root volume takes the AMI's default, which is unencrypted unless the "
            "account turned on EBS encryption by default; add a mapping for the root device with ebs.encrypted='true'")
        ]
    roots = list(config.get("rootDeviceNames", ROOT_DEVICE_NAMES))
    mapped = [prop(mapping, "deviceName") for mapping in mappings]
    messages = []
    if not any(name in roots for name in mapped):
        messages.append(
            f"no block device mapping for the root device ({' or '.join(roots)}), only for {', '.join(map(str, mapped))}: "
            "the root volume takes the AMI's default, unencrypted unless the account encrypts EBS by default; "
            "map the root device with ebs.encrypted='true'"
        )
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
    fix="Set metadata_options={'http_tokens': 'required', 'http_put_response_hop_limit': 2} on the launch template.",
    config={"maxHopLimit": {"type": "integer", "minimum": 1, "maximum": 64, "default": MAX_HOP_LIMIT,
                            "description": "the highest httpPutResponseHopLimit allowed (2: the host and its containers)"}},
)

ENCRYPTED_ROOT_VOLUME = ResourceRule(
    id="encrypted-root-volume",
    description="Instance volumes are encrypted at rest.",
    levels=MANDATORY,
    checks={LAUNCH_TEMPLATE: root_volume_encrypted},
    fix="Map the root device and give every EBS block device mapping ebs.encrypted='true'.",
    config={"rootDeviceNames": {"type": "array", "items": {"type": "string"}, "minItems": 1, "default": ROOT_DEVICE_NAMES,
                                "description": "device names that are an AMI's root device"}},
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

"""The stack file schema: what a platform team may write under `kiln:` in Pulumi.<env>.yaml.

Models mirror the stack file one-to-one (camelCase keys, Databricks vocabulary). Every
rule that can be checked without AWS is checked here, so a bad stack file fails before
the Pulumi engine, MLflow or AWS is touched, with the file and key path in the message.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import botocore.session
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra.plan.catalog import (
    AMI_PARAMETERS,
    DEFAULT_BUILD_TIMEOUT_MINUTES,
    INSTANCES,
    OS_RESERVE_GIB,
    PROFILES,
    ComputeType,
    GpuPlacement,
    ami_class,
)
from infra.plan.stack_file import StackFileSyntaxError, config_environment_problems, decode_stack_text, load_stack_yaml
from runtime.contract import DATABRICKS_REQUEST_TIMEOUT_SECONDS
from runtime.secrets import REFERENCE_FORMS, SecretError, credential_problem, is_reference_like, parse_reference
from runtime.settings import DEFAULT_AUTH_REFRESH_SECONDS, DEFAULT_CAPTURE_MAX_BODY_BYTES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STACKS_DIR = PROJECT_ROOT / "stacks"
NAMESPACE = "kiln"

# ALB idle timeout is 1-4000 s (elbv2 attribute idle_timeout.timeout_seconds). Kiln sets it
# a few seconds above the longest request timeout so the ALB never cuts a request the
# runtime is still allowed to answer.
ALB_MAX_IDLE_TIMEOUT_SECONDS = 4000
IDLE_TIMEOUT_MARGIN_SECONDS = 5
MAX_REQUEST_TIMEOUT_SECONDS = ALB_MAX_IDLE_TIMEOUT_SECONDS - IDLE_TIMEOUT_MARGIN_SECONDS

# Databricks workload sizes as provisioned concurrency ranges.
WORKLOAD_SIZES: dict[str, tuple[int, int]] = {"Small": (4, 4), "Medium": (8, 16), "Large": (16, 64)}

# Lower-case DNS-label style: safe in URL paths, AWS names and tags alike.
NAME_PATTERN = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MODEL_URI_PATTERN = re.compile(r"(models:/[^/@]+(/[0-9]+|@[A-Za-z0-9_-]+)|runs:/[0-9a-f]+/.+|s3://[^/]+/.+|[./~].*|/.*)")
ENVIRONMENT_VARIABLE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# EC2 resource ids: a prefix and 8 (older) or 17 hexadecimal digits; anything else is
# "InvalidSubnetID.Malformed" at `pulumi up`
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html).
EC2_ID_DIGITS = r"([0-9a-f]{8}|[0-9a-f]{17})"
SUBNET_ID_PATTERN = re.compile(rf"subnet-{EC2_ID_DIGITS}")
VPC_ID_PATTERN = re.compile(rf"vpc-{EC2_ID_DIGITS}")
ROUTE_TABLE_ID_PATTERN = re.compile(rf"rtb-{EC2_ID_DIGITS}")
SUBNET_IDS_SCHEMA: dict[str, Any] = {"items": {"type": "string", "pattern": f"^{SUBNET_ID_PATTERN.pattern}$"}}
ROUTE_TABLE_IDS_SCHEMA: dict[str, Any] = {"items": {"type": "string", "pattern": f"^{ROUTE_TABLE_ID_PATTERN.pattern}$"}}

# AWS tag limits (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html):
# 50 tags per resource, keys 1-128 and values 0-256 characters of letters, digits, spaces
# and _ . : / = + - @, and no key may start with `aws:`. Kiln writes its own `kiln:` tags
# on every resource (infra/plan/stack.py), so a stack may add up to 50 minus those.
MAX_TAGS_PER_RESOURCE = 50
KILN_TAGS_PER_RESOURCE = 4
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
TAG_PUNCTUATION = "_.:/=+-@"
RESERVED_TAG_PREFIXES = ("aws:", "kiln:")

# Traffic a served model can be sized for: concurrency (QPS × latency) up to the largest
# maxProvisionedConcurrency a stack may write, and no request faster than the runtime's
# own work (about a millisecond: HTTP parsing, JSON, schema enforcement).
MAX_CONCURRENCY = 1024
MIN_EXPECTED_LATENCY_MS = 1.0


class ConfigError(Exception):
    """A stack file that cannot be deployed; `problems` are 'key.path: what is wrong' lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


class KeyPathError(ValueError):
    """Raised by cross-field validators to point at a key below the model that checks it."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        self.path = path
        super().__init__(message)


class _Model(BaseModel):
    # Strict: YAML `true` is not the number 1 and `"8"` is not 8; infinity and NaN are no numbers.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True, allow_inf_nan=False
    )


def _canonical_cidr(text: str) -> str | None:
    """`text` as EC2 spells a CIDR block (a bare address as /32 or /128, host bits cleared),
    or None when it names no network at all."""
    address, _, prefix = text.partition("/")
    if prefix and not prefix.isdigit():
        return None
    try:
        return str(ipaddress.ip_network(address + (f"/{int(prefix)}" if prefix else ""), strict=False))
    except ValueError:
        return None


def _check_name(value: str, what: str) -> str:
    # fullmatch: a `$` pattern would also match before a trailing newline.
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_ids(ids: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    bad = [repr(item) for item in ids if not pattern.fullmatch(item)]
    if bad:
        prefix = pattern.pattern.partition("-")[0]
        raise ValueError(f"not {what}: {', '.join(bad)} (expected '{prefix}-' and 8 or 17 hexadecimal digits)")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} are listed twice")
    return ids


class VpcEndpoints(_Model):
    """VPC endpoints for what the instances call, so they reach AWS without a NAT gateway and
    their HTTPS egress goes to those endpoints only (docs/security.md)."""

    enabled: bool = True
    # The private subnets' route tables: S3 through a gateway endpoint (free) routed from them.
    # Empty, S3 through an interface endpoint, which carries no AL2023 package download.
    route_table_ids: list[str] = Field(default_factory=list, json_schema_extra=ROUTE_TABLE_IDS_SCHEMA)

    @field_validator("route_table_ids")
    @classmethod
    def _route_table_ids(cls, ids: list[str]) -> list[str]:
        return _check_ids(ids, ROUTE_TABLE_ID_PATTERN, "route table ids")


class Network(_Model):
    # The patterns are for editors (schema/); the validators below say what is wrong.
    vpc_id: str = Field(json_schema_extra={"pattern": f"^{VPC_ID_PATTERN.pattern}$"})
    private_subnet_ids: list[str] = Field(min_length=2, json_schema_extra=SUBNET_IDS_SCHEMA)
    public_subnet_ids: list[str] = Field(default_factory=list, json_schema_extra=SUBNET_IDS_SCHEMA)
    # Unset or `enabled: false`: instances reach AWS through whatever the VPC has (egress 443 anywhere).
    vpc_endpoints: VpcEndpoints | None = None

    @field_validator("vpc_id")
    @classmethod
    def _vpc_id(cls, vpc_id: str) -> str:
        if not VPC_ID_PATTERN.fullmatch(vpc_id):
            raise ValueError(f"{vpc_id!r} is not a VPC id (expected 'vpc-' and 8 or 17 hexadecimal digits)")
        return vpc_id

    @field_validator("private_subnet_ids", "public_subnet_ids")
    @classmethod
    def _subnet_ids(cls, ids: list[str]) -> list[str]:
        return _check_ids(ids, SUBNET_ID_PATTERN, "subnet ids")

    @property
    def endpoints(self) -> VpcEndpoints | None:
        """The VPC endpoints the stack creates, None when it creates none."""
        return self.vpc_endpoints if self.vpc_endpoints is not None and self.vpc_endpoints.enabled else None


class Gateway(_Model):
    internet_facing: bool = False
    certificate_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:acm:")
    # Unset, an internal gateway admits 10.0.0.0/8; written, it admits exactly these blocks.
    allowed_cidrs: list[str] | None = Field(default=None, min_length=1)

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, cidrs: list[str] | None) -> list[str] | None:
        if cidrs is None:
            return None
        for cidr in cidrs:
            # EC2 takes only address/prefix-length with no host bits set: ipaddress also reads
            # 10.1.2.3 and 10.0.0.0/255.0.0.0, which AWS refuses at `pulumi up` ("CIDR block … is
            # malformed"); the canonical spelling also makes two ways of writing one block one.
            if cidr != _canonical_cidr(cidr):
                canonical = _canonical_cidr(cidr)
                hint = f"; did you mean {canonical}?" if canonical else ""
                raise ValueError(f"{cidr!r} is not a CIDR block such as 10.0.0.0/8{hint}")
        duplicates = sorted({cidr for cidr in cidrs if cidrs.count(cidr) > 1})
        if duplicates:
            raise ValueError(f"CIDR blocks listed twice: {', '.join(duplicates)}")
        return cidrs

    @model_validator(mode="after")
    def _internet_facing_needs_explicit_cidrs(self) -> Gateway:
        if self.internet_facing and self.allowed_cidrs is None:
            raise KeyPathError(
                ("allowedCidrs",),
                "an internet-facing gateway needs allowedCidrs written out (use [0.0.0.0/0] to open it to everyone)",
            )
        return self

    @property
    def ingress_cidrs(self) -> list[str]:
        """Internal gateways default to the RFC 1918 10/8 range most VPCs are carved from."""
        return self.allowed_cidrs if self.allowed_cidrs is not None else ["10.0.0.0/8"]


class Alerts(_Model):
    """Where the stack's alarms and instance-refresh failures are sent: an SNS topic the team
    already subscribes to (email, chat, paging), in the stack's account and region.

    The topic's access policy must let CloudWatch and EventBridge publish to it
    (docs/operate.md, "Alerts"); Kiln does not rewrite a policy it does not own.
    """

    sns_topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")


class Build(_Model):
    # CodeBuild accepts 5-2160 minutes.
    timeout_minutes: int = Field(default=DEFAULT_BUILD_TIMEOUT_MINUTES, ge=5, le=2160)


# EC2 image ids: "ami-" and 8 or 17 hexadecimal digits.
AMI_ID_PATTERN = r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$"


class Amis(_Model):
    """The AMI each compute class boots, pinned, so that only a change to this file rolls the
    groups onto a new AMI (`kiln amis STACK` prints the ids AWS publishes today).

    Unpinned, a served model boots what the class's public SSM parameter names at each
    `pulumi up`: allowed outside prod, with a warning; prod must pin every class it uses.
    """

    cpu: str | None = Field(default=None, pattern=AMI_ID_PATTERN)
    gpu: str | None = Field(default=None, pattern=AMI_ID_PATTERN)

    def pinned(self, compute_class: str) -> str | None:
        return getattr(self, compute_class)


# CloudWatch alarms may look back at most one day (evaluation periods × period ≤ 86,400 s),
# and the idle alarm uses 1-minute periods.
MAX_IDLE_MINUTES = 1440
# Databricks: "scale-down happens every 5 minutes"; scale to zero after 30 idle minutes.
DATABRICKS_SCALE_IN_SECONDS = 300
DATABRICKS_IDLE_MINUTES = 30


class WarmPool(_Model):
    """Stopped instances that already hold the image and the model, started on scale-out.

    A stopped instance costs only its EBS volumes; starting it skips launch, image pull and
    most of the model download (docs/scaling.md gives the expected wake time).
    """

    min_size: int = Field(default=1, ge=0, le=100)
    # Scale-in stops an instance back into the pool instead of terminating it.
    reuse_on_scale_in: bool = True


class Scaling(_Model):
    """How a served model follows its traffic; the defaults are Databricks' stated behaviour,
    except that scale-out also watches in-flight requests every 10 s."""

    target_utilization: float = Field(default=0.7, ge=0.1, le=1.0)
    # The runtime publishes in-flight requests every 10 s (Kiln/Serving InFlightRequests);
    # without it, scale-out waits for the 1-minute ALB request count.
    high_resolution_metric: bool = True
    # One instance leaves at most this often; scale-in is judged over the same window.
    scale_in_cooldown_seconds: int = Field(default=DATABRICKS_SCALE_IN_SECONDS, ge=60, le=3600)
    idle_minutes_before_zero: int = Field(default=DATABRICKS_IDLE_MINUTES, ge=1, le=MAX_IDLE_MINUTES)
    warm_pool: WarmPool | None = None

    @field_validator("scale_in_cooldown_seconds")
    @classmethod
    def _whole_minutes(cls, value: int) -> int:
        # The scale-in alarm counts 1-minute ALB data points, so the window is whole minutes.
        if value % 60:
            raise ValueError(f"{value} is not a whole number of minutes; use a multiple of 60 (e.g. {value // 60 * 60 or 60})")
        return value


class ServedModel(_Model):
    name: str
    model_uri: str
    # Not strict: the stack file spells the enum's value (checked against the list below).
    compute_type: ComputeType = Field(strict=False)
    workload_size: Literal["Small", "Medium", "Large"] | None = None
    min_provisioned_concurrency: int | None = Field(default=None, ge=0, le=MAX_CONCURRENCY)
    max_provisioned_concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    expected_qps: float | None = Field(default=None, gt=0)
    expected_latency_ms: float | None = Field(
        default=None, ge=MIN_EXPECTED_LATENCY_MS, le=MAX_REQUEST_TIMEOUT_SECONDS * 1000
    )
    scale_to_zero_enabled: bool = False
    instance_type: str | None = None
    # Only on compute types with several GPUs per instance; unset, the model's memory decides
    # (one worker per GPU when it fits one device, else spread across them).
    gpu_placement: GpuPlacement | None = Field(default=None, strict=False)
    # The longest expected wait for a worker a request is admitted with (KILN_QUEUE_BUDGET_SECONDS);
    # unset, 1 s (or half a shorter request timeout). Beyond it the runtime answers 429 at once.
    queue_budget_seconds: float | None = Field(default=None, gt=0)
    # Adaptive batching (KILN_MAX_BATCH_SIZE / KILN_MAX_BATCH_DELAY_MS): unset, off on CPU
    # compute types and DEFAULT_GPU_BATCH_SIZE on GPU ones (infra/plan/capacity.py).
    max_batch_size: int | None = Field(default=None, ge=1, le=1024)
    max_batch_delay_ms: int | None = Field(default=None, ge=0, le=1000)
    environment_vars: dict[str, str] = Field(default_factory=dict)
    scaling: Scaling = Scaling()
    # nominal: workers sized by the compute type's memory per concurrency (Databricks' figure);
    # measured: by the reload check's measured worker memory and latency (`kiln bake` records them).
    sizing: Literal["nominal", "measured"] = "nominal"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "served model name")

    @field_validator("model_uri")
    @classmethod
    def _model_uri(cls, value: str) -> str:
        if not MODEL_URI_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a model URI; use models:/<name>/<version>, models:/<name>@<alias>, "
                "runs:/<run-id>/<path>, s3://<bucket>/<key> or a local path"
            )
        return value

    @field_validator("compute_type", mode="before")
    @classmethod
    def _compute_type(cls, value: Any) -> Any:
        valid = [member.value for member in ComputeType]
        if value not in valid:
            raise ValueError(f"unknown compute type {value!r}; valid compute types: {', '.join(valid)}")
        return value

    @field_validator("environment_vars")
    @classmethod
    def _environment_vars(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [key for key in env if not ENVIRONMENT_VARIABLE_PATTERN.fullmatch(key) or key.startswith("KILN_")]
        if bad:
            raise ValueError(f"invalid environment variable names {bad} (KILN_* is reserved for the runtime)")
        for key, value in env.items():
            if is_reference_like(value):
                _secret_reference(value, (key,))
            elif problem := credential_problem(key, value):
                raise KeyPathError(
                    (key,),
                    f"{problem}: a plain value is written into the instance's user data, which anyone allowed "
                    "ec2:DescribeInstanceAttribute can read; store it in Secrets Manager or SSM (SecureString) and "
                    f"write a reference instead: {REFERENCE_FORMS}",
                )
        multiline = [key for key, value in env.items() if "\n" in value]
        if multiline:
            raise ValueError(f"environment variable values must be one line: {multiline}")
        return env

    def _traffic_fits_the_catalog(self) -> None:
        """QPS × latency is the concurrency asked for (peak: twice that); it must be one the
        catalog can provision, or the plan would ask for instances by the billion."""
        assert self.expected_qps is not None and self.expected_latency_ms is not None
        peak = self.expected_qps * self.expected_latency_ms / 1000 * 2
        if peak > MAX_CONCURRENCY:
            raise KeyPathError(
                ("expectedQps",),
                f"{self.expected_qps:g} QPS × {self.expected_latency_ms:g} ms needs a peak concurrency of {peak:,.0f} "
                f"(twice QPS × latency), more than the {MAX_CONCURRENCY} one served model can have; split the traffic "
                "across served models or endpoints, or check the units (QPS per served model, latency in ms)",
            )

    def _instance_fits_one_worker(self) -> None:
        """A CPU instance must hold one worker of the compute type's memory beside the OS."""
        profile = PROFILES[self.compute_type]
        instance = INSTANCES[str(self.instance_type)]
        needed = profile.memory_per_concurrency_gib + OS_RESERVE_GIB
        if not profile.has_gpu and instance.memory_gib < needed:
            fitting = [name for name in profile.allowed_instances if INSTANCES[name].memory_gib >= needed]
            raise KeyPathError(
                ("instanceType",),
                f"{instance.name} has {instance.memory_gib:g} GiB, and one {self.compute_type.value} worker needs "
                f"{profile.memory_per_concurrency_gib:g} GiB + {OS_RESERVE_GIB:g} GiB for the OS; choose one of "
                f"{', '.join(fitting)}, or leave instanceType out",
            )

    @property
    def secret_environment_vars(self) -> dict[str, str]:
        """The variables whose values are secret references, resolved on the instance."""
        return {key: value for key, value in self.environment_vars.items() if is_reference_like(value)}

    @property
    def plain_environment_vars(self) -> dict[str, str]:
        """The variables written as they are into the instance's environment."""
        return {key: value for key, value in self.environment_vars.items() if not is_reference_like(value)}

    @model_validator(mode="after")
    def _one_way_to_size(self) -> ServedModel:
        explicit = self.min_provisioned_concurrency is not None or self.max_provisioned_concurrency is not None
        from_traffic = self.expected_qps is not None
        ways = [self.workload_size is not None, explicit, from_traffic]
        if sum(ways) != 1:
            raise ValueError(
                "give exactly one of workloadSize, min/maxProvisionedConcurrency, or expectedQps + expectedLatencyMs"
            )
        if from_traffic and self.expected_latency_ms is None:
            raise KeyPathError(("expectedLatencyMs",), "expectedQps needs expectedLatencyMs (concurrency = QPS × latency)")
        if from_traffic:
            self._traffic_fits_the_catalog()
        if explicit:
            if self.max_provisioned_concurrency is None:
                raise KeyPathError(("maxProvisionedConcurrency",), "is required with minProvisionedConcurrency")
            low = self.min_provisioned_concurrency or 0
            if low > self.max_provisioned_concurrency:
                raise KeyPathError(
                    ("minProvisionedConcurrency",),
                    f"min {low} is greater than maxProvisionedConcurrency {self.max_provisioned_concurrency}",
                )
        if self.instance_type is not None:
            allowed = PROFILES[self.compute_type].allowed_instances
            if self.instance_type not in allowed:
                raise KeyPathError(
                    ("instanceType",),
                    f"{self.instance_type!r} is not allowed for {self.compute_type.value}; allowed: {', '.join(allowed)}",
                )
            self._instance_fits_one_worker()
        gpus = PROFILES[self.compute_type].gpus_per_instance
        if self.gpu_placement is not None and gpus < 2:
            raise KeyPathError(
                ("gpuPlacement",),
                f"{self.compute_type.value} has {gpus} GPU{'s' if gpus != 1 else ''} per instance, so there is nothing "
                "to place; remove it, or choose MULTIGPU_MEDIUM or GPU_MEDIUM_8",
            )
        if not self.scale_to_zero_enabled and "idle_minutes_before_zero" in self.scaling.model_fields_set:
            raise KeyPathError(
                ("scaling", "idleMinutesBeforeZero"),
                "only applies with scaleToZeroEnabled: true (remove it, or enable scale to zero)",
            )
        return self


def _secret_reference(value: str, path: tuple[str | int, ...]) -> str:
    try:
        parse_reference(value)
    except SecretError as error:
        raise KeyPathError(path, str(error)) from None
    return value


class EndpointAuth(_Model):
    """Bearer tokens an endpoint requires (docs/security.md). Only sha256 hashes of the tokens
    are stored, one per line, in a secret the instances re-read every refreshSeconds, so adding
    or revoking a token needs no rollout. Unset on an endpoint, auth is on exactly when the
    gateway is internet-facing."""

    enabled: bool = True
    # A secret reference; unset, the stack creates a Secrets Manager secret for the endpoint
    # (empty until a hash is put in it: every request but /ping and /health gets 401).
    token_hashes: str | None = None
    refresh_seconds: int = Field(default=int(DEFAULT_AUTH_REFRESH_SECONDS), ge=10, le=3600)

    @field_validator("token_hashes")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return None if value is None else _secret_reference(value, ())

    @model_validator(mode="after")
    def _nothing_to_read_when_off(self) -> EndpointAuth:
        if not self.enabled and self.token_hashes is not None:
            raise KeyPathError(("tokenHashes",), "has no effect with enabled: false; remove it, or enable auth")
        return self


class Route(_Model):
    served_model_name: str
    traffic_percentage: int = Field(ge=0, le=100)


class TrafficConfig(_Model):
    routes: list[Route] = Field(min_length=1)


# One forward action weighs at most 5 target groups, one per served model (an ALB quota
# that cannot be raised: docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-limits.html).
MAX_SERVED_MODELS_PER_ENDPOINT = 5


def _tag_text_problem(text: str) -> str | None:
    bad = sorted({char for char in text if not (char.isalnum() or char == " " or char in TAG_PUNCTUATION)})
    return f"has characters AWS tags do not take: {''.join(bad)!r}" if bad else None


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """AWS's tag limits, checked before `pulumi up` meets them on the first resource."""
    limit = MAX_TAGS_PER_RESOURCE - KILN_TAGS_PER_RESOURCE
    if len(tags) > limit:
        raise ValueError(
            f"{len(tags)} tags; AWS takes {MAX_TAGS_PER_RESOURCE} per resource and Kiln writes "
            f"{KILN_TAGS_PER_RESOURCE} of its own (kiln:stack, kiln:environment, kiln:endpoint, kiln:served-model), "
            f"so at most {limit}"
        )
    for key, value in tags.items():
        problem = (
            "is empty" if not key
            else f"is {len(key)} characters, more than {MAX_TAG_KEY_LENGTH}" if len(key) > MAX_TAG_KEY_LENGTH
            else f"starts with {key.split(':')[0]}:, which is reserved (aws: by AWS, kiln: for Kiln's own tags)"
            if key.lower().startswith(RESERVED_TAG_PREFIXES)
            else _tag_text_problem(key)
        )
        if problem:
            raise ValueError(f"tag key {key!r} {problem}")
        problem = (f"is {len(value)} characters, more than {MAX_TAG_VALUE_LENGTH}" if len(value) > MAX_TAG_VALUE_LENGTH
                   else _tag_text_problem(value))
        if problem:
            raise ValueError(f"the value of tag {key!r} {problem}")
    return tags


# Athena reads table names of lower-case letters, digits and '_' only
# (docs.aws.amazon.com/athena/latest/ug/tables-databases-columns-names.html); Glue takes up
# to 255 characters, of which Kiln keeps room for the `_payload` suffix Databricks adds.
TABLE_NAME_PREFIX_PATTERN = r"^[a-z][a-z0-9_]{0,199}$"
# Bodies larger than this are stored as null; Databricks' own payload limit is 16 MB.
MAX_CAPTURE_BODY_BYTES = 16 * 1024 * 1024


class AutoCaptureConfig(_Model):
    """An endpoint's inference table, as Databricks' auto_capture_config spells it: every
    sampled request and response of its served models as one row in S3, queryable with Athena
    through the Glue table `<schemaName>.<tableNamePrefix>_payload` (docs/operate.md)."""

    enabled: bool = True
    # The Glue database; unset, the stack's own (kiln_<stack>).
    schema_name: str | None = Field(default=None, pattern=TABLE_NAME_PREFIX_PATTERN)
    # Unset, the endpoint's name with '_' for '-'.
    table_name_prefix: str | None = Field(default=None, pattern=TABLE_NAME_PREFIX_PATTERN)
    # The share of requests captured, as Databricks' samplingFraction × 100.
    sampling_percentage: float = Field(default=100, gt=0, le=100)
    format: Literal["parquet", "jsonl"] = "parquet"
    max_body_bytes: int = Field(default=DEFAULT_CAPTURE_MAX_BODY_BYTES, ge=0, le=MAX_CAPTURE_BODY_BYTES)


class Endpoint(_Model):
    name: str
    served_models: list[ServedModel] = Field(min_length=1, max_length=MAX_SERVED_MODELS_PER_ENDPOINT)
    traffic_config: TrafficConfig | None = None
    auto_capture_config: AutoCaptureConfig | None = None
    request_timeout_seconds: int = Field(default=DATABRICKS_REQUEST_TIMEOUT_SECONDS, ge=1, le=MAX_REQUEST_TIMEOUT_SECONDS)
    tags: dict[str, str] = Field(default_factory=dict)
    # Unset: auth on exactly when the gateway is internet-facing (StackConfig.auth_for).
    auth: EndpointAuth | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "endpoint name")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(tags)

    @field_validator("served_models", mode="before")
    @classmethod
    def _fit_one_forward_action(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_SERVED_MODELS_PER_ENDPOINT:
            raise ValueError(
                f"{len(value)} served models; an endpoint takes at most {MAX_SERVED_MODELS_PER_ENDPOINT}, because its "
                "ALB listener rule forwards to one target group per served model and one forward action weighs at "
                f"most {MAX_SERVED_MODELS_PER_ENDPOINT} (a quota AWS does not raise); split them across endpoints"
            )
        return value

    @model_validator(mode="after")
    def _queue_budgets_within_the_request_timeout(self) -> Endpoint:
        for index, served in enumerate(self.served_models):
            if served.queue_budget_seconds is not None and served.queue_budget_seconds >= self.request_timeout_seconds:
                raise KeyPathError(
                    ("servedModels", index, "queueBudgetSeconds"),
                    f"{served.queue_budget_seconds:g} s is not less than the endpoint's requestTimeoutSeconds "
                    f"({self.request_timeout_seconds} s): a request admitted with that wait would time out before "
                    "its prediction; lower it, or leave it out (1 s, or half a shorter request timeout)",
                )
        return self

    @model_validator(mode="after")
    def _routes_match_served_models(self) -> Endpoint:
        names = [served.name for served in self.served_models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KeyPathError(("servedModels",), f"duplicate served model names: {', '.join(duplicates)}")
        if self.traffic_config is None:
            if len(names) > 1:
                raise KeyPathError(("trafficConfig",), f"is required with more than one served model ({', '.join(names)})")
            return self
        routes = self.traffic_config.routes
        path = ("trafficConfig", "routes")
        routed = [route.served_model_name for route in routes]
        unknown = [name for name in routed if name not in names]
        if unknown:
            raise KeyPathError(path, f"unknown served models {unknown}; served models here: {', '.join(names)}")
        if len(set(routed)) != len(routed):
            raise KeyPathError(path, "a served model has more than one route")
        missing = [name for name in names if name not in routed]
        if missing:
            raise KeyPathError(path, f"no route for served models {missing} (give them trafficPercentage: 0 to keep them warm)")
        total = sum(route.traffic_percentage for route in routes)
        if total != 100:
            raise KeyPathError(path, f"percentages sum to {total}, must be 100")
        return self

    def traffic_percentage(self, served_model_name: str) -> int:
        if self.traffic_config is None:
            return 100
        return next(r.traffic_percentage for r in self.traffic_config.routes if r.served_model_name == served_model_name)


@cache
def known_regions() -> tuple[str, ...]:
    """The regions EC2 is in, by the endpoint data of the installed botocore."""
    session = botocore.session.get_session()
    return tuple(sorted(
        region for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    ))


class StackConfig(_Model):
    region: str
    environment: Literal["dev", "staging", "prod"]
    mlflow_tracking_uri: str
    network: Network
    gateway: Gateway = Gateway()
    build: Build = Build()
    amis: Amis = Amis()
    # Unset, alarms only change state (the console and `kiln status` show them); prod needs
    # one (the policy pack's alert-destination rule).
    alerts: Alerts | None = None
    endpoints: list[Endpoint] = Field(min_length=1)
    # A customer managed KMS key for the artifact bucket, the instances' volumes and the
    # secrets the stack creates; unset, the AWS managed keys (aws/s3, aws/ebs, aws/secretsmanager).
    kms_key_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$")
    # Session Manager shell access to instances (no SSH): the instance role gets exactly the
    # ssmmessages/UpdateInstanceInformation calls Session Manager needs (docs/security.md).
    session_manager: bool = True

    @field_validator("region")
    @classmethod
    def _region(cls, region: str) -> str:
        regions = known_regions()
        if region not in regions:
            close = difflib.get_close_matches(region, regions, n=1)
            hint = f"did you mean {close[0]}?" if close else f"regions: {', '.join(regions)}"
            raise ValueError(f"unknown AWS region {region!r} (none of the regions EC2 is in, by botocore's data); {hint}")
        return region

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _anchor_local_store(cls, uri: str) -> str:
        """A relative sqlite store means the project's folder, wherever the program runs from
        (the Pulumi language host runs it from infra/). An empty URI, or a sqlite URI with no
        file, would have MLflow create a store in whatever folder the command runs in."""
        prefix = "sqlite:///"
        if not uri.strip() or uri != uri.strip() or uri in (prefix, "file:", "file://", "file:///"):
            raise ValueError(
                f"{uri!r} names no MLflow store; write the registry's URI, e.g. http://mlflow.internal:5000 or "
                "sqlite:///.kiln/mlflow/mlflow.db (a file under the project)"
            )
        if uri.startswith(prefix) and not uri.removeprefix(prefix).startswith("/"):
            return f"{prefix}{PROJECT_ROOT / uri.removeprefix(prefix)}"
        return uri

    @model_validator(mode="after")
    def _stack_wide_rules(self) -> StackConfig:
        names = [endpoint.name for endpoint in self.endpoints]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KeyPathError(("endpoints",), f"duplicate endpoint names: {', '.join(duplicates)}")
        if self.gateway.internet_facing and len(self.network.public_subnet_ids) < 2:
            raise KeyPathError(("network", "publicSubnetIds"), "an internet-facing gateway needs at least two public subnets")
        if self.alerts is not None and self.alerts.sns_topic_arn.split(":")[3] != self.region:
            raise KeyPathError(
                ("alerts", "snsTopicArn"),
                f"the topic is in {self.alerts.sns_topic_arn.split(':')[3]}, the stack in {self.region}: CloudWatch alarms "
                "notify only topics in their own region",
            )
        if self.environment == "prod":
            self._prod_pins_its_amis()
        self._one_inference_table_per_name()
        self._cpu_instances_reach_their_packages()
        return self

    def _cpu_instances_reach_their_packages(self) -> None:
        """A CPU instance installs Docker at first boot from the AL2023 repositories, S3 buckets
        it reaches by their dual-stack names (`al2023-repos-<region>-….s3.dualstack.…`): an S3
        gateway endpoint routes those privately, an S3 interface endpoint's private DNS does not."""
        endpoints = self.network.endpoints
        if endpoints is None or endpoints.route_table_ids:
            return
        cpu = [f"{e.name}.{s.name}" for e in self.endpoints for s in e.served_models if not PROFILES[s.compute_type].has_gpu]
        if cpu:
            raise KeyPathError(
                ("network", "vpcEndpoints", "routeTableIds"),
                f"is required with CPU served models ({', '.join(cpu)}): their instances install Docker at first boot "
                "from the Amazon Linux 2023 repositories in S3, which only an S3 gateway endpoint reaches without "
                "internet access; list the private subnets' route tables (rtb-…)",
            )

    def _one_inference_table_per_name(self) -> None:
        """Two endpoints writing one table would mix their rows under one name."""
        seen: dict[tuple[str | None, str], str] = {}
        for index, endpoint in enumerate(self.endpoints):
            capture = endpoint.auto_capture_config
            if capture is None or not capture.enabled:
                continue
            table = (capture.schema_name, capture.table_name_prefix or endpoint.name.replace("-", "_"))
            if table in seen:
                raise KeyPathError(("endpoints", index, "autoCaptureConfig", "tableNamePrefix"),
                                   f"{table[1]!r} is the inference table of endpoint {seen[table]} too; give each "
                                   "endpoint its own tableNamePrefix")
            seen[table] = endpoint.name

    def auth_for(self, endpoint: Endpoint) -> EndpointAuth | None:
        """The auth an endpoint requires: its own `auth`, else on when the gateway is internet-facing."""
        auth = endpoint.auth or EndpointAuth(enabled=self.gateway.internet_facing)
        return auth if auth.enabled else None

    def _prod_pins_its_amis(self) -> None:
        """Prod changes AMI only through a reviewed change to its stack file."""
        users: dict[str, list[str]] = {}
        for endpoint in self.endpoints:
            for served in endpoint.served_models:
                users.setdefault(ami_class(PROFILES[served.compute_type]), []).append(f"{endpoint.name}.{served.name}")
        for compute_class, served_models in sorted(users.items()):
            if self.amis.pinned(compute_class) is None:
                raise KeyPathError(
                    ("amis", compute_class),
                    f"prod boots only pinned AMIs, and {', '.join(served_models)} need a {compute_class} AMI: "
                    f"set it to the id `kiln amis prod` prints (SSM parameter {AMI_PARAMETERS[compute_class]})",
                )


def _key_path(location: tuple[str | int, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _unknown_key_message(error: dict[str, Any], root: type[BaseModel]) -> str:
    """Turn pydantic's 'Extra inputs are not permitted' into a hint with the likely key."""
    key = str(error["loc"][-1])
    model = _model_at(root, error["loc"][:-1])
    known = [field.alias or name for name, field in model.model_fields.items()] if model else []
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
    return f"unknown key {key!r}{hint}"


def _model_at(root: type[BaseModel], location: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in location:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found:
            return found
    return None


def validation_problems(error: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One 'key.path: what is wrong' line per pydantic error, in stack-file spelling."""
    problems = []
    for item in error.errors():
        location = tuple(item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, KeyPathError):
            location += cause.path
            message = str(cause)
        elif item["type"] == "extra_forbidden":
            message = _unknown_key_message(item, root or StackConfig)
        elif item["type"] == "missing":
            message = "is required"
        else:
            message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{_key_path(location) or '(top level)'}: {message}")
    return problems


def parse_stack_config(values: dict[str, Any], source: str) -> StackConfig:
    """Validate already-parsed values (keys without the `kiln:` prefix, plus `region`)."""
    try:
        return StackConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(source, validation_problems(error)) from None


def resolve_stack_path(stack: str) -> Path:
    """`dev` means stacks/Pulumi.dev.yaml; anything with a slash or .yaml is a path."""
    if stack.endswith((".yaml", ".yml")) or "/" in stack:
        return Path(stack)
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def stack_name(path: Path) -> str:
    match = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", path.name)
    return match.group(1) if match else path.stem


def read_stack_file(path: Path) -> dict[str, Any]:
    """The raw `config:` block of a stack file, exactly as the Pulumi CLI reads it."""
    if not path.is_file():
        stacks = ", ".join(sorted(stack_name(file) for file in STACKS_DIR.glob("Pulumi.*.yaml"))) or "none"
        raise ConfigError(str(path), [f"stack file not found; the stacks in {STACKS_DIR} are: {stacks}"])
    try:
        document = load_stack_yaml(decode_stack_text(path.read_bytes())) or {}
    except StackFileSyntaxError as error:
        raise ConfigError(str(path), [str(error)]) from None
    except OSError as error:
        raise ConfigError(str(path), [f"(file): cannot be read: {error.strerror}"]) from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(str(path), ["(top level): a stack file needs a 'config:' mapping"])
    return config


def values_from_stack_config(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Strip namespaces: `kiln:endpoints` → `endpoints`, `aws:region` → `region`."""
    values: dict[str, Any] = {}
    problems = []
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace == NAMESPACE and name:
            values[name] = value
        elif key == "aws:region":
            values["region"] = value
        elif namespace not in ("aws", "pulumi"):
            problems.append(f"{key}: unknown namespace {namespace!r}; Kiln keys are written kiln:<key>")
    if problems:
        raise ConfigError(source, problems)
    return values


def checked_stack_name(path: Path) -> str:
    name = stack_name(path)
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(str(path), [f"(file name): stack name {name!r} must be lower-case letters, digits or '-'"])
    return name


@dataclass(frozen=True)
class StackFile:
    """One read of a stack file: its name, the `config:` block as the Pulumi CLI hands it to
    the program, and that block validated."""

    name: str
    path: Path
    raw: dict[str, Any]
    config: StackConfig


def read_stack(stack: str, tracking_uri: str | None = None) -> StackFile:
    """`dev` or a path to a stack file, read once and validated; a tracking URI given on the
    command line replaces the stack's own, for the program as for the validation."""
    path = resolve_stack_path(stack)
    raw = read_stack_file(path)
    if tracking_uri:
        raw = {**raw, f"{NAMESPACE}:mlflowTrackingUri": tracking_uri}
    # The config as the program and the policy pack will be handed it must fit their environment.
    problems = config_environment_problems(raw)
    if problems:
        raise ConfigError(str(path), problems)
    config = parse_stack_config(values_from_stack_config(raw, str(path)), str(path))
    return StackFile(checked_stack_name(path), path, raw, config)


def load_stack(stack: str) -> tuple[str, StackConfig]:
    """Stack name and validated config for `dev` or a path to a stack file."""
    stack_file = read_stack(stack)
    return stack_file.name, stack_file.config


def json_schema() -> dict[str, Any]:
    """JSON Schema of a whole stack file, for editors (yaml-language-server) to validate against."""
    kiln = StackConfig.model_json_schema(by_alias=True)
    properties = {f"{NAMESPACE}:{key}": value for key, value in kiln.pop("properties").items() if key != "region"}
    properties["aws:region"] = {"type": "string", "description": "AWS region the stack deploys to"}
    required = [f"{NAMESPACE}:{key}" for key in kiln.pop("required", []) if key != "region"] + ["aws:region"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Kiln stack file (stacks/Pulumi.<env>.yaml)",
        "type": "object",
        "properties": {
            "config": {"type": "object", "properties": properties, "required": required},
            "secretsprovider": {"type": "string"},
            "encryptionsalt": {"type": "string"},
        },
        "required": ["config"],
        "$defs": kiln.get("$defs", {}),
    }

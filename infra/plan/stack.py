"""The stack plan: validated config plus every derived number and name the components need.

Components take these plain objects and only create resources; everything a reviewer
might question (sizes, names, timeouts, priorities) is decided here and unit-tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.plan.capacity import CapacityPlan, SizingError, WorkerMeasurement, concurrency_for, plan_capacity
from infra.plan.capture import CapturePlan, plan_capture
from infra.plan.catalog import HOURS_PER_MONTH, PROFILES, ComputeProfile, GpuPlacement, ami_class
from infra.plan.config import (
    IDLE_TIMEOUT_MARGIN_SECONDS,
    ConfigError,
    Endpoint,
    EndpointAuth,
    ServedModel,
    StackConfig,
)
from infra.plan.launch_timing import root_volume_hourly_usd, root_volume_throughput_mib
from infra.plan.names import listener_rule_priorities, short_name
from infra.plan.scaling import ScalingPlan, plan_scaling
from infra.plan.tags import ENDPOINT_TAG, ENVIRONMENT_TAG, SERVED_MODEL_TAG, STACK_TAG
from infra.plan.vpc_endpoints import VpcEndpointsPlan, plan_vpc_endpoints
from runtime.capture import CAPTURE_FLUSH_ON_DRAIN_SECONDS
from runtime.contract import RUNTIME_PORT
from runtime.settings import DEFAULT_AUTH_REFRESH_SECONDS, RuntimeSettings

# The longest logical name a served model's resources start from: its IAM role is autonamed
# `<logical name>-role-<7 characters>` and AWS takes 64.
LOGICAL_NAME_LIMIT = 40
# CreateAutoScalingGroup takes names of up to 255 characters (botocore's service model).
AUTOSCALING_GROUP_NAME_LIMIT = 255
# ALB deregistration delay range is 0-3600 s.
MAX_DEREGISTRATION_DELAY_SECONDS = 3600


def deregistration_delay_seconds(request_timeout_seconds: int) -> int:
    """Long enough for a request admitted just before scale-in to finish."""
    return min(request_timeout_seconds, MAX_DEREGISTRATION_DELAY_SECONDS)


@dataclass(frozen=True)
class ServedModelPlan:
    endpoint: str
    name: str
    model_uri: str
    profile: ComputeProfile
    capacity: CapacityPlan
    traffic_percentage: int
    scale_to_zero: bool
    request_timeout_seconds: int
    # Plain values, written into the instance's env file as they are.
    environment_vars: dict[str, str]
    target_group_name: str
    # Named, not autonamed: the instance names its group when it completes its launch
    # lifecycle action, and its role may do that on this group only, so both know the name
    # before the group exists.
    group_name: str
    # The AMI id the stack pins for this served model's compute class; None: the class's
    # public SSM parameter is read at each `pulumi up` (docs/scaling.md, "AMIs").
    ami_id: str | None
    tags: dict[str, str]
    scaling: ScalingPlan
    # The stack's one ALB: its idle timeout follows the longest request timeout of any endpoint.
    load_balancer_idle_timeout_seconds: int
    # QPS × latency when the stack states expected traffic; the policy pack checks max concurrency covers it.
    expected_peak_concurrency: int | None = None
    # The stack's gpuPlacement as written (None: the model's memory decides, capacity.gpu says how).
    requested_gpu_placement: GpuPlacement | None = None
    # The stack's queueBudgetSeconds (None: the runtime's default, 1 s or half a shorter request timeout).
    queue_budget_seconds: float | None = None
    # Requests one worker call may take (1: batching off), and how long a free worker waits for more.
    max_batch_size: int = 1
    max_batch_delay_ms: int = 0
    # The stack's `sizing`; with `measured` and measurements at hand, `capacity` is the measured
    # plan and `nominal_capacity` the one Databricks' memory per concurrency gives, for comparison.
    sizing: str = "nominal"
    nominal_capacity: CapacityPlan | None = None
    # The stack's kiln:alerts topic its alarms and failed instance refreshes notify (None: none).
    alert_topic_arn: str | None = None
    # The endpoint's inference table, which this served model's runtimes write rows of.
    capture: CapturePlan | None = None
    # Variables whose values are secret references (runtime/secrets.py): only the references
    # reach the instance, which resolves them at start with its role.
    secret_environment_vars: dict[str, str] = field(default_factory=dict)
    # The endpoint's bearer-token auth; None: the endpoint answers without a token.
    auth: EndpointAuth | None = None
    # The stack's customer managed KMS key (None: AWS managed keys), and Session Manager access.
    kms_key_arn: str | None = None
    session_manager: bool = True
    # S3 through the stack's S3 interface endpoint, whose private DNS answers only for S3's
    # regional names: the runtime's boto3 must not use us-east-1's global s3.amazonaws.com.
    s3_regional_endpoint: bool = False

    @property
    def resource_name(self) -> str:
        # '.' cannot appear in endpoint or served model names, so this never collides.
        return f"{self.endpoint}.{self.name}"

    @property
    def logical_name(self) -> str:
        """What its resources are named from: pulumi-aws autonames them `<logical name>-<7
        characters>`, so past LOGICAL_NAME_LIMIT the resource name keeps a readable start and
        ends in a hash of the whole, and the tightest name derived from it (its IAM role, 64
        characters) still fits."""
        return short_name([self.resource_name], limit=LOGICAL_NAME_LIMIT)

    @property
    def lambda_safe_name(self) -> str:
        """The logical name in the characters Lambda takes ([a-zA-Z0-9-_]): '_' for the '.',
        since neither name may contain '_', so two served models never meet."""
        return self.logical_name.replace(".", "_")

    @property
    def deregistration_delay_seconds(self) -> int:
        return self.scaling.deregistration_delay_seconds

    @property
    def stop_timeout_seconds(self) -> int:
        """How long the instance lets the runtime stop: the drain window, plus the upload of the
        inference-table rows still in memory when it captures."""
        return self.deregistration_delay_seconds + (CAPTURE_FLUSH_ON_DRAIN_SECONDS if self.capture else 0)

    @property
    def health_check_grace_seconds(self) -> int:
        return self.profile.health_check_grace_seconds

    @property
    def warm_pool_stopped(self) -> tuple[int, int]:
        """Stopped warm-pool instances with the group at its minimum and at its maximum: AWS keeps
        max - desired, so the pool is largest when the group is smallest."""
        return (self.scaling.warm_pool_stopped(self.scaling.min_instances),
                self.scaling.warm_pool_stopped(self.scaling.max_instances))

    @property
    def warm_pool_hourly_cost(self) -> tuple[float, float]:
        """What those stopped instances' root volumes cost an hour, at the minimum and the maximum."""
        volume = root_volume_hourly_usd(self.profile)
        at_min, at_max = self.warm_pool_stopped
        return at_min * volume, at_max * volume

    @property
    def hourly_cost_min(self) -> float:
        """Instances at the minimum, plus the root volumes of the pool AWS keeps then."""
        return round(self.capacity.sizing.hourly_cost_min + self.warm_pool_hourly_cost[0], 4)

    @property
    def hourly_cost_max(self) -> float:
        return round(self.capacity.sizing.hourly_cost_max + self.warm_pool_hourly_cost[1], 4)

    def warm_pool_arithmetic(self) -> str | None:
        if self.scaling.warm_pool is None:
            return None
        at_min, at_max = self.warm_pool_stopped
        cost_min, cost_max = self.warm_pool_hourly_cost
        throughput = root_volume_throughput_mib(self.profile)
        provisioned = f" + {throughput} MiB/s" if throughput else ""
        return (f"warm pool {at_min} stopped at min, {at_max} at max (= max(minSize {self.scaling.warm_pool.min_size}, "
                f"{self.scaling.max_instances} - desired), as AWS keeps it) × ${root_volume_hourly_usd(self.profile):.4f}/h "
                f"(gp3 {self.profile.root_volume_gib} GiB{provisioned}) = "
                f"${cost_min:.2f}/h at min, ${cost_max:.2f}/h at max")

    def as_properties(self) -> dict[str, Any]:
        """The plan of this served model in the camelCase the component's inputs, the plan
        report and the review share (and the policy pack reads): one serializer for all."""
        sizing = self.capacity.sizing
        optional = {} if self.expected_peak_concurrency is None else {"expectedPeakConcurrency": self.expected_peak_concurrency}
        return {
            "endpoint": self.endpoint,
            "servedModelName": self.name,
            "modelUri": self.model_uri,
            "computeType": self.profile.compute_type.value,
            "instanceType": sizing.instance.name,
            **({"gpuPlacement": self.capacity.gpu.placement.value} if self.capacity.gpu else {}),
            "workersPerInstance": sizing.workers_per_instance,
            "minInstances": sizing.min_instances,
            "maxInstances": sizing.max_instances,
            "minConcurrency": self.capacity.min_concurrency,
            "maxConcurrency": self.capacity.max_concurrency,
            "trafficPercentage": self.traffic_percentage,
            "scaleToZeroEnabled": self.scale_to_zero,
            "requestTimeoutSeconds": self.request_timeout_seconds,
            "authRequired": self.auth is not None,
            "targetRequestsPerMinute": self.capacity.target_requests_per_minute,
            "hourlyCostMin": self.hourly_cost_min,
            "hourlyCostMax": self.hourly_cost_max,
            **optional,
        }

    def sizing_comparison(self) -> list[str]:
        """Both plans of a measured served model and what measuring saves (or costs), per month,
        at the fewest instances and at the most: a served model that scales to zero costs
        nothing at its minimum under either plan, so only its maximum shows the difference."""
        if self.nominal_capacity is None:
            return []
        measured, nominal = self.capacity.sizing, self.nominal_capacity.sizing

        def difference(at: str, measured_hourly: float, nominal_hourly: float) -> str:
            hourly = measured_hourly - nominal_hourly
            return (f"measured - nominal at {at}: ${measured_hourly:.4f}/h - ${nominal_hourly:.4f}/h = "
                    f"${hourly:+.4f}/h × {HOURS_PER_MONTH} h = ${hourly * HOURS_PER_MONTH:+,.2f}/month")

        return [
            "sizing nominal: " + "; ".join(self.nominal_capacity.arithmetic()),
            "sizing measured: " + "; ".join(self.capacity.arithmetic()),
            difference("minimum", measured.hourly_cost_min, nominal.hourly_cost_min),
            difference("maximum", measured.hourly_cost_max, nominal.hourly_cost_max),
        ]

    def capacity_outputs(self) -> dict[str, Any]:
        """The sizing a stack output and the component's outputs show."""
        properties = self.as_properties()
        return {key: properties[key] for key in ("instanceType", "minInstances", "maxInstances")}

    def secret_references(self, created_token_secret: str | None = None) -> list[str]:
        """Every secret this served model's instances read: the token-hash secret (the stack's
        own, `created_token_secret`, unless the endpoint names one) and the secret variables."""
        return [*filter(None, [self.token_hash_secret(created_token_secret)]), *self.secret_environment_vars.values()]

    def token_hash_secret(self, created_token_secret: str | None) -> str | None:
        if self.auth is None:
            return None
        return self.auth.token_hashes or created_token_secret

    def runtime_settings(self, model_uri: str, model_digest: str, model_name: str = "",
                         model_version: str = "", capture_bucket: str = "",
                         created_token_secret: str | None = None) -> RuntimeSettings:
        """What this served model's runtime is told on an instance (the KILN_* contract):
        one worker per unit of provisioned concurrency, the endpoint's timeout and the served model's
        admission budget, a drain as long as the
        target group's deregistration delay, a load timeout inside the health-check grace, the
        in-flight metric's dimensions, where its inference-table rows go, and where its token
        hashes and secret variables live (references only: the values never leave Secrets
        Manager or SSM but to the runtime)."""
        return RuntimeSettings(
            model_uri=model_uri,
            model_digest=model_digest,
            endpoint=self.endpoint,
            served_model=self.name,
            model_name=model_name or None,
            model_version=model_version or None,
            port=RUNTIME_PORT,
            workers=self.capacity.sizing.workers_per_instance,
            request_timeout_seconds=self.request_timeout_seconds,
            queue_budget_seconds=self.queue_budget_seconds,
            max_batch_size=self.max_batch_size,
            max_batch_delay_ms=self.max_batch_delay_ms,
            drain_seconds=self.deregistration_delay_seconds,
            load_timeout_seconds=self.profile.model_load_timeout_seconds,
            **self._gpu_settings(),
            metric_dimensions=self.scaling.published_metric_dimensions,
            load_balancer_idle_timeout_seconds=self.load_balancer_idle_timeout_seconds,
            **self._capture_settings(capture_bucket),
            auth_required=self.auth is not None,
            auth_token_sha256_secret=self.token_hash_secret(created_token_secret),
            auth_refresh_seconds=self.auth.refresh_seconds if self.auth else DEFAULT_AUTH_REFRESH_SECONDS,
            secret_environment=tuple(sorted(self.secret_environment_vars.items())),
        )

    def _capture_settings(self, bucket: str) -> dict[str, Any]:
        """Rows go to the stack's artifact bucket; without one (`kiln serve`), nothing is captured."""
        if self.capture is None or not bucket:
            return {}
        return {"capture_uri": f"s3://{bucket}/{self.capture.prefix}", "capture_format": self.capture.format,
                "capture_sampling_fraction": self.capture.sampling_fraction,
                "capture_max_body_bytes": self.capture.max_body_bytes}

    def _gpu_settings(self) -> dict[str, Any]:
        """On a GPU compute type: the GPUs the workers share, whether one worker spreads the
        model across them, and readiness only with a usable GPU (never silently the CPU)."""
        gpu = self.capacity.gpu
        if gpu is None:
            return {}
        spread = gpu.placement is GpuPlacement.SPREAD_ACROSS_GPUS
        return {"gpus": 0 if spread else self.capacity.sizing.instance.gpus, "spread_across_gpus": spread,
                "require_gpu": True}


@dataclass(frozen=True)
class EndpointPlan:
    name: str
    path: str
    listener_priority: int
    request_timeout_seconds: int
    served_models: list[ServedModelPlan]
    capture: CapturePlan | None = None
    auth: EndpointAuth | None = None

    @property
    def creates_token_secret(self) -> bool:
        """Auth on without a secret named in the stack file: the stack creates the endpoint's."""
        return self.auth is not None and self.auth.token_hashes is None


@dataclass(frozen=True)
class GatewayPlan:
    load_balancer_name: str
    internal: bool
    subnet_ids: list[str]
    ingress_cidrs: list[str]
    certificate_arn: str | None
    idle_timeout_seconds: int
    region: str = "us-east-1"
    # Prod: access logs to their own bucket, and deletion protection (a `pulumi destroy` or a
    # replacement cannot remove the load balancer every client resolves).
    access_logs: bool = False
    deletion_protection: bool = False
    # Instances send HTTPS anywhere (through the VPC's NAT gateway or endpoints), unless the
    # stack's own VPC endpoints carry it (infra/components/vpc_endpoints.py).
    instance_https_anywhere: bool = True

    @property
    def listener_port(self) -> int:
        return 443 if self.certificate_arn else 80


@dataclass(frozen=True)
class StackPlan:
    stack: str
    config: StackConfig
    gateway: GatewayPlan
    endpoints: list[EndpointPlan]
    tags: dict[str, str] = field(default_factory=dict)
    # `kiln:network.vpcEndpoints`: what the instances reach AWS through (None: the VPC's own way).
    vpc_endpoints: VpcEndpointsPlan | None = None

    @property
    def served_models(self) -> list[ServedModelPlan]:
        return [served for endpoint in self.endpoints for served in endpoint.served_models]

    @property
    def captures(self) -> list[CapturePlan]:
        """The stack's inference tables, one per endpoint that has one."""
        return [endpoint.capture for endpoint in self.endpoints if endpoint.capture is not None]

    @property
    def network_hourly_cost(self) -> float:
        """What the stack's VPC endpoints cost whatever the traffic."""
        return self.vpc_endpoints.hourly_cost if self.vpc_endpoints else 0.0

    @property
    def hourly_cost_min(self) -> float:
        return round(sum(s.hourly_cost_min for s in self.served_models) + self.network_hourly_cost, 4)

    @property
    def hourly_cost_max(self) -> float:
        return round(sum(s.hourly_cost_max for s in self.served_models) + self.network_hourly_cost, 4)


def endpoint_path(endpoint: str) -> str:
    """The Databricks invocation path, so clients move over unchanged."""
    return f"/serving-endpoints/{endpoint}/invocations"


def plan_stack(stack: str, config: StackConfig, model_memory_gib: Mapping[str, float] | None = None,
               measured: Mapping[str, WorkerMeasurement] | None = None) -> StackPlan:
    """The whole plan; `model_memory_gib` (by served model resource name, from the bake) places
    a multi-GPU served model whose stack entry leaves gpuPlacement unset. `measured` (by resource
    name, from the reload check) sizes the served models that say `sizing: measured`; without
    it (before the bake, or in `kiln simulate`) they are planned nominally."""
    memory = model_memory_gib or {}
    stack_tags = {STACK_TAG: stack, ENVIRONMENT_TAG: config.environment}
    priorities = listener_rule_priorities([e.name for e in config.endpoints])
    idle_timeout = max(e.request_timeout_seconds for e in config.endpoints) + IDLE_TIMEOUT_MARGIN_SECONDS
    endpoints = []
    for endpoint in config.endpoints:
        capture = plan_capture(stack, endpoint.name, endpoint.auto_capture_config)
        served_models = []
        for index, served in enumerate(endpoint.served_models):
            name = f"{endpoint.name}.{served.name}"
            try:
                served_models.append(_served_model_plan(stack, endpoint, served, config, stack_tags, idle_timeout,
                                                        memory.get(name), _measurement(served, name, measured), capture))
            except SizingError as error:
                position = config.endpoints.index(endpoint)
                raise ConfigError(f"stacks/Pulumi.{stack}.yaml", [f"endpoints[{position}].servedModels[{index}] ({name}): {error}"]) from None
        endpoints.append(
            EndpointPlan(
                name=endpoint.name,
                path=endpoint_path(endpoint.name),
                listener_priority=priorities[endpoint.name],
                request_timeout_seconds=endpoint.request_timeout_seconds,
                served_models=served_models,
                capture=capture,
                auth=config.auth_for(endpoint),
            )
        )
    gateway = config.gateway
    return StackPlan(
        stack=stack,
        config=config,
        gateway=GatewayPlan(
            load_balancer_name=short_name(["kiln", stack]),
            internal=not gateway.internet_facing,
            subnet_ids=config.network.public_subnet_ids if gateway.internet_facing else config.network.private_subnet_ids,
            ingress_cidrs=gateway.ingress_cidrs,
            certificate_arn=gateway.certificate_arn,
            idle_timeout_seconds=idle_timeout,
            region=config.region,
            access_logs=config.environment == "prod",
            deletion_protection=config.environment == "prod",
            instance_https_anywhere=config.network.endpoints is None,
        ),
        endpoints=endpoints,
        tags=stack_tags,
        vpc_endpoints=plan_vpc_endpoints(config, [served for endpoint in endpoints for served in endpoint.served_models]),
    )


def _measurement(served: ServedModel, name: str,
                 measured: Mapping[str, WorkerMeasurement] | None) -> WorkerMeasurement | None:
    """The measurement a `sizing: measured` served model plans from, once measurements are at hand."""
    if served.sizing != "measured" or measured is None:
        return None
    if name not in measured:
        raise SizingError(f"sizing: measured, but no reload check has measured {served.model_uri} in its environment "
                          "here; run `kiln bake STACK` (with the reload check) first, or set sizing: nominal")
    return measured[name]


def _served_model_plan(
    stack: str, endpoint: Endpoint, served: ServedModel, config: StackConfig, stack_tags: dict[str, str],
    load_balancer_idle_timeout_seconds: int, model_memory_gib: float | None, measured: WorkerMeasurement | None,
    capture: CapturePlan | None,
) -> ServedModelPlan:
    profile = PROFILES[served.compute_type]
    capacity = plan_capacity(served, model_memory_gib, measured)
    scaling = plan_scaling(
        stack, endpoint.name, served.name, served.scaling, capacity, served.scale_to_zero_enabled,
        profile.health_check_grace_seconds, deregistration_delay_seconds(endpoint.request_timeout_seconds),
    )
    return ServedModelPlan(
        endpoint=endpoint.name,
        name=served.name,
        model_uri=served.model_uri,
        profile=profile,
        capacity=capacity,
        traffic_percentage=endpoint.traffic_percentage(served.name),
        scale_to_zero=served.scale_to_zero_enabled,
        request_timeout_seconds=endpoint.request_timeout_seconds,
        environment_vars=served.plain_environment_vars,
        secret_environment_vars=served.secret_environment_vars,
        auth=config.auth_for(endpoint),
        kms_key_arn=config.kms_key_arn,
        session_manager=config.session_manager,
        s3_regional_endpoint=config.network.endpoints is not None and not config.network.endpoints.route_table_ids,
        # The VPC and port force a target group replacement; salting the name with
        # them lets the new group be created before the old one is deleted.
        target_group_name=short_name(
            ["kiln", stack, endpoint.name, served.name],
            salt=f"{config.network.vpc_id}:{RUNTIME_PORT}",
        ),
        group_name=short_name(["kiln", stack, endpoint.name, served.name], limit=AUTOSCALING_GROUP_NAME_LIMIT),
        ami_id=config.amis.pinned(ami_class(profile)),
        tags={**stack_tags, **endpoint.tags, ENDPOINT_TAG: endpoint.name, SERVED_MODEL_TAG: served.name},
        scaling=scaling,
        load_balancer_idle_timeout_seconds=load_balancer_idle_timeout_seconds,
        expected_peak_concurrency=(
            concurrency_for(served.expected_qps, served.expected_latency_ms)
            if served.expected_qps is not None and served.expected_latency_ms is not None
            else None
        ),
        requested_gpu_placement=served.gpu_placement,
        queue_budget_seconds=served.queue_budget_seconds,
        max_batch_size=capacity.max_batch_size,
        max_batch_delay_ms=served.max_batch_delay_ms or 0,
        sizing=served.sizing,
        nominal_capacity=plan_capacity(served, model_memory_gib) if measured is not None else None,
        alert_topic_arn=config.alerts.sns_topic_arn if config.alerts else None,
        capture=capture,
    )

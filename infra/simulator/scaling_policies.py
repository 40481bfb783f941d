"""The policies the simulator compares, and the numbers they run on.

Every number is a `Timing` (infra/plan/launch_timing.py): a source (an AWS or Databricks page,
or this plan's own setting) or the word "estimate" with a low-high range. `policies_for(plan,
bound)` builds the policies at one end of every range ("low": everything fast, "high":
everything slow) or at the planned value, so the report can show what an estimate is worth.
docs/scaling.md repeats the numbers in one table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from infra.plan.catalog import GP3_BASELINE_MIB_PER_SECOND
from infra.plan.launch_timing import (
    CPU_BOOT,
    CPU_IMAGE_GIB,
    CPU_MODEL_LOAD,
    CPU_WARM_START,
    ESTIMATE,
    GPU_BOOT,
    GPU_IMAGE_GIB,
    GPU_MODEL_LOAD,
    GPU_WARM_START,
    HEALTH_CHECKS,
    IMAGE_UNPACK_MIB_PER_SECOND,
    Timing,
    ready_seconds,
    root_volume_hourly_usd,
    root_volume_throughput_mib,
    until_runtime_ready_seconds,
    warm_ready_seconds,
)
from infra.plan.scaling import ALB_METRIC_PERIOD_SECONDS
from infra.plan.stack import ServedModelPlan
from runtime.contract import HIGH_RESOLUTION_PERIOD_SECONDS

# --- metrics and alarms ------------------------------------------------------------------------
# ALB metrics reach CloudWatch some time after their 1-minute period ends; AWS documents
# publication "every 60 seconds", not the delay.
ALB_METRIC_LAG = Timing(60, ESTIMATE, 30, 120)
# A 10 s custom metric is readable a few seconds after PutMetricData; the runtime publishes at
# the end of each period.
HIGH_RESOLUTION_LAG = Timing(10, ESTIMATE, 2, 30)
# Breaching data points before target tracking scales out. AWS creates and tunes these alarms
# itself ("Do not edit or delete the CloudWatch alarms",
# https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-target-tracking.html);
# the 1-minute alarms it creates are seen to need 3 of 3, and no source gives the count for 10 s
# metrics: 1 (as fast as possible) to 6 (one minute of 10 s points).
SCALE_OUT_DATAPOINTS = Timing(3, ESTIMATE, 1, 6)
# The activator's Lambda invocation plus SetDesiredCapacity.
ACTIVATOR_REACTION = Timing(1, ESTIMATE, 1, 5)
# Terminating an instance after its deregistration (the runtime's SIGTERM drain is inside the
# deregistration delay already): the OS shutdown.
TERMINATION = Timing(30, ESTIMATE, 10, 60)
# Requests the activator can hold at once: the default Lambda concurrency quota is 1,000 per
# account and region (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html);
# Kiln leaves room for the account's other functions.
ACTIVATOR_HOLD_LIMIT = Timing(500, ESTIMATE, 500, 500)
# The ELB API's Describe calls, per account and region: a bucket of 40, refilled at 10 a second
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html).
# The activator's held requests share one poller (infra/activator/handler.py), so a cold start
# costs one DescribeTargetHealth per backoff step however many requests it holds; the replay
# counts those calls against the bucket (a throttled call only delays the wake by one poll).
ELB_DESCRIBE_BUCKET = Timing(40, "https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html")
ELB_DESCRIBE_REFILL_PER_SECOND = Timing(10, ELB_DESCRIBE_BUCKET.source)
# Every held request reads the shared readiness signal, an SSM parameter, on its own backoff
# schedule: GetParameter (shared with GetParameters and GetParametersByPath) allows 40
# transactions a second per account and region at Parameter Store's default throughput
# (https://docs.aws.amazon.com/general/latest/gr/ssm.html); beyond it reads are throttled,
# which the activator treats as "not ready yet".
SSM_GET_PARAMETER_PER_SECOND = Timing(40, "https://docs.aws.amazon.com/general/latest/gr/ssm.html")
# Extra rows in one batch cost this share of a single prediction each (GPU: mostly per call).
BATCH_ROW_COST = Timing(0.2, ESTIMATE, 0.05, 0.5)

# --- Databricks: what it documents, and what the comparison has to assume ------------------------
# Documented (https://docs.databricks.com/aws/en/machine-learning/model-serving/custom-models and
# .../create-manage-serving-endpoints): scale-up "almost immediately"; scale-down "every 5 minutes";
# zero after 30 minutes without traffic; cold start "usually 10-20 s" but "can take minutes", and
# slower on GPU.
DATABRICKS_SCALE_DOWN = Timing(300, "https://docs.databricks.com/aws/en/machine-learning/model-serving/custom-models")
DATABRICKS_IDLE = Timing(30 * 60, "https://docs.databricks.com/aws/en/machine-learning/model-serving/custom-models")
# The top of "usually 10-20 s"; "can take minutes" is the slow end.
DATABRICKS_CPU_COLD_START = Timing(20, ESTIMATE, 10, 120)
# Not documented, so a range: "almost immediately" detection, whether requests are held while
# cold (UNCONFIRMED), and how far one scale-down goes (to what is needed, or one step).
DATABRICKS_DETECTION = Timing(0, ESTIMATE, 0, 10)


@dataclass(frozen=True)
class Signal:
    """One scale-out metric: what it measures, how often, how late, and the target."""

    kind: str  # "in_flight" (per instance, the period's peak) or "requests_per_minute" (per target)
    period_seconds: int
    lag_seconds: int
    datapoints: int
    target: float


@dataclass(frozen=True)
class SimPolicy:
    """Everything the model needs to replay one served model under one scaling policy."""

    name: str
    label: str
    workers_per_instance: int
    latency_seconds: float  # what one prediction really takes (the plan's, or slower)
    min_instances: int
    max_instances: int
    hourly_usd: float
    target_utilization: float
    signals: tuple[Signal, ...]
    # The runtime's admission (runtime/admission.py) and adaptive batching (runtime/workers.py).
    admission_budget_seconds: float
    max_batch_size: int
    batch_row_cost: float
    # Kiln-style scale-in: one instance per window after a whole window below the threshold on
    # requests per target and, when set, on in-flight per instance.
    scale_in_window_seconds: int
    scale_in_threshold_rpm: float
    scale_in_threshold_in_flight: float | None
    # Databricks-style scale-in: every period, to the needed capacity (or one step).
    scale_down_every_seconds: int | None
    scale_down_to_needed: bool
    detection_seconds: int | None  # idealised immediate scale-out (Databricks), else None
    scale_to_zero: bool
    idle_seconds: int
    hold_at_zero: bool  # requests wait for a wake instead of failing
    # Held requests go through Kiln's activator, whose polls count against the account's ELB and
    # SSM API limits; Databricks holds (if it does) inside its own service.
    activator: bool
    hold_limit: int
    wake_reaction_seconds: int
    until_in_service_seconds: int  # launch to a ready runtime (the launch hook's wait)
    warm_until_in_service_seconds: int  # warm-pool start to a ready runtime
    health_check_seconds: int  # InService to the ALB sending requests
    instance_warmup_seconds: int  # InService to counted in the metrics; scale-in blocked until then
    cold_start_seconds: int | None  # overrides the time to serve from zero (Databricks)
    # None: no warm pool. A pool of minSize 0 still holds max - desired instances (AWS keeps it so
    # without a max prepared capacity).
    warm_pool_min_size: int | None
    warm_pool_reuse_on_scale_in: bool  # scale-in stops an instance back into the pool
    warm_pool_hourly_usd: float  # per stopped instance: its EBS volume
    deregistration_delay_seconds: int  # the most a scaled-in instance stays registered (draining)
    termination_seconds: int
    request_timeout_seconds: int

    @property
    def floor(self) -> int:
        return max(self.min_instances, 1)

    @property
    def ready_seconds(self) -> int:
        return self.until_in_service_seconds + self.health_check_seconds

    @property
    def warm_ready_seconds(self) -> int:
        return self.warm_until_in_service_seconds + self.health_check_seconds


def stack_policy(plan: ServedModelPlan, bound: str = "planned", slower: float = 1.0) -> SimPolicy:
    """The stack's own settings, as the components deploy them; `slower` multiplies the model's
    real latency over the planned one (the targets stay the plan's)."""
    scaling = plan.scaling
    datapoints = int(SCALE_OUT_DATAPOINTS.at(bound))
    alb = Signal("requests_per_minute", ALB_METRIC_PERIOD_SECONDS, int(ALB_METRIC_LAG.at(bound)), datapoints,
                 scaling.alb_target_requests_per_minute)
    in_flight = Signal("in_flight", HIGH_RESOLUTION_PERIOD_SECONDS, int(HIGH_RESOLUTION_LAG.at(bound)), datapoints,
                       scaling.in_flight_target)
    warm = scaling.warm_pool
    profile = plan.profile
    settings = plan.runtime_settings("", "")
    return SimPolicy(
        name="stack",
        label="this stack" + (" (ALB + 10 s in-flight)" if scaling.high_resolution_metric else " (ALB only)"),
        workers_per_instance=scaling.workers_per_instance,
        latency_seconds=plan.capacity.latency_ms / 1000 * slower,
        min_instances=scaling.min_instances,
        max_instances=scaling.max_instances,
        hourly_usd=plan.capacity.sizing.instance.hourly_usd,
        target_utilization=scaling.target_utilization,
        signals=(alb, in_flight) if scaling.high_resolution_metric else (alb,),
        admission_budget_seconds=settings.admission_budget_seconds,
        max_batch_size=settings.max_batch_size,
        batch_row_cost=BATCH_ROW_COST.at(bound),
        scale_in_window_seconds=scaling.scale_in_cooldown_seconds,
        scale_in_threshold_rpm=scaling.scale_in_threshold_requests_per_minute,
        scale_in_threshold_in_flight=scaling.scale_in_threshold_in_flight,
        scale_down_every_seconds=None,
        scale_down_to_needed=False,
        detection_seconds=None,
        scale_to_zero=scaling.scale_to_zero,
        # The idle alarm needs idle minutes of 1-minute ALB data, which arrive a lag late.
        idle_seconds=scaling.idle_minutes_before_zero * 60 + int(ALB_METRIC_LAG.at(bound)),
        hold_at_zero=True,
        activator=True,
        hold_limit=int(ACTIVATOR_HOLD_LIMIT.value),
        wake_reaction_seconds=int(ACTIVATOR_REACTION.at(bound)),
        until_in_service_seconds=until_runtime_ready_seconds(profile, bound),
        warm_until_in_service_seconds=warm_ready_seconds(profile, bound) - int(HEALTH_CHECKS.value),
        health_check_seconds=int(HEALTH_CHECKS.value),
        instance_warmup_seconds=scaling.instance_warmup_seconds,
        cold_start_seconds=None,
        warm_pool_min_size=warm.min_size if warm else None,
        warm_pool_reuse_on_scale_in=bool(warm and warm.reuse_on_scale_in),
        warm_pool_hourly_usd=root_volume_hourly_usd(profile),
        deregistration_delay_seconds=plan.deregistration_delay_seconds,
        termination_seconds=int(TERMINATION.at(bound)),
        request_timeout_seconds=plan.request_timeout_seconds,
    )


def alb_only_policy(plan: ServedModelPlan, bound: str = "planned", slower: float = 1.0) -> SimPolicy:
    """The same stack, scaling out on the 1-minute ALB request count alone."""
    policy = stack_policy(plan, bound, slower)
    return replace(policy, name="alb-only", label="ALB request count only", signals=policy.signals[:1],
                   scale_in_threshold_in_flight=None)


def databricks_policy(plan: ServedModelPlan, bound: str = "planned", slower: float = 1.0) -> SimPolicy:
    """What Databricks documents, on the same hardware numbers; where it documents nothing the
    bound decides: "low" assumes the kindest reading (held requests, straight down to what is
    needed, a 10 s cold start), "high" the harshest (rejected while cold, one step per scale-down,
    a cold start as long as a launch here). GPU cold starts are documented only as slower, so
    on GPU the planned value is the harsh one."""
    policy = stack_policy(plan, bound, slower)
    kind = bound != "high"
    cold = databricks_cold_start(plan).at(bound)
    return replace(
        policy,
        name="databricks",
        label="Databricks (docs + assumptions)",
        signals=(),
        scale_in_window_seconds=0,
        scale_in_threshold_in_flight=None,
        scale_down_every_seconds=int(DATABRICKS_SCALE_DOWN.value),
        scale_down_to_needed=kind,
        detection_seconds=int(DATABRICKS_DETECTION.at(bound)),
        idle_seconds=int(DATABRICKS_IDLE.value),
        hold_at_zero=kind,
        activator=False,
        wake_reaction_seconds=0,
        cold_start_seconds=math.ceil(cold),
        instance_warmup_seconds=0,
        deregistration_delay_seconds=0,
        warm_pool_min_size=None,
        warm_pool_reuse_on_scale_in=False,
    )


def policies_for(plan: ServedModelPlan, bound: str = "planned", slower: float = 1.0) -> list[SimPolicy]:
    return [stack_policy(plan, bound, slower), alb_only_policy(plan, bound, slower),
            databricks_policy(plan, bound, slower)]


def assumptions(plan: ServedModelPlan) -> list[tuple[str, Timing]]:
    """Every number a replay of this served model rests on, each with its source or "estimate"
    (the report prints them under the table, the JSON carries them)."""
    gpu = plan.profile.has_gpu
    return [
        ("boot", GPU_BOOT if gpu else CPU_BOOT),
        ("image size GiB", GPU_IMAGE_GIB if gpu else CPU_IMAGE_GIB),
        ("image unpack MiB/s", IMAGE_UNPACK_MIB_PER_SECOND),
        ("root volume MiB/s", Timing(root_volume_throughput_mib(plan.profile) or GP3_BASELINE_MIB_PER_SECOND,
                                     "this plan's gp3 throughput")),
        ("model load + warm-up", GPU_MODEL_LOAD if gpu else CPU_MODEL_LOAD),
        ("warm-pool start", GPU_WARM_START if gpu else CPU_WARM_START),
        ("health checks", HEALTH_CHECKS),
        ("instance warm-up after InService", Timing(plan.scaling.instance_warmup_seconds,
                                                    "this plan: health checks + one 10 s period")),
        ("ALB metric lag", ALB_METRIC_LAG),
        ("in-flight metric lag", HIGH_RESOLUTION_LAG),
        ("scale-out data points", SCALE_OUT_DATAPOINTS),
        ("drain (deregistration delay)", Timing(plan.deregistration_delay_seconds,
                                                "this plan's target group; AWS ends it early for an idle target")),
        ("termination", TERMINATION),
        ("activator reaction", ACTIVATOR_REACTION),
        ("ELB Describe bucket", ELB_DESCRIBE_BUCKET),
        ("ELB Describe refill per second", ELB_DESCRIBE_REFILL_PER_SECOND),
        ("SSM GetParameter per second", SSM_GET_PARAMETER_PER_SECOND),
        ("batch row cost", BATCH_ROW_COST),
        ("Databricks scale-down period", DATABRICKS_SCALE_DOWN),
        ("Databricks idle to zero", DATABRICKS_IDLE),
        ("Databricks cold start (GPU: documented only as slower; a launch here)" if gpu
         else "Databricks cold start (CPU)", databricks_cold_start(plan)),
    ]


def databricks_cold_start(plan: ServedModelPlan) -> Timing:
    """The cold start the Databricks replay assumes, as `databricks_policy` takes it at each bound:
    on CPU "usually 10-20 s"; on GPU a launch here, down to CPU's 10 s at the kind end."""
    if not plan.profile.has_gpu:
        return DATABRICKS_CPU_COLD_START
    return Timing(ready_seconds(plan.profile), ESTIMATE, DATABRICKS_CPU_COLD_START.low,
                  ready_seconds(plan.profile, "high"))

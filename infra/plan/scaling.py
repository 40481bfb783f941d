"""The scaling plan: every number and name the autoscaling resources need, decided in one place.

Pure data (no Pulumi), so the simulator (infra/simulator/) replays exactly the settings
the components deploy, and a reviewer can check the arithmetic without AWS. Timings and
their sources are listed in docs/scaling.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.plan.capacity import CapacityPlan
from infra.plan.config import Scaling
from infra.plan.launch_timing import instance_warmup_seconds

# The in-flight metric's contract lives with the runtime, because the image carries no infra code.
from runtime.contract import METRIC_DIMENSIONS

# ALB metrics are 1-minute sums (docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html).
ALB_METRIC_PERIOD_SECONDS = 60

# Scale in only when the load per instance is below half the target: removing one of n
# instances raises the load per instance by n/(n-1) ≤ 2, so the result stays at or below
# the target and cannot trigger the scale-out that would undo it (no flapping).
SCALE_IN_FRACTION = 0.5

# Instance refresh: replace half, bake, then the rest. During the bake a 5xx rate above
# ROLLOUT_ERROR_RATE for ROLLOUT_ALARM_MINUTES fails the refresh and rolls it back.
REFRESH_CHECKPOINTS = (50, 100)
REFRESH_CHECKPOINT_DELAY_SECONDS = 300
ROLLOUT_ERROR_RATE = 0.05
ROLLOUT_ALARM_MINUTES = 2
# Below this many requests a minute the error rate is noise, not a verdict on the release.
ROLLOUT_MIN_REQUESTS_PER_MINUTE = 20


# Every group holds a launching instance until the instance itself reports its runtime ready:
# an EC2_INSTANCE_LAUNCHING hook keeps it in Pending:Wait (Warmed:Pending:Wait on its way into
# a warm pool, and Pending:Wait again when it leaves the pool), and the instance completes the
# action once /ping answers 200 (infra/components/templates/user_data.sh.j2). Without it a
# warm-pool instance is stopped while its user data may still run, and cloud-init does not run
# user data again when it starts
# (https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html).
LAUNCH_HOOK_NAME = "kiln-runtime-ready"
# An instance whose runtime never answered within the heartbeat timeout is terminated, not
# put in service (a launch hook's ABANDON), and the group launches another.
LAUNCH_HOOK_DEFAULT_RESULT = "ABANDON"

def warm_pool_size(min_size: int, max_instances: int, desired: int) -> int:
    """Instances AWS keeps in a warm pool without a max prepared capacity: the group's max minus
    its desired capacity, never fewer than minSize
    (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutWarmPool.html)."""
    return max(min_size, max_instances - desired)


@dataclass(frozen=True)
class WarmPoolPlan:
    min_size: int
    reuse_on_scale_in: bool
    # Stopped: only the EBS volumes are billed while an instance waits in the pool.
    pool_state: str = "Stopped"


@dataclass(frozen=True)
class ScalingPlan:
    """What drives one served model's instance count, in the units AWS takes."""

    stack: str
    endpoint: str
    served_model: str
    min_instances: int
    max_instances: int
    workers_per_instance: int
    # Requests a fully used worker holds (a full batch with batching on): CapacityPlan.in_flight_per_worker.
    in_flight_per_worker: int
    target_utilization: float
    alb_target_requests_per_minute: float
    high_resolution_metric: bool
    scale_in_cooldown_seconds: int
    scale_to_zero: bool
    idle_minutes_before_zero: int
    warm_pool: WarmPoolPlan | None
    # After InService (the launch hook held the instance until its runtime answered): see
    # infra/plan/launch_timing.instance_warmup_seconds.
    instance_warmup_seconds: int
    # How long an instance may take from launch to a ready runtime before the launch hook
    # abandons it: the health-check grace (start plus the runtime's whole load timeout), far
    # above the planned ready time, so a slow but healthy load is never cut off.
    launch_hook_timeout_seconds: int
    # How long a scaled-in instance may stay registered while requests finish (the target
    # group's deregistration delay): the scale-in cooldown starts only after it.
    deregistration_delay_seconds: int

    @property
    def in_flight_target(self) -> float:
        """In-flight requests per instance to hold: workers × requests a fully used worker holds
        (1, or a full batch) × target utilisation."""
        return round(self.workers_per_instance * self.in_flight_per_worker * self.target_utilization, 2)

    @property
    def scale_in_evaluation_minutes(self) -> int:
        """The scale-in alarm looks at this many 1-minute data points (the cooldown window)."""
        return self.scale_in_cooldown_seconds // 60

    @property
    def scale_in_threshold_requests_per_minute(self) -> float:
        return round(self.alb_target_requests_per_minute * SCALE_IN_FRACTION, 2)

    @property
    def scale_in_threshold_in_flight(self) -> float | None:
        """Scale-in also needs the in-flight metric this low (when it is published): a model
        slower than planned answers fewer requests with more in flight, and the request count
        alone would remove the instances the in-flight policy then adds back."""
        return round(self.in_flight_target * SCALE_IN_FRACTION, 2) if self.high_resolution_metric else None

    def warm_pool_stopped(self, desired: int) -> int:
        """Stopped instances in the warm pool while the group runs `desired` (0 without a pool)."""
        if self.warm_pool is None:
            return 0
        return warm_pool_size(self.warm_pool.min_size, self.max_instances, desired)

    @property
    def scale_in_floor(self) -> int:
        """Ordinary scale-in stops at one instance; only the idle rule takes a group to zero."""
        return max(self.min_instances, 1)

    @property
    def metric_dimensions(self) -> dict[str, str]:
        return dict(zip(METRIC_DIMENSIONS, (self.stack, self.endpoint, self.served_model), strict=True))

    @property
    def published_metric_dimensions(self) -> tuple[tuple[str, str], ...]:
        """What the runtime publishes the in-flight metric under; none without the metric."""
        return tuple(self.metric_dimensions.items()) if self.high_resolution_metric else ()


def plan_scaling(
    stack: str, endpoint: str, served_model: str, scaling: Scaling, capacity: CapacityPlan,
    scale_to_zero: bool, launch_hook_timeout_seconds: int, deregistration_delay_seconds: int,
) -> ScalingPlan:
    sizing = capacity.sizing
    warm = scaling.warm_pool
    return ScalingPlan(
        stack=stack,
        endpoint=endpoint,
        served_model=served_model,
        min_instances=sizing.min_instances,
        max_instances=sizing.max_instances,
        workers_per_instance=sizing.workers_per_instance,
        in_flight_per_worker=capacity.in_flight_per_worker,
        target_utilization=scaling.target_utilization,
        alb_target_requests_per_minute=capacity.target_requests_per_minute,
        high_resolution_metric=scaling.high_resolution_metric,
        scale_in_cooldown_seconds=scaling.scale_in_cooldown_seconds,
        scale_to_zero=scale_to_zero,
        idle_minutes_before_zero=scaling.idle_minutes_before_zero,
        warm_pool=WarmPoolPlan(warm.min_size, warm.reuse_on_scale_in) if warm else None,
        instance_warmup_seconds=instance_warmup_seconds(),
        launch_hook_timeout_seconds=launch_hook_timeout_seconds,
        deregistration_delay_seconds=deregistration_delay_seconds,
    )



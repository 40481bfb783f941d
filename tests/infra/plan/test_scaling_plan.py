"""The scaling plan's numbers: what the autoscaling group, its policies and alarms are given.

Every expected value is worked out by hand in a comment; the simulator and the components
read these same numbers, so a wrong one here is a wrong one in AWS.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan.capacity import plan_capacity
from infra.plan.config import ServedModel
from infra.plan.scaling import ScalingPlan, WarmPoolPlan, plan_scaling


def served(**fields: Any) -> ServedModel:
    return ServedModel.model_validate({"name": "champion", "modelUri": "models:/fraud-scorer/1", "computeType": "CPU_MEDIUM", **fields})


def scaling_plan_for(model: ServedModel, hook_timeout: int = 300) -> ScalingPlan:
    return plan_scaling(
        "prod", "fraud-scorer", model.name, model.scaling, plan_capacity(model), model.scale_to_zero_enabled,
        hook_timeout, 297,
    )


def scaling(**overrides: Any) -> ScalingPlan:
    """A plan for 3 workers per instance at the default 70 %, to bend one field at a time."""
    fields: dict[str, Any] = {
        "stack": "prod", "endpoint": "fraud-scorer", "served_model": "champion", "min_instances": 3, "max_instances": 6,
        "workers_per_instance": 3, "in_flight_per_worker": 1, "target_utilization": 0.7, "alb_target_requests_per_minute": 3150.0,
        "high_resolution_metric": True, "scale_in_cooldown_seconds": 300, "scale_to_zero": False,
        "idle_minutes_before_zero": 30, "warm_pool": None, "instance_warmup_seconds": 30,
        "launch_hook_timeout_seconds": 300, "deregistration_delay_seconds": 297,
    }
    return ScalingPlan(**{**fields, **overrides})


def test_default_scaling_follows_databricks_with_worked_numbers() -> None:
    # 200 QPS × 40 ms = 8 units, headroom to 16; c7i.4xlarge holds 3 → 3-6 instances.
    # ALB target: 3 × 1000/40 × 60 × 0.7 = 3150 requests per target per minute.
    plan = scaling_plan_for(served(expectedQps=200, expectedLatencyMs=40))

    assert plan == ScalingPlan(
        stack="prod", endpoint="fraud-scorer", served_model="champion", min_instances=3, max_instances=6,
        workers_per_instance=3, in_flight_per_worker=1, target_utilization=0.7, alb_target_requests_per_minute=3150.0,
        high_resolution_metric=True, scale_in_cooldown_seconds=300, scale_to_zero=False,
        idle_minutes_before_zero=30, warm_pool=None, instance_warmup_seconds=30,
        launch_hook_timeout_seconds=300, deregistration_delay_seconds=297,
    )


def test_every_scaling_setting_from_the_stack_file_reaches_the_plan() -> None:
    model = served(
        workloadSize="Medium", scaleToZeroEnabled=True,
        scaling={"targetUtilization": 0.5, "highResolutionMetric": False, "scaleInCooldownSeconds": 600,
                 "idleMinutesBeforeZero": 10, "warmPool": {"minSize": 2, "reuseOnScaleIn": False}},
    )

    plan = scaling_plan_for(model, hook_timeout=900)

    # Medium is 8-16 units, scale to zero lowers the floor to 0. Every c7i size costs $4.284/h
    # at 16 units except 2xlarge and 16xlarge; all cost $0 at 0, so the cheapest per hour wins:
    # c7i.4xlarge, 3 units, 0-ceil(16/3)=6 instances. No expected latency → 100 ms:
    # 3 × 1000/100 × 60 × 0.5 = 900 requests per target per minute.
    assert plan == ScalingPlan(
        stack="prod", endpoint="fraud-scorer", served_model="champion", min_instances=0, max_instances=6,
        workers_per_instance=3, in_flight_per_worker=1, target_utilization=0.5, alb_target_requests_per_minute=900.0,
        high_resolution_metric=False, scale_in_cooldown_seconds=600, scale_to_zero=True,
        idle_minutes_before_zero=10, warm_pool=WarmPoolPlan(min_size=2, reuse_on_scale_in=False), instance_warmup_seconds=30,
        launch_hook_timeout_seconds=900, deregistration_delay_seconds=297,
    )


def test_warm_pool_defaults_keep_one_stopped_instance_and_reuse_it() -> None:
    plan = scaling_plan_for(served(workloadSize="Small", scaling={"warmPool": {}}))

    assert plan.warm_pool == WarmPoolPlan(min_size=1, reuse_on_scale_in=True)
    assert plan.warm_pool.pool_state == "Stopped"


def test_in_flight_target_is_workers_times_utilisation() -> None:
    # 3 × 0.7 = 2.1 (2.0999999999999996 in floating point, which CloudWatch would be sent as is)
    assert scaling().in_flight_target == 2.1
    # 7 × 0.55 = 3.85
    assert scaling(workers_per_instance=7, target_utilization=0.55).in_flight_target == 3.85
    # 1 × 0.333 = 0.333 → two decimals
    assert scaling(workers_per_instance=1, target_utilization=0.333).in_flight_target == 0.33


def test_with_batching_the_in_flight_target_counts_a_full_batch_per_worker() -> None:
    """A GPU worker batching up to 8 holds 8 in flight when fully used: at 0.7 per worker the
    in-flight policy would scale out on the queue the batches are made of."""
    gpu = served(computeType="GPU_MEDIUM", workloadSize="Small")
    capacity = plan_capacity(gpu)
    plan = scaling_plan_for(gpu)

    # GPU_MEDIUM: g5.xlarge, 1 GPU, 1 worker; batches of DEFAULT_GPU_BATCH_SIZE = 8: 1 × 8 × 0.7
    assert capacity.max_batch_size == 8 and plan.in_flight_per_worker == 8
    assert plan.in_flight_target == 5.6
    assert plan.scale_in_threshold_in_flight == 2.8
    assert "batches of up to 8" in " ".join(capacity.arithmetic())
    # The requests target stays unbatched: 1 × 1000/100 ms × 60 × 0.7
    assert plan.alb_target_requests_per_minute == 420
    # Batching off (maxBatchSize 1): one request per worker again.
    assert scaling_plan_for(served(computeType="GPU_MEDIUM", workloadSize="Small", maxBatchSize=1)).in_flight_target == 0.7


@pytest.mark.parametrize(("cooldown", "minutes"), [(60, 1), (300, 5), (3600, 60)])
def test_scale_in_alarm_looks_back_over_the_cooldown_in_minutes(cooldown: int, minutes: int) -> None:
    assert scaling(scale_in_cooldown_seconds=cooldown).scale_in_evaluation_minutes == minutes


def test_scale_in_threshold_is_half_the_scaling_target() -> None:
    # 3150 / 2 = 1575: removing one of n instances at most doubles the load of the rest,
    # which stays at or below the 3150 target.
    assert scaling().scale_in_threshold_requests_per_minute == 1575
    # 100.25 / 2 = 50.125, exact in binary, rounded half to even at two decimals → 50.12
    assert scaling(alb_target_requests_per_minute=100.25).scale_in_threshold_requests_per_minute == 50.12


@pytest.mark.parametrize(("min_instances", "floor"), [(0, 1), (1, 1), (2, 2)])
def test_ordinary_scale_in_stops_at_one_instance(min_instances: int, floor: int) -> None:
    assert scaling(min_instances=min_instances).scale_in_floor == floor


def test_metric_dimensions_name_stack_endpoint_and_served_model() -> None:
    plan = scaling(stack="dev", endpoint="ticket-router", served_model="challenger")

    assert plan.metric_dimensions == {"Stack": "dev", "Endpoint": "ticket-router", "ServedModel": "challenger"}
    assert plan.published_metric_dimensions == (("Stack", "dev"), ("Endpoint", "ticket-router"), ("ServedModel", "challenger"))


def test_without_the_high_resolution_metric_the_runtime_publishes_nothing() -> None:
    assert scaling(high_resolution_metric=False).published_metric_dimensions == ()

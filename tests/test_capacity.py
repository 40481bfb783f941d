"""Capacity arithmetic with worked numbers a reviewer can check by hand."""

from __future__ import annotations

import pytest

from infra.capacity import (
    ConcurrencyRange,
    choose_sizing,
    concurrency_for,
    plan_capacity,
    requested_concurrency,
    requests_per_target_per_minute,
    units_per_instance,
)
from infra.catalog import INSTANCES, PROFILES, ComputeType
from infra.config import ServedModel


def served(**sizing: object) -> ServedModel:
    return ServedModel.model_validate({"name": "m", "modelUri": "models:/m/1", "computeType": "CPU_MEDIUM", **sizing})


def test_twenty_qps_at_200_ms_needs_four_units() -> None:
    assert concurrency_for(qps=20, latency_ms=200) == 4


def test_fractional_concurrency_rounds_up() -> None:
    assert concurrency_for(qps=10, latency_ms=250) == 3  # 2.5 units cannot serve 10 QPS


def test_float_noise_does_not_add_a_unit() -> None:
    assert concurrency_for(qps=0.7, latency_ms=1000 / 0.7 * 3) == 3


@pytest.mark.parametrize(("size", "expected"), [("Small", (4, 4)), ("Medium", (8, 16)), ("Large", (16, 64))])
def test_workload_sizes_follow_databricks(size: str, expected: tuple[int, int]) -> None:
    concurrency = requested_concurrency(served(workloadSize=size))

    assert (concurrency.minimum, concurrency.maximum) == expected


def test_scale_to_zero_lowers_the_floor_to_zero() -> None:
    concurrency = requested_concurrency(served(workloadSize="Medium", scaleToZeroEnabled=True))

    assert (concurrency.minimum, concurrency.maximum) == (0, 16)


def test_expected_traffic_gives_headroom_to_twice_the_expected_concurrency() -> None:
    concurrency = requested_concurrency(served(expectedQps=200, expectedLatencyMs=40))

    assert (concurrency.minimum, concurrency.maximum) == (8, 16)


def test_cpu_medium_units_are_bounded_by_memory() -> None:
    # (32 GiB - 2 GiB reserve) / 8 GiB per unit = 3.75 → 3
    assert units_per_instance(INSTANCES["c7i.4xlarge"], PROFILES[ComputeType.CPU_MEDIUM]) == 3


def test_cpu_units_are_capped_by_vcpus() -> None:
    profile = PROFILES[ComputeType.CPU_MEDIUM]
    wide = INSTANCES["c7i.24xlarge"]  # 96 vCPU, (192 - 2) / 8 = 23 units by memory

    assert units_per_instance(wide, profile) == 23
    assert units_per_instance(INSTANCES["c7i.large"], profile) == 0  # 4 GiB cannot hold one 8 GiB worker


def test_gpu_instances_run_one_unit() -> None:
    assert units_per_instance(INSTANCES["g5.12xlarge"], PROFILES[ComputeType.MULTIGPU_MEDIUM]) == 1


def test_planner_picks_the_cheapest_size_covering_the_maximum() -> None:
    # 16 units of CPU_LARGE (16 GiB each): c7i.4xlarge holds 1 unit → 16 × $0.714 = $11.42/h,
    # c7i.8xlarge holds 3 → 6 × $1.428 = $8.57/h, c7i.24xlarge holds 11 → 2 × $4.284 = $8.57/h,
    # c7i.16xlarge holds 7 → 3 × $2.856 = $8.57/h, c7i.12xlarge holds 5 → 4 × $2.142 = $8.57/h.
    # Ties at max cost go to the lower cost at min (2 units), then to the smaller instance.
    sizing = choose_sizing(PROFILES[ComputeType.CPU_LARGE], ConcurrencyRange(2, 16))

    assert sizing.instance.name == "c7i.8xlarge"
    assert (sizing.units_per_instance, sizing.min_instances, sizing.max_instances) == (3, 1, 6)
    assert sizing.hourly_cost_min == pytest.approx(1.428)
    assert sizing.hourly_cost_max == pytest.approx(8.568)


def test_explicit_instance_type_is_used_as_given() -> None:
    sizing = choose_sizing(PROFILES[ComputeType.CPU_MEDIUM], ConcurrencyRange(4, 8), "c6i.8xlarge")

    assert sizing.instance.name == "c6i.8xlarge"
    assert (sizing.units_per_instance, sizing.min_instances, sizing.max_instances) == (7, 1, 2)


def test_instance_too_small_for_one_worker_is_an_error() -> None:
    with pytest.raises(ValueError, match="no instance among c7i.large fits one CPU_MEDIUM worker"):
        choose_sizing(PROFILES[ComputeType.CPU_MEDIUM], ConcurrencyRange(1, 1), "c7i.large")


def test_scaled_to_zero_group_still_may_grow() -> None:
    sizing = choose_sizing(PROFILES[ComputeType.GPU_SMALL], ConcurrencyRange(0, 0))

    assert (sizing.min_instances, sizing.max_instances) == (0, 1)


def test_alb_target_is_requests_per_minute_at_target_utilisation() -> None:
    # 3 workers × (1000 / 40 ms) per second × 60 s × 0.7 = 3150 requests per target per minute
    assert requests_per_target_per_minute(units=3, latency_ms=40) == 3150


def test_plan_for_expected_traffic_end_to_end() -> None:
    plan = plan_capacity(served(expectedQps=200, expectedLatencyMs=40))

    assert plan.sizing.instance.name == "c7i.4xlarge"
    assert (plan.sizing.min_instances, plan.sizing.max_instances) == (3, 6)
    assert (plan.min_concurrency, plan.max_concurrency) == (9, 18)
    assert plan.target_requests_per_minute == 3150
    assert plan.arithmetic()[2] == "instances 3-6 (= ceil(8/3)-ceil(16/3))"

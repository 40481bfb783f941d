"""Capacity arithmetic with worked numbers a reviewer can check by hand."""

from __future__ import annotations

import pytest

from infra.plan.capacity import (
    MIN_MEASURED_LATENCY_MS,
    ConcurrencyRange,
    SizingError,
    WorkerMeasurement,
    choose_sizing,
    concurrency_for,
    plan_capacity,
    requested_concurrency,
    requests_per_target_per_minute,
    size_on,
    workers_per_instance,
)
from infra.plan.catalog import INSTANCES, PROFILES, ComputeProfile, ComputeType, GpuPlacement, InstanceType
from infra.plan.config import ServedModel


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
    assert workers_per_instance(INSTANCES["c7i.4xlarge"], PROFILES[ComputeType.CPU_MEDIUM]) == 3


def test_cpu_units_are_capped_by_vcpus() -> None:
    profile = PROFILES[ComputeType.CPU_MEDIUM]
    wide = INSTANCES["c7i.24xlarge"]  # 96 vCPU, (192 - 2) / 8 = 23 units by memory

    assert workers_per_instance(wide, profile) == 23
    assert workers_per_instance(INSTANCES["c7i.large"], profile) == 0  # 4 GiB cannot hold one 8 GiB worker


def test_gpu_instances_run_one_worker_per_gpu_or_one_spread_across_them() -> None:
    profile = PROFILES[ComputeType.MULTIGPU_MEDIUM]

    assert workers_per_instance(INSTANCES["g5.12xlarge"], profile, GpuPlacement.WORKER_PER_GPU) == 4
    assert workers_per_instance(INSTANCES["g5.12xlarge"], profile, GpuPlacement.SPREAD_ACROSS_GPUS) == 1
    assert workers_per_instance(INSTANCES["g5.xlarge"], PROFILES[ComputeType.GPU_MEDIUM]) == 1


def multigpu(**keys: object) -> ServedModel:
    return served(computeType="MULTIGPU_MEDIUM", workloadSize="Small", **keys)


def test_a_model_that_fits_one_gpu_gets_a_worker_on_every_gpu() -> None:
    """Issue 18: MULTIGPU_MEDIUM at Small ran 4 × g5.12xlarge with 12 of 16 A10Gs idle."""
    plan = plan_capacity(multigpu(), model_memory_gib=10.5)

    # 4 units / 4 workers per g5.12xlarge (one per A10G) = 1 instance at $5.672/h, not 4 ($22.69/h)
    assert (plan.sizing.workers_per_instance, plan.sizing.min_instances, plan.sizing.max_instances) == (4, 1, 1)
    assert plan.sizing.hourly_cost_max == 5.672
    assert plan.arithmetic()[1] == ("g5.12xlarge: 4 GPUs; workerPerGpu (the model needs ~10.5 GiB, one 24 GiB GPU "
                                    "holds it): 4 workers per instance (one per GPU, 24 GiB each)")


def test_a_model_larger_than_one_gpu_is_spread_across_the_instances_gpus() -> None:
    plan = plan_capacity(multigpu(), model_memory_gib=40.5)

    assert (plan.sizing.workers_per_instance, plan.sizing.min_instances, plan.sizing.max_instances) == (1, 4, 4)
    assert plan.arithmetic()[1] == ("g5.12xlarge: 4 GPUs; spreadAcrossGpus (the model needs ~40.5 GiB, more than one "
                                    "24 GiB GPU): 1 worker per instance with the model across its 4 GPUs (4 × 24 = 96 GiB)")


@pytest.mark.parametrize(("placement", "workers"), [("workerPerGpu", 8), ("spreadAcrossGpus", 1)])
def test_the_stacks_gpu_placement_wins_over_the_models_size(placement: str, workers: int) -> None:
    plan = plan_capacity(served(computeType="GPU_MEDIUM_8", workloadSize="Small", gpuPlacement=placement),
                         model_memory_gib=10.5 if placement == "spreadAcrossGpus" else 40.5)

    assert plan.sizing.workers_per_instance == workers
    assert plan.gpu is not None and plan.gpu.reason == f"gpuPlacement {placement}"


def test_without_the_model_at_hand_a_multi_gpu_instance_runs_a_worker_per_gpu() -> None:
    plan = plan_capacity(multigpu())

    assert plan.gpu is not None and (plan.gpu.placement, plan.sizing.workers_per_instance) == (GpuPlacement.WORKER_PER_GPU, 4)


def test_every_instance_a_gpu_profile_allows_has_the_gpus_of_its_default() -> None:
    """The GPU arithmetic reads the profile's default instance; a pinned instanceType must not differ."""
    for profile in PROFILES.values():
        allowed = {(INSTANCES[name].gpus, INSTANCES[name].gpu_memory_per_device_gib) for name in profile.allowed_instances}
        assert allowed == {(profile.gpus_per_instance, profile.gpu_memory_per_device_gib)}, profile.compute_type


def test_planner_picks_the_cheapest_size_covering_the_maximum() -> None:
    # 16 units of CPU_LARGE (16 GiB each): c7i.4xlarge holds 1 unit → 16 × $0.714 = $11.42/h,
    # c7i.8xlarge holds 3 → 6 × $1.428 = $8.57/h, c7i.24xlarge holds 11 → 2 × $4.284 = $8.57/h,
    # c7i.16xlarge holds 7 → 3 × $2.856 = $8.57/h, c7i.12xlarge holds 5 → 4 × $2.142 = $8.57/h.
    # Ties at max cost go to the lower cost at min (2 units), then to the smaller instance.
    sizing = choose_sizing(PROFILES[ComputeType.CPU_LARGE], ConcurrencyRange(2, 16))

    assert sizing.instance.name == "c7i.8xlarge"
    assert (sizing.workers_per_instance, sizing.min_instances, sizing.max_instances) == (3, 1, 6)
    assert sizing.hourly_cost_min == pytest.approx(1.428)
    assert sizing.hourly_cost_max == pytest.approx(8.568)


def test_explicit_instance_type_is_used_as_given() -> None:
    sizing = choose_sizing(PROFILES[ComputeType.CPU_MEDIUM], ConcurrencyRange(4, 8), "c6i.8xlarge")

    assert sizing.instance.name == "c6i.8xlarge"
    assert (sizing.workers_per_instance, sizing.min_instances, sizing.max_instances) == (7, 1, 2)


def test_instance_too_small_for_one_worker_is_an_error() -> None:
    with pytest.raises(ValueError, match="no instance among c7i.large fits one CPU_MEDIUM worker"):
        choose_sizing(PROFILES[ComputeType.CPU_MEDIUM], ConcurrencyRange(1, 1), "c7i.large")


def test_scaled_to_zero_group_still_may_grow() -> None:
    sizing = choose_sizing(PROFILES[ComputeType.GPU_SMALL], ConcurrencyRange(0, 0))

    assert (sizing.min_instances, sizing.max_instances) == (0, 1)


def test_alb_target_is_requests_per_minute_at_target_utilisation() -> None:
    # 3 workers × (1000 / 40 ms) per second × 60 s × 0.7 = 3150 requests per target per minute
    assert requests_per_target_per_minute(workers=3, latency_ms=40) == 3150


def test_plan_for_expected_traffic_end_to_end() -> None:
    plan = plan_capacity(served(expectedQps=200, expectedLatencyMs=40))

    assert plan.sizing.instance.name == "c7i.4xlarge"
    assert (plan.sizing.min_instances, plan.sizing.max_instances) == (3, 6)
    assert (plan.min_concurrency, plan.max_concurrency) == (9, 18)
    assert plan.target_requests_per_minute == 3150
    assert plan.arithmetic()[2] == "instances 3-6 (= ceil(8/3)-ceil(16/3))"


# --- boundaries and worked numbers -----------------------------------------------------------------

def instance(memory_gib: float, vcpus: int = 64, hourly_usd: float = 1.0) -> InstanceType:
    return InstanceType(f"test.{memory_gib:g}g{vcpus}c", vcpus, memory_gib, 0, 0, hourly_usd)


@pytest.mark.parametrize(("memory_gib", "units"), [(9.9, 0), (10, 1), (17.9, 1), (18, 2)])
def test_a_worker_needs_its_memory_on_top_of_the_os_reserve(memory_gib: float, units: int) -> None:
    # CPU_MEDIUM: (memory - 2 GiB reserve) / 8 GiB per worker, rounded down: 10 GiB is the least for one.
    assert workers_per_instance(instance(memory_gib), PROFILES[ComputeType.CPU_MEDIUM]) == units


def test_memory_below_the_os_reserve_runs_no_worker() -> None:
    # (1 - 2) / 8 rounds down to -1; an instance never runs a negative number of workers.
    assert workers_per_instance(instance(1), PROFILES[ComputeType.CPU_MEDIUM]) == 0


@pytest.mark.parametrize(("vcpus", "units"), [(6, 6), (7, 7), (8, 7)])
def test_cpu_workers_never_outnumber_vcpus(vcpus: int, units: int) -> None:
    # 64 GiB: (64 - 2) / 8 = 7.75 → 7 workers by memory, then at most one per vCPU.
    assert workers_per_instance(instance(64, vcpus), PROFILES[ComputeType.CPU_MEDIUM]) == units


def test_explicit_concurrency_without_a_minimum_starts_at_zero() -> None:
    concurrency = requested_concurrency(served(maxProvisionedConcurrency=8))

    assert (concurrency.minimum, concurrency.maximum) == (0, 8)


def test_explicit_concurrency_is_used_as_given() -> None:
    concurrency = requested_concurrency(served(minProvisionedConcurrency=2, maxProvisionedConcurrency=8))

    assert (concurrency.minimum, concurrency.maximum) == (2, 8)


def test_scale_to_zero_lowers_the_floor_of_expected_traffic_but_not_the_headroom() -> None:
    # 20 QPS × 0.2 s = 4 units, headroom 2 × 4 = 8
    concurrency = requested_concurrency(served(expectedQps=20, expectedLatencyMs=200, scaleToZeroEnabled=True))

    assert (concurrency.minimum, concurrency.maximum) == (0, 8)


def test_almost_no_traffic_still_needs_one_unit() -> None:
    # 0.000001 QPS × 0.000001 s = 1e-12, which rounds to 0 at nine decimals; one unit is the least.
    assert concurrency_for(qps=0.000001, latency_ms=0.001) == 1


def test_exactly_whole_concurrency_does_not_round_up() -> None:
    assert concurrency_for(qps=25, latency_ms=40) == 1  # 25 × 0.04 = 1.0
    assert concurrency_for(qps=26, latency_ms=40) == 2  # 26 × 0.04 = 1.04


@pytest.mark.parametrize(("units", "instances"), [(2, 1), (3, 1), (4, 2)])
def test_instances_are_the_units_divided_by_workers_rounded_up(units: int, instances: int) -> None:
    # c7i.4xlarge holds 3 CPU_MEDIUM workers.
    sizing = choose_sizing(PROFILES[ComputeType.CPU_MEDIUM], ConcurrencyRange(units, units), "c7i.4xlarge")

    assert (sizing.min_instances, sizing.max_instances) == (instances, instances)


def test_alb_target_keeps_two_decimals() -> None:
    # 1 worker × 1000/90 ms × 60 s × 0.7 = 466.666… → 466.67
    assert requests_per_target_per_minute(workers=1, latency_ms=90) == 466.67
    # 2 workers × 1000/250 ms × 60 s × 0.5 = 240
    assert requests_per_target_per_minute(workers=2, latency_ms=250, utilization=0.5) == 240


def test_plan_without_expected_latency_assumes_100_ms_and_uses_the_target_utilisation() -> None:
    plan = plan_capacity(served(workloadSize="Small", scaling={"targetUtilization": 0.5}))

    # Small is 4 units: c7i.2xlarge (1 worker, 4 × $0.357) ties c7i.4xlarge (3, 2 × $0.714) and
    # c7i.8xlarge (7, 1 × $1.428) at $1.428/h; the cheaper instance wins. 1 × 1000/100 × 60 × 0.5 = 300.
    assert (plan.sizing.instance.name, plan.sizing.min_instances, plan.sizing.max_instances) == ("c7i.2xlarge", 4, 4)
    assert (plan.latency_ms, plan.target_utilization, plan.target_requests_per_minute) == (100, 0.5, 300)


def test_plan_arithmetic_reads_as_the_reviewer_checks_it() -> None:
    plan = plan_capacity(served(expectedQps=200, expectedLatencyMs=40))

    assert plan.arithmetic() == [
        "requested concurrency 8-16",
        "c7i.4xlarge: 3 workers per instance",
        "instances 3-6 (= ceil(8/3)-ceil(16/3))",
        "scaling target 3150 requests/target/min (= 3 × 1000/40 ms × 60 × 0.7)",
        "cost $2.14-$4.28/h (= instances × $0.714/h)",  # 3 × 0.714 = 2.142, 6 × 0.714 = 4.284
    ]


def test_one_worker_is_written_in_the_singular() -> None:
    plan = plan_capacity(served(workloadSize="Small"))

    assert plan.arithmetic()[1] == "c7i.2xlarge: 1 worker per instance"


def test_gpu_plan_runs_one_worker_per_instance() -> None:
    model = ServedModel.model_validate({"name": "m", "modelUri": "models:/m/1", "computeType": "GPU_MEDIUM",
                                        "minProvisionedConcurrency": 2, "maxProvisionedConcurrency": 8, "expectedLatencyMs": 250})

    plan = plan_capacity(model)

    # g5.xlarge, 1 worker: 2-8 instances; 1 × 1000/250 × 60 × 0.7 = 168 requests per target per minute.
    assert (plan.sizing.instance.name, plan.sizing.min_instances, plan.sizing.max_instances) == ("g5.xlarge", 2, 8)
    assert plan.target_requests_per_minute == 168
    assert (plan.sizing.hourly_cost_min, plan.sizing.hourly_cost_max) == (pytest.approx(2.012), pytest.approx(8.048))


def test_sizing_counts_instances_and_cost_for_the_floor_and_the_ceiling() -> None:
    # 34 GiB: (34 - 2) / 8 = 4 workers; 2-8 units → ceil(2/4) = 1 to ceil(8/4) = 2 instances at $4/h.
    sizing = size_on(instance(34, hourly_usd=4.0), PROFILES[ComputeType.CPU_MEDIUM], ConcurrencyRange(2, 8))

    assert sizing is not None
    assert (sizing.workers_per_instance, sizing.min_instances, sizing.max_instances) == (4, 1, 2)
    assert (sizing.hourly_cost_min, sizing.hourly_cost_max) == (4.0, 8.0)


def test_no_sizing_on_an_instance_that_holds_no_worker() -> None:
    assert size_on(instance(9.9), PROFILES[ComputeType.CPU_MEDIUM], ConcurrencyRange(1, 1)) is None


@pytest.mark.parametrize(("qps", "units"), [(2.0000000004, 2), (2.000000001, 3)])
def test_only_float_noise_below_a_billionth_of_a_unit_is_ignored(qps: float, units: int) -> None:
    # × 1 s: 2.0000000004 units is 2 after rounding at nine decimals; 2.000000001 is real demand.
    assert concurrency_for(qps=qps, latency_ms=1000) == units


def test_just_over_a_whole_unit_needs_the_next_one() -> None:
    # 20.01 QPS × 0.2 s = 4.002 units → 5
    assert concurrency_for(qps=20.01, latency_ms=200) == 5


def test_error_names_every_candidate_that_cannot_hold_a_worker() -> None:
    # A made-up profile whose worker needs 1000 GiB: no c7i size holds one.
    profile = ComputeProfile(ComputeType.CPU_LARGE, 1000, ("c7i.large", "c7i.xlarge"), ("c7i.large", "c7i.xlarge"), 30)

    with pytest.raises(ValueError) as caught:
        choose_sizing(profile, ConcurrencyRange(1, 1))

    assert str(caught.value) == "no instance among c7i.large, c7i.xlarge fits one CPU_LARGE worker (1000 GiB + 2 GiB reserve)"


def test_plan_uses_the_instance_type_the_stack_file_names() -> None:
    # c6i.8xlarge: (64 - 2) / 8 = 7 workers; Small (4 units) fits on one, at $1.36/h.
    # Left to choose, the planner would take c7i.2xlarge (4 × $0.357 = $1.428/h, the cheapest listed first).
    plan = plan_capacity(served(workloadSize="Small", instanceType="c6i.8xlarge"))

    assert (plan.sizing.instance.name, plan.sizing.workers_per_instance, plan.sizing.min_instances) == ("c6i.8xlarge", 7, 1)
    assert plan.target_requests_per_minute == 2940  # 7 × 1000/100 = 70 per second × 60 = 4200 × 0.7


def test_a_measured_worker_is_packed_by_its_memory_plus_headroom_capped_by_vcpus() -> None:
    measured = WorkerMeasurement(peak_gib=0.4, latency_ms=5.0, source="test")

    plan = plan_capacity(served(workloadSize="Small"), measured=measured)

    # c7i.large: floor((4 - 2) / 0.5) = 4 workers by memory, 2 vCPUs: 2 workers, 2 instances for 4.
    assert (plan.sizing.instance.name, plan.sizing.workers_per_instance, plan.sizing.max_instances) == ("c7i.large", 2, 2)
    assert plan.latency_ms == 5.0 and "0.50 GiB = 0.40 GiB peak × 1.25" in "; ".join(plan.arithmetic())


def test_a_measured_latency_below_the_runtimes_own_work_is_floored() -> None:
    plan = plan_capacity(served(workloadSize="Small"), measured=WorkerMeasurement(0.4, 0.0, "test"))

    assert plan.latency_ms == MIN_MEASURED_LATENCY_MS


def test_a_measured_worker_larger_than_the_compute_types_memory_per_concurrency_is_refused() -> None:
    with pytest.raises(SizingError, match="a worker needs 10.00 GiB measured .* CPU_MEDIUM gives 8 GiB"):
        plan_capacity(served(workloadSize="Small"), measured=WorkerMeasurement(8.0, 5.0, "test"))

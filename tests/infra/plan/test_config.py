"""Stack config validation: every invalid input gets one clear error naming file and key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from infra.plan.catalog import GpuPlacement
from infra.plan.config import (
    STACKS_DIR,
    ConfigError,
    StackConfig,
    json_schema,
    load_stack,
    parse_stack_config,
    read_stack,
    read_stack_file,
    resolve_stack_path,
    stack_name,
    values_from_stack_config,
)
from tests.conftest import write_stack
from tests.stack_values import valid_values

SOURCE = "stacks/Pulumi.test.yaml"


def problems_for(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(values, SOURCE)
    return caught.value.problems


def served(values: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return values["endpoints"][0]["servedModels"][index]


def test_valid_config_parses_with_databricks_defaults() -> None:
    config = parse_stack_config(valid_values(), SOURCE)

    endpoint = config.endpoints[0]
    assert endpoint.request_timeout_seconds == 597
    assert endpoint.traffic_percentage("challenger") == 10
    assert config.build.timeout_minutes == 60
    assert config.gateway.internet_facing is False


def test_traffic_routes_must_sum_to_100() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"][1]["trafficPercentage"] = 0

    assert problems_for(values) == ["endpoints[0].trafficConfig.routes: percentages sum to 90, must be 100"]


def test_error_message_names_the_stack_file() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"][1]["trafficPercentage"] = 0

    with pytest.raises(ConfigError) as caught:
        parse_stack_config(values, SOURCE)

    assert str(caught.value).startswith(f"{SOURCE}: endpoints[0].trafficConfig.routes:")


def test_unknown_compute_type_lists_the_valid_ones() -> None:
    values = valid_values()
    served(values)["computeType"] = "GPU_HUGE"

    [problem] = problems_for(values)
    assert problem.startswith("endpoints[0].servedModels[0].computeType: unknown compute type 'GPU_HUGE'")
    for valid in ("CPU_MEDIUM", "CPU_LARGE", "GPU_SMALL", "GPU_MEDIUM", "MULTIGPU_MEDIUM", "GPU_MEDIUM_8"):
        assert valid in problem


def test_route_naming_unknown_served_model_is_refused() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"][1]["servedModelName"] = "challengr"

    [problem] = problems_for(values)
    assert problem.startswith("endpoints[0].trafficConfig.routes: unknown served models ['challengr']")
    assert "champion, challenger" in problem


def test_served_model_without_route_is_refused() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"] = [{"servedModelName": "champion", "trafficPercentage": 100}]

    assert problems_for(values) == [
        "endpoints[0].trafficConfig.routes: no route for served models ['challenger'] "
        "(give them trafficPercentage: 0 to keep them warm)"
    ]


def test_duplicate_served_model_names_are_refused() -> None:
    values = valid_values()
    served(values, 1)["name"] = "champion"

    assert problems_for(values) == ["endpoints[0].servedModels: duplicate served model names: champion"]


def test_duplicate_endpoint_names_are_refused() -> None:
    values = valid_values()
    values["endpoints"].append(copy.deepcopy(values["endpoints"][0]))

    assert problems_for(values) == ["endpoints: duplicate endpoint names: fraud-scorer"]


def test_min_concurrency_above_max_is_refused() -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values).update(minProvisionedConcurrency=8, maxProvisionedConcurrency=4)

    assert problems_for(values) == [
        "endpoints[0].servedModels[0].minProvisionedConcurrency: min 8 is greater than maxProvisionedConcurrency 4"
    ]


def test_two_ways_of_sizing_at_once_are_refused() -> None:
    values = valid_values()
    served(values)["maxProvisionedConcurrency"] = 8

    [problem] = problems_for(values)
    assert problem.startswith("endpoints[0].servedModels[0]: give exactly one of workloadSize")


def test_expected_qps_needs_latency() -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values)["expectedQps"] = 20

    assert problems_for(values) == [
        "endpoints[0].servedModels[0].expectedLatencyMs: expectedQps needs expectedLatencyMs (concurrency = QPS × latency)"
    ]


@pytest.mark.parametrize("timeout", [0, 3996, 4000])
def test_request_timeout_outside_what_the_alb_allows_is_refused(timeout: int) -> None:
    values = valid_values()
    values["endpoints"][0]["requestTimeoutSeconds"] = timeout

    [problem] = problems_for(values)
    assert problem.startswith("endpoints[0].requestTimeoutSeconds: Input should be")


def test_longest_request_timeout_the_alb_allows_is_accepted() -> None:
    values = valid_values()
    values["endpoints"][0]["requestTimeoutSeconds"] = 3995

    assert parse_stack_config(values, SOURCE).endpoints[0].request_timeout_seconds == 3995


@pytest.mark.parametrize("name", ["Fraud", "fraud_scorer", "-fraud", "a" * 64])
def test_endpoint_names_that_break_urls_or_aws_names_are_refused(name: str) -> None:
    values = valid_values()
    values["endpoints"][0]["name"] = name

    [problem] = problems_for(values)
    assert problem.startswith(f"endpoints[0].name: endpoint name {name!r} must be 1-63 lower-case letters")


def test_unknown_key_suggests_the_closest_known_key() -> None:
    values = valid_values()
    values["endpoints"][0]["requestTimeout"] = 30

    assert problems_for(values) == ["endpoints[0].requestTimeout: unknown key 'requestTimeout'; did you mean requestTimeoutSeconds?"]


def test_missing_required_key_is_named() -> None:
    values = valid_values()
    del values["network"]["vpcId"]

    assert problems_for(values) == ["network.vpcId: is required"]


def test_instance_type_must_belong_to_the_compute_type() -> None:
    values = valid_values()
    served(values)["instanceType"] = "g5.xlarge"

    [problem] = problems_for(values)
    assert problem.startswith("endpoints[0].servedModels[0].instanceType: 'g5.xlarge' is not allowed for CPU_MEDIUM; allowed: c7i.large")


def test_gpu_placement_is_refused_where_an_instance_has_one_gpu() -> None:
    values = valid_values()
    served(values).update(computeType="GPU_MEDIUM", gpuPlacement="spreadAcrossGpus")

    assert problems_for(values) == [
        "endpoints[0].servedModels[0].gpuPlacement: GPU_MEDIUM has 1 GPU per instance, so there is nothing to "
        "place; remove it, or choose MULTIGPU_MEDIUM or GPU_MEDIUM_8"]


def test_gpu_placement_is_one_of_two_ways_on_a_multi_gpu_compute_type() -> None:
    values = valid_values()
    served(values).update(computeType="MULTIGPU_MEDIUM", gpuPlacement="spreadAcrossGpus")
    parsed = parse_stack_config(values, SOURCE)
    served(values)["gpuPlacement"] = "everywhere"

    assert parsed.endpoints[0].served_models[0].gpu_placement == GpuPlacement.SPREAD_ACROSS_GPUS
    [problem] = problems_for(values)
    assert problem.startswith("endpoints[0].servedModels[0].gpuPlacement: Input should be 'workerPerGpu' or 'spreadAcrossGpus'")


def test_malformed_model_uri_lists_the_accepted_forms() -> None:
    values = valid_values()
    served(values)["modelUri"] = "fraud:12"

    [problem] = problems_for(values)
    assert "models:/<name>/<version>, models:/<name>@<alias>, runs:/<run-id>/<path>, s3://<bucket>/<key>" in problem


def test_internet_facing_gateway_needs_explicit_cidrs_and_public_subnets() -> None:
    values = valid_values()
    values["gateway"] = {"internetFacing": True}

    assert problems_for(values) == [
        "gateway.allowedCidrs: an internet-facing gateway needs allowedCidrs written out (use [0.0.0.0/0] to open it to everyone)"
    ]
    values["gateway"]["allowedCidrs"] = ["0.0.0.0/0"]
    assert problems_for(values) == ["network.publicSubnetIds: an internet-facing gateway needs at least two public subnets"]


def test_every_problem_is_reported_at_once() -> None:
    values = valid_values()
    served(values)["computeType"] = "TPU"
    values["network"]["privateSubnetIds"] = ["subnet-a1"]

    assert len(problems_for(values)) == 2


def test_relative_local_store_is_anchored_at_the_project_root() -> None:
    values = valid_values()
    values["mlflowTrackingUri"] = "sqlite:///.kiln/mlflow/mlflow.db"

    uri = parse_stack_config(values, SOURCE).mlflow_tracking_uri

    assert uri == f"sqlite:///{Path(__file__).resolve().parents[3]}/.kiln/mlflow/mlflow.db"


def test_stack_file_errors_name_the_file(tmp_path: Path) -> None:
    values = valid_values()
    config = {"aws:region": values.pop("region"), **{f"kiln:{k}": v for k, v in values.items()}}
    config["kiln:endpoints"][0]["servedModels"][0]["computeType"] = "CPU_SMALL"
    path = write_stack(tmp_path, config)

    with pytest.raises(ConfigError) as caught:
        load_stack(str(path))

    assert str(caught.value).startswith(f"{path}: endpoints[0].servedModels[0].computeType: unknown compute type")


def test_keys_outside_the_kiln_namespace_are_refused(tmp_path: Path) -> None:
    path = write_stack(tmp_path, {"aws:region": "us-east-1", "kilm:environment": "dev"})

    with pytest.raises(ConfigError) as caught:
        load_stack(str(path))

    assert caught.value.problems == ["kilm:environment: unknown namespace 'kilm'; Kiln keys are written kiln:<key>"]
    assert caught.value.source == str(path)


def test_missing_stack_file_is_a_config_error_listing_the_stacks_that_exist() -> None:
    with pytest.raises(ConfigError) as caught:
        load_stack("prdo")

    assert str(caught.value) == (
        f"{STACKS_DIR / 'Pulumi.prdo.yaml'}: stack file not found; the stacks in {STACKS_DIR} are: dev, prod, staging"
    )


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config: [unclosed\n")

    with pytest.raises(ConfigError) as caught:
        load_stack(str(path))

    assert str(caught.value).startswith(f"{path}: not valid YAML: ")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_are_valid(stack: str) -> None:
    name, config = load_stack(stack)

    assert name == stack
    assert config.environment == stack


# --- boundary triples: every limit below / at / above ------------------------------------------

def with_key(values: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set `a.b[0].c`-style `path` (the spelling problems use) to `value`, creating mappings."""
    node: Any = values
    keys: list[str | int] = []
    for part in path.replace("]", "").replace("[", ".").split("."):
        keys.append(int(part) if part.isdigit() else part)
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[keys[-1]] = value
    return values


SERVED = "endpoints[0].servedModels[0]"

# (key path, value, accepted?)
LIMITS = [
    ("build.timeoutMinutes", 4, False), ("build.timeoutMinutes", 5, True),
    ("build.timeoutMinutes", 2160, True), ("build.timeoutMinutes", 2161, False),
    ("endpoints[0].requestTimeoutSeconds", 0, False), ("endpoints[0].requestTimeoutSeconds", 1, True),
    ("endpoints[0].requestTimeoutSeconds", 3995, True), ("endpoints[0].requestTimeoutSeconds", 3996, False),
    (f"{SERVED}.scaling.targetUtilization", 0.09, False), (f"{SERVED}.scaling.targetUtilization", 0.1, True),
    (f"{SERVED}.scaling.targetUtilization", 1.0, True), (f"{SERVED}.scaling.targetUtilization", 1.01, False),
    (f"{SERVED}.scaling.scaleInCooldownSeconds", 0, False), (f"{SERVED}.scaling.scaleInCooldownSeconds", 60, True),
    (f"{SERVED}.scaling.scaleInCooldownSeconds", 3600, True), (f"{SERVED}.scaling.scaleInCooldownSeconds", 3660, False),
    (f"{SERVED}.scaling.warmPool.minSize", -1, False), (f"{SERVED}.scaling.warmPool.minSize", 0, True),
    (f"{SERVED}.scaling.warmPool.minSize", 100, True), (f"{SERVED}.scaling.warmPool.minSize", 101, False),
]


@pytest.mark.parametrize(("path", "value", "accepted"), LIMITS)
def test_limits_are_inclusive(path: str, value: Any, accepted: bool) -> None:
    values = with_key(valid_values(), path, value)

    if accepted:
        parse_stack_config(values, SOURCE)
    else:
        [problem] = problems_for(values)
        assert problem.startswith(f"{path}: Input should be")


@pytest.mark.parametrize(("minutes", "accepted"), [(0, False), (1, True), (1440, True), (1441, False)])
def test_idle_minutes_before_zero_is_one_minute_to_one_day(minutes: int, accepted: bool) -> None:
    values = valid_values()
    served(values).update(scaleToZeroEnabled=True, scaling={"idleMinutesBeforeZero": minutes})

    if accepted:
        assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].scaling.idle_minutes_before_zero == minutes
    else:
        [problem] = problems_for(values)
        assert problem.startswith(f"{SERVED}.scaling.idleMinutesBeforeZero: Input should be")


@pytest.mark.parametrize(
    ("low", "high", "problem"),
    [
        (-1, 4, f"{SERVED}.minProvisionedConcurrency: Input should be greater than or equal to 0"),
        (0, 0, f"{SERVED}.maxProvisionedConcurrency: Input should be greater than or equal to 1"),
        (0, 1, None),
        (4, 4, None),
        (5, 4, f"{SERVED}.minProvisionedConcurrency: min 5 is greater than maxProvisionedConcurrency 4"),
        (0, 1024, None),
        (0, 1025, f"{SERVED}.maxProvisionedConcurrency: Input should be less than or equal to 1024"),
        (1024, 1024, None),
        (1025, 1024, f"{SERVED}.minProvisionedConcurrency: Input should be less than or equal to 1024"),
    ],
)
def test_provisioned_concurrency_bounds(low: int, high: int, problem: str | None) -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values).update(minProvisionedConcurrency=low, maxProvisionedConcurrency=high)

    if problem is None:
        model = parse_stack_config(values, SOURCE).endpoints[0].served_models[0]
        assert (model.min_provisioned_concurrency, model.max_provisioned_concurrency) == (low, high)
    else:
        assert problems_for(values) == [problem]


def test_max_provisioned_concurrency_alone_is_enough() -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values)["maxProvisionedConcurrency"] = 8

    model = parse_stack_config(values, SOURCE).endpoints[0].served_models[0]

    assert (model.min_provisioned_concurrency, model.max_provisioned_concurrency) == (None, 8)


def test_min_provisioned_concurrency_alone_needs_a_max() -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values)["minProvisionedConcurrency"] = 2

    assert problems_for(values) == [f"{SERVED}.maxProvisionedConcurrency: is required with minProvisionedConcurrency"]


@pytest.mark.parametrize(
    ("qps", "latency", "accepted"),
    [(0, 40, False), (0.001, 40, True), (20, 0, False), (20, 0.999, False), (20, 1, True), (0.1, 3_995_000, True),
     (0.1, 3_995_001, False), (1e300, 40, False), (20, 1e-9, False), (12_800, 40, True), (12_801, 40, False)],
)
def test_expected_traffic_must_be_positive_and_latency_within_the_longest_timeout(
    qps: float, latency: float, accepted: bool
) -> None:
    values = valid_values()
    del served(values)["workloadSize"]
    served(values).update(expectedQps=qps, expectedLatencyMs=latency)

    if accepted:
        parse_stack_config(values, SOURCE)
    else:
        [problem] = problems_for(values)
        assert problem.startswith(f"{SERVED}.expected")


def test_no_way_of_sizing_is_refused() -> None:
    values = valid_values()
    del served(values)["workloadSize"]

    assert problems_for(values) == [
        f"{SERVED}: give exactly one of workloadSize, min/maxProvisionedConcurrency, or expectedQps + expectedLatencyMs"
    ]


def test_all_three_ways_of_sizing_at_once_are_refused() -> None:
    values = valid_values()
    served(values).update(maxProvisionedConcurrency=8, expectedQps=20, expectedLatencyMs=40)

    [problem] = problems_for(values)
    assert problem.startswith(f"{SERVED}: give exactly one of")


def test_expected_latency_alone_does_not_count_as_a_way_of_sizing() -> None:
    values = valid_values()
    served(values)["expectedLatencyMs"] = 40

    assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].expected_latency_ms == 40


@pytest.mark.parametrize(("count", "refusal"), [
    (0, "List should have at least 1 item"),
    (1, None),
    (5, None),
    # One ALB forward action weighs at most 5 target groups, one per served model.
    (6, "6 served models; an endpoint takes at most 5, because its ALB listener rule forwards to one target group"),
])
def test_an_endpoint_serves_one_to_five_models(count: int, refusal: str | None) -> None:
    values = valid_values()
    endpoint = values["endpoints"][0]
    endpoint["servedModels"] = [
        {"name": f"m{i}", "modelUri": f"models:/m/{i + 1}", "computeType": "CPU_MEDIUM", "workloadSize": "Small"}
        for i in range(count)
    ]
    endpoint["trafficConfig"] = {
        "routes": [{"servedModelName": f"m{i}", "trafficPercentage": 100 if i == 0 else 0} for i in range(count)]
    }

    if refusal is None:
        assert len(parse_stack_config(values, SOURCE).endpoints[0].served_models) == count
    else:
        assert problems_for(values)[0].startswith(f"endpoints[0].servedModels: {refusal}")


@pytest.mark.parametrize(("count", "accepted"), [(1, False), (2, True)])
def test_private_subnets_span_at_least_two(count: int, accepted: bool) -> None:
    values = valid_values()
    values["network"]["privateSubnetIds"] = [f"subnet-{i:017x}" for i in range(count)]

    if accepted:
        assert parse_stack_config(values, SOURCE).network.private_subnet_ids == [f"subnet-{0:017x}", f"subnet-{1:017x}"]
    else:
        [problem] = problems_for(values)
        assert problem.startswith("network.privateSubnetIds: List should have at least 2 items")


@pytest.mark.parametrize(("count", "accepted"), [(1, False), (2, True)])
def test_internet_facing_gateway_needs_two_public_subnets(count: int, accepted: bool) -> None:
    values = valid_values()
    values["gateway"] = {"internetFacing": True, "allowedCidrs": ["0.0.0.0/0"]}
    values["network"]["publicSubnetIds"] = [f"subnet-{i + 16:08x}" for i in range(count)]

    if accepted:
        assert parse_stack_config(values, SOURCE).gateway.internet_facing is True
    else:
        assert problems_for(values) == ["network.publicSubnetIds: an internet-facing gateway needs at least two public subnets"]


def test_internal_gateway_needs_no_public_subnets() -> None:
    values = valid_values()
    values["gateway"] = {"internetFacing": False}

    assert parse_stack_config(values, SOURCE).network.public_subnet_ids == []


@pytest.mark.parametrize("name", ["a", "0", "a" * 63, "a-b", "fraud-scorer-2"])
def test_endpoint_and_served_model_names_within_the_pattern_are_accepted(name: str) -> None:
    values = valid_values()
    values["endpoints"][0]["name"] = name
    served(values)["name"] = name
    values["endpoints"][0]["trafficConfig"]["routes"][0]["servedModelName"] = name

    config = parse_stack_config(values, SOURCE)

    assert (config.endpoints[0].name, config.endpoints[0].served_models[0].name) == (name, name)


@pytest.mark.parametrize("name", ["", "a" * 64, "a-", "-a", "A", "a_b", "a.b", "a b"])
def test_served_model_names_outside_the_pattern_are_refused(name: str) -> None:
    values = valid_values()
    served(values)["name"] = name

    problems = problems_for(values)

    assert problems[0] == (
        f"{SERVED}.name: served model name {name!r} must be 1-63 lower-case letters, digits or '-', "
        "starting and ending with a letter or digit"
    )


# --- traffic routes ---------------------------------------------------------------------------------

def test_zero_percent_route_is_accepted_and_keeps_its_served_model() -> None:
    values = valid_values()
    routes = values["endpoints"][0]["trafficConfig"]["routes"]
    routes[0]["trafficPercentage"], routes[1]["trafficPercentage"] = 100, 0

    endpoint = parse_stack_config(values, SOURCE).endpoints[0]

    assert [s.name for s in endpoint.served_models] == ["champion", "challenger"]
    assert (endpoint.traffic_percentage("champion"), endpoint.traffic_percentage("challenger")) == (100, 0)


def test_negative_percentage_is_refused_even_when_the_routes_sum_to_100() -> None:
    values = valid_values()
    routes = values["endpoints"][0]["trafficConfig"]["routes"]
    routes[0]["trafficPercentage"], routes[1]["trafficPercentage"] = 110, -10

    assert problems_for(values) == [
        "endpoints[0].trafficConfig.routes[0].trafficPercentage: Input should be less than or equal to 100",
        "endpoints[0].trafficConfig.routes[1].trafficPercentage: Input should be greater than or equal to 0",
    ]


@pytest.mark.parametrize(
    ("percentage", "problem"),
    [(-1, "greater than or equal to 0"), (0, None), (100, None), (101, "less than or equal to 100")],
)
def test_route_percentage_is_0_to_100(percentage: int, problem: str | None) -> None:
    values = valid_values()
    routes = values["endpoints"][0]["trafficConfig"]["routes"]
    routes[0]["trafficPercentage"], routes[1]["trafficPercentage"] = 100 - percentage, percentage

    if problem is None:
        assert parse_stack_config(values, SOURCE).endpoints[0].traffic_percentage("challenger") == percentage
    else:
        assert f"endpoints[0].trafficConfig.routes[1].trafficPercentage: Input should be {problem}" in problems_for(values)


def test_routes_summing_to_101_are_refused() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"][0]["trafficPercentage"] = 91

    assert problems_for(values) == ["endpoints[0].trafficConfig.routes: percentages sum to 101, must be 100"]


def test_empty_route_list_is_refused() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"] = []

    [problem] = problems_for(values)
    assert problem.startswith("endpoints[0].trafficConfig.routes: List should have at least 1 item")


def test_two_routes_to_one_served_model_are_refused() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"] = [
        {"servedModelName": "champion", "trafficPercentage": 50},
        {"servedModelName": "champion", "trafficPercentage": 50},
        {"servedModelName": "challenger", "trafficPercentage": 0},
    ]

    assert problems_for(values) == ["endpoints[0].trafficConfig.routes: a served model has more than one route"]


def test_two_served_models_without_traffic_config_are_refused() -> None:
    values = valid_values()
    del values["endpoints"][0]["trafficConfig"]

    assert problems_for(values) == ["endpoints[0].trafficConfig: is required with more than one served model (champion, challenger)"]


def test_one_served_model_without_traffic_config_gets_all_traffic() -> None:
    values = valid_values()
    del values["endpoints"][0]["trafficConfig"]
    values["endpoints"][0]["servedModels"] = [served(values)]

    assert parse_stack_config(values, SOURCE).endpoints[0].traffic_percentage("champion") == 100


# --- defaults when a key is absent ------------------------------------------------------------------

def test_absent_keys_take_the_documented_defaults() -> None:
    config = parse_stack_config(valid_values(), SOURCE)
    endpoint = config.endpoints[0]
    model = endpoint.served_models[0]

    assert (config.gateway.internet_facing, config.gateway.certificate_arn, config.gateway.allowed_cidrs) == (False, None, None)
    assert config.gateway.ingress_cidrs == ["10.0.0.0/8"]
    assert config.network.public_subnet_ids == []
    assert config.build.timeout_minutes == 60
    assert (endpoint.request_timeout_seconds, endpoint.tags) == (597, {})
    assert (model.scale_to_zero_enabled, model.instance_type, model.environment_vars) == (False, None, {})
    scaling = model.scaling
    assert (scaling.target_utilization, scaling.high_resolution_metric) == (0.7, True)
    assert (scaling.scale_in_cooldown_seconds, scaling.idle_minutes_before_zero, scaling.warm_pool) == (300, 30, None)


def test_an_empty_warm_pool_keeps_one_instance_and_reuses_it() -> None:
    values = valid_values()
    served(values)["scaling"] = {"warmPool": {}}

    pool = parse_stack_config(values, SOURCE).endpoints[0].served_models[0].scaling.warm_pool

    assert pool is not None
    assert (pool.min_size, pool.reuse_on_scale_in) == (1, True)


def test_explicit_cidrs_replace_the_internal_default() -> None:
    values = valid_values()
    values["gateway"] = {"allowedCidrs": ["172.16.0.0/12", "2001:db8::/32"]}

    assert parse_stack_config(values, SOURCE).gateway.ingress_cidrs == ["172.16.0.0/12", "2001:db8::/32"]


def test_idle_minutes_with_scale_to_zero_is_accepted() -> None:
    values = valid_values()
    served(values).update(scaleToZeroEnabled=True, scaling={"idleMinutesBeforeZero": 10})

    assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].scaling.idle_minutes_before_zero == 10


@pytest.mark.parametrize(("seconds", "example"), [(90, 60), (150, 120), (3540 + 30, 3540)])
def test_scale_in_window_off_the_minute_suggests_the_minute_below(seconds: int, example: int) -> None:
    values = valid_values()
    served(values)["scaling"] = {"scaleInCooldownSeconds": seconds}

    assert problems_for(values) == [
        f"{SERVED}.scaling.scaleInCooldownSeconds: {seconds} is not a whole number of minutes; "
        f"use a multiple of 60 (e.g. {example})"
    ]


@pytest.mark.parametrize("seconds", [120, 600, 1800])
def test_scale_in_window_in_whole_minutes_is_accepted(seconds: int) -> None:
    values = valid_values()
    served(values)["scaling"] = {"scaleInCooldownSeconds": seconds}

    assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].scaling.scale_in_cooldown_seconds == seconds


# --- every accepted spelling of checked values -------------------------------------------------------

@pytest.mark.parametrize("compute_type", ["CPU_MEDIUM", "CPU_LARGE", "GPU_SMALL", "GPU_MEDIUM", "MULTIGPU_MEDIUM", "GPU_MEDIUM_8"])
def test_every_compute_type_is_accepted(compute_type: str) -> None:
    values = valid_values()
    served(values)["computeType"] = compute_type

    assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].compute_type.value == compute_type


@pytest.mark.parametrize("compute_type", ["cpu_medium", "CPU", "GPU_LARGE", ""])
def test_other_spellings_of_compute_types_are_refused(compute_type: str) -> None:
    values = valid_values()
    served(values)["computeType"] = compute_type

    [problem] = problems_for(values)
    assert problem.startswith(f"{SERVED}.computeType: unknown compute type {compute_type!r}; valid compute types: CPU_MEDIUM, ")


@pytest.mark.parametrize(
    "uri",
    ["models:/fraud/12", "models:/fraud@champion", "models:/fraud@v2_b-1", "runs:/0a1b2c/model", "s3://bucket/models/fraud",
     "./models/fraud", "../fraud", "~/fraud", "/opt/models/fraud"],
)
def test_every_model_uri_form_is_accepted(uri: str) -> None:
    values = valid_values()
    served(values)["modelUri"] = uri

    assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].model_uri == uri


@pytest.mark.parametrize(
    "uri",
    ["models:/fraud", "models:/fraud/latest", "models:/fraud/1/2", "runs:/RUN1/model", "runs:/0a1b2c/", "s3://bucket",
     "s3://bucket/", "http://host/model", "fraud", ""],
)
def test_model_uris_without_a_pinned_version_or_location_are_refused(uri: str) -> None:
    values = valid_values()
    served(values)["modelUri"] = uri

    [problem] = problems_for(values)
    assert problem.startswith(f"{SERVED}.modelUri: {uri!r} is not a model URI; use models:/<name>/<version>")


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2", "us-gov-west-1"])
def test_aws_region_spellings_are_accepted(region: str) -> None:
    values = valid_values()
    values["region"] = region

    assert parse_stack_config(values, SOURCE).region == region


@pytest.mark.parametrize("region", ["US-EAST-1", "us-east", "useast1", "us-east-1a"])
def test_other_region_spellings_are_refused(region: str) -> None:
    values = valid_values()
    values["region"] = region

    [problem] = problems_for(values)
    assert problem.startswith(f"region: unknown AWS region {region!r}")


@pytest.mark.parametrize(("environment", "accepted"), [("dev", True), ("staging", True), ("prod", True), ("production", False), ("Dev", False)])
def test_environment_is_dev_staging_or_prod(environment: str, accepted: bool) -> None:
    values = valid_values()
    values["environment"] = environment

    if accepted:
        assert parse_stack_config(values, SOURCE).environment == environment
    else:
        assert problems_for(values) == ["environment: Input should be 'dev', 'staging' or 'prod'"]


@pytest.mark.parametrize(("vpc", "accepted"), [
    ("vpc-0abc1234", True), ("vpc-0abc1234567890def", True), ("vpc-0abc", False), ("vpc-", False), ("VPC-0abc1234", False),
    ("vpc-0abc123g", False), ("vpc-0abc1234\n", False), ("subnet-0abc1234", False),
])
def test_vpc_ids_are_checked(vpc: str, accepted: bool) -> None:
    values = valid_values()
    values["network"]["vpcId"] = vpc

    if accepted:
        assert parse_stack_config(values, SOURCE).network.vpc_id == vpc
    else:
        [problem] = problems_for(values)
        assert problem == f"network.vpcId: {vpc!r} is not a VPC id (expected 'vpc-' and 8 or 17 hexadecimal digits)"


def test_subnet_ids_must_be_subnets_and_listed_once() -> None:
    values = valid_values()
    values["network"]["privateSubnetIds"] = ["subnet-0a1b2c3d", "sg-123", "subnet-a1", "subnet-0a1b2c3d\n"]
    values["network"]["publicSubnetIds"] = ["subnet-0a1b2c3e", "subnet-0a1b2c3e"]

    assert problems_for(values) == [
        "network.privateSubnetIds: not subnet ids: 'sg-123', 'subnet-a1', 'subnet-0a1b2c3d\\n' "
        "(expected 'subnet-' and 8 or 17 hexadecimal digits)",
        "network.publicSubnetIds: subnet ids are listed twice",
    ]


@pytest.mark.parametrize(
    ("arn", "accepted"),
    [("arn:aws:acm:us-east-1:123456789012:certificate/abc", True), ("arn:aws-us-gov:acm:us-gov-west-1:1:certificate/abc", True),
     ("arn:aws:iam::123456789012:server-certificate/abc", False), ("acm:us-east-1:certificate/abc", False)],
)
def test_certificate_must_be_an_acm_arn(arn: str, accepted: bool) -> None:
    values = valid_values()
    values["gateway"] = {"certificateArn": arn}

    if accepted:
        assert parse_stack_config(values, SOURCE).gateway.certificate_arn == arn
    else:
        [problem] = problems_for(values)
        assert problem.startswith("gateway.certificateArn: String should match pattern")


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.0.0.1/8", "everyone", "", "10.1.2.3", "10.0.0.0/255.0.0.0", "10.0.0.0/08"])
def test_cidrs_ec2_would_refuse_are_refused(cidr: str) -> None:
    # ipaddress reads a bare address as /32 and accepts a netmask, but EC2 security group
    # rules take only address/prefix-length and fail `pulumi up` with "CIDR block … is malformed".
    values = valid_values()
    values["gateway"] = {"allowedCidrs": ["10.0.0.0/8", cidr]}

    [problem] = problems_for(values)
    assert problem.startswith(f"gateway.allowedCidrs: {cidr!r} is not a CIDR block such as 10.0.0.0/8")


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"KILN_MODEL_URI": "x"}, "invalid environment variable names ['KILN_MODEL_URI'] (KILN_* is reserved for the runtime)"),
        ({"1ST": "x", "OK": "y"}, "invalid environment variable names ['1ST'] (KILN_* is reserved for the runtime)"),
        ({"LOG-LEVEL": "x"}, "invalid environment variable names ['LOG-LEVEL'] (KILN_* is reserved for the runtime)"),
        ({"NOTE": "a\nb"}, "environment variable values must be one line: ['NOTE']"),
    ],
)
def test_environment_variables_the_runtime_cannot_take_are_refused(env: dict[str, str], problem: str) -> None:
    values = valid_values()
    served(values)["environmentVars"] = env

    assert problems_for(values) == [f"{SERVED}.environmentVars: {problem}"]


def test_ordinary_environment_variables_are_accepted() -> None:
    values = valid_values()
    env = {"LOG_LEVEL": "info", "_private": "1", "OMP_NUM_THREADS": "4", "KILNX": "ok", "EMPTY": ""}
    served(values)["environmentVars"] = env

    assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].environment_vars == env


@pytest.mark.parametrize(("instance", "accepted"), [("c7i.2xlarge", True), ("c6i.8xlarge", True), ("g4dn.xlarge", False), ("c7i.mega", False)])
def test_instance_type_is_checked_against_the_compute_type(instance: str, accepted: bool) -> None:
    values = valid_values()
    served(values)["instanceType"] = instance

    if accepted:
        assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].instance_type == instance
    else:
        [problem] = problems_for(values)
        assert problem.startswith(f"{SERVED}.instanceType: {instance!r} is not allowed for CPU_MEDIUM; allowed: c7i.large, ")


# --- local stores, messages, stack files ---------------------------------------------------------------

@pytest.mark.parametrize("uri", ["sqlite:////var/mlflow/mlflow.db", "http://mlflow.internal:5000", "databricks", "sqlite://"])
def test_absolute_and_remote_tracking_uris_are_kept_as_written(uri: str) -> None:
    values = valid_values()
    values["mlflowTrackingUri"] = uri

    assert parse_stack_config(values, SOURCE).mlflow_tracking_uri == uri


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    values = valid_values()
    values["endpoints"][0]["trafficConfig"]["routes"][0]["weight"] = 90

    assert problems_for(values) == [
        "endpoints[0].trafficConfig.routes[0].weight: unknown key 'weight'; known keys: servedModelName, trafficPercentage"
    ]


def test_unknown_key_in_an_optional_section_suggests_the_closest_key() -> None:
    values = valid_values()
    served(values)["scaling"] = {"warmPool": {"minSiz": 2}}

    assert problems_for(values) == [f"{SERVED}.scaling.warmPool.minSiz: unknown key 'minSiz'; did you mean minSize?"]


def test_unknown_top_level_key_suggests_the_closest_key() -> None:
    values = valid_values()
    values["endpiont"] = []

    assert problems_for(values) == ["endpiont: unknown key 'endpiont'; did you mean endpoints?"]


def test_a_config_that_is_not_a_mapping_is_a_top_level_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config([], SOURCE)  # type: ignore[arg-type]

    assert caught.value.problems == ["(top level): Input should be a valid dictionary or instance of StackConfig"]


@pytest.mark.parametrize(
    ("stack", "expected"),
    [("dev", STACKS_DIR / "Pulumi.dev.yaml"), ("my-stack", STACKS_DIR / "Pulumi.my-stack.yaml"),
     ("stacks/Pulumi.dev.yaml", Path("stacks/Pulumi.dev.yaml")), ("Pulumi.x.yml", Path("Pulumi.x.yml")),
     ("Pulumi.x.yaml", Path("Pulumi.x.yaml")),
     ("other/dev", Path("other/dev"))],
)
def test_stack_argument_is_a_name_or_a_path(stack: str, expected: Path) -> None:
    assert resolve_stack_path(stack) == expected


@pytest.mark.parametrize(
    ("file_name", "name"),
    [("Pulumi.dev.yaml", "dev"), ("Pulumi.prod-eu.yml", "prod-eu"), ("Pulumi.a.b.yaml", "a.b"), ("custom.yaml", "custom")],
)
def test_stack_name_comes_from_the_file_name(file_name: str, name: str) -> None:
    assert stack_name(Path("/any") / file_name) == name


def test_stack_file_named_outside_the_name_pattern_is_refused(tmp_path: Path) -> None:
    values = valid_values()
    config = {"aws:region": values.pop("region"), **{f"kiln:{k}": v for k, v in values.items()}}
    path = write_stack(tmp_path, config, stack="Prod")

    with pytest.raises(ConfigError) as caught:
        load_stack(str(path))

    assert str(caught.value) == f"{path}: (file name): stack name 'Prod' must be lower-case letters, digits or '-'"


def test_stack_file_loads_with_its_name_and_values(tmp_path: Path) -> None:
    values = valid_values()
    config = {"aws:region": values.pop("region"), "aws:profile": "ignored", "pulumi:template": "ignored",
              **{f"kiln:{k}": v for k, v in values.items()}}
    path = write_stack(tmp_path, config, stack="qa-1")

    name, loaded = load_stack(str(path))

    assert (name, loaded.region, loaded.environment) == ("qa-1", "us-east-1", "prod")


@pytest.mark.parametrize("text", ["", "just text\n", "- a\n- b\n", "config: 3\n"])
def test_a_stack_file_without_a_config_mapping_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Pulumi.empty.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        read_stack_file(path)

    assert str(caught.value) == f"{path}: (top level): a stack file needs a 'config:' mapping"


def test_kiln_namespace_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        values_from_stack_config({"kiln:": 1, "kiln:environment": "dev", "aws:region": "us-east-1"}, SOURCE)

    assert caught.value.problems == ["kiln:: unknown namespace 'kiln'; Kiln keys are written kiln:<key>"]


def test_only_kiln_keys_and_the_aws_region_become_values() -> None:
    config = {"kiln:environment": "dev", "aws:region": "eu-west-1", "aws:profile": "p", "pulumi:disable-default-providers": ["aws"]}

    assert values_from_stack_config(config, SOURCE) == {"environment": "dev", "region": "eu-west-1"}


def test_schema_names_stack_file_keys_with_their_namespace() -> None:
    schema = json_schema()

    models = StackConfig.model_json_schema(by_alias=True)
    config = schema["properties"]["config"]
    assert config == {
        "type": "object",
        "properties": {
            **{f"kiln:{key}": models["properties"][key] for key in
               ("environment", "mlflowTrackingUri", "network", "gateway", "build", "amis", "alerts", "endpoints",
                "kmsKeyArn", "sessionManager")},
            "aws:region": {"type": "string", "description": "AWS region the stack deploys to"},
        },
        "required": ["kiln:environment", "kiln:mlflowTrackingUri", "kiln:network", "kiln:endpoints", "aws:region"],
    }
    assert {key: value for key, value in schema.items() if key not in ("properties", "$defs")} == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Kiln stack file (stacks/Pulumi.<env>.yaml)",
        "type": "object",
        "required": ["config"],
    }
    assert schema["properties"]["secretsprovider"] == {"type": "string"}
    assert schema["properties"]["encryptionsalt"] == {"type": "string"}
    assert list(schema["properties"]) == ["config", "secretsprovider", "encryptionsalt"]
    assert schema["$defs"] == models["$defs"]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "10.1.2.3/32", "2001:db8::/32"])
def test_cidrs_written_as_address_and_prefix_length_are_accepted(cidr: str) -> None:
    values = valid_values()
    values["gateway"] = {"allowedCidrs": [cidr]}

    assert parse_stack_config(values, SOURCE).gateway.ingress_cidrs == [cidr]


def test_every_problem_is_its_own_line_naming_the_file() -> None:
    error = ConfigError("stacks/Pulumi.qa.yaml", ["endpoints: is required", "region: is required"])

    assert str(error) == "stacks/Pulumi.qa.yaml: endpoints: is required\nstacks/Pulumi.qa.yaml: region: is required"


def test_the_namespace_ends_at_the_first_colon() -> None:
    # A nested key written with colons stays one (unknown) kiln key, reported by the schema.
    assert values_from_stack_config({"kiln:network:vpcId": "vpc-1"}, SOURCE) == {"network:vpcId": "vpc-1"}



def test_a_stack_file_is_read_once_with_the_command_lines_tracking_uri(tmp_path: Path) -> None:
    """What the program is handed (raw) and what is validated carry the same override."""
    path = write_stack(tmp_path, {f"kiln:{key}": value for key, value in valid_values().items() if key != "region"}
                       | {"aws:region": "us-east-1"})

    stack_file = read_stack(str(path), "http://mlflow.example:5000")

    assert (stack_file.name, stack_file.path) == ("test", path)
    assert stack_file.raw["kiln:mlflowTrackingUri"] == "http://mlflow.example:5000"
    assert stack_file.config.mlflow_tracking_uri == "http://mlflow.example:5000"
    assert read_stack(str(path)).raw["kiln:mlflowTrackingUri"] == valid_values()["mlflowTrackingUri"]


def test_queue_budget_must_be_shorter_than_the_endpoints_request_timeout() -> None:
    values = valid_values()
    values["endpoints"][0]["requestTimeoutSeconds"] = 60
    served(values)["queueBudgetSeconds"] = 60

    assert problems_for(values) == [
        "endpoints[0].servedModels[0].queueBudgetSeconds: 60 s is not less than the endpoint's requestTimeoutSeconds "
        "(60 s): a request admitted with that wait would time out before its prediction; lower it, or leave it out "
        "(1 s, or half a shorter request timeout)"]


def test_queue_budget_is_read_per_served_model() -> None:
    values = valid_values()
    served(values)["queueBudgetSeconds"] = 2.5

    assert parse_stack_config(values, SOURCE).endpoints[0].served_models[0].queue_budget_seconds == 2.5


def test_prod_must_pin_the_ami_of_every_compute_class_it_uses() -> None:
    values = valid_values()
    values["amis"] = {"gpu": "ami-0fedcba9876543210"}

    assert problems_for(values) == [
        "amis.cpu: prod boots only pinned AMIs, and fraud-scorer.champion, fraud-scorer.challenger need a cpu AMI: "
        "set it to the id `kiln amis prod` prints (SSM parameter "
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64)"
    ]


def test_outside_prod_an_unpinned_ami_is_read_from_ssm_at_deploy() -> None:
    values = valid_values()
    values["environment"] = "staging"
    del values["amis"]

    assert parse_stack_config(values, SOURCE).amis.pinned("cpu") is None


@pytest.mark.parametrize("ami", ["ami-123", "ami-0123456789ABCDEF0", "i-0123456789abcdef0"])
def test_an_ami_id_must_look_like_one(ami: str) -> None:
    values = valid_values()
    values["amis"]["cpu"] = ami

    [problem] = problems_for(values)
    assert problem.startswith("amis.cpu: String should match pattern")


def test_an_alert_topic_in_another_region_is_refused_with_its_key_path() -> None:
    values = {**valid_values(), "alerts": {"snsTopicArn": "arn:aws:sns:eu-west-1:123456789012:on-call"}}

    assert problems_for(values) == [
        "alerts.snsTopicArn: the topic is in eu-west-1, the stack in us-east-1: CloudWatch alarms notify only topics "
        "in their own region"]


def test_an_alert_destination_that_is_not_an_sns_topic_arn_is_refused() -> None:
    values = {**valid_values(), "alerts": {"snsTopicArn": "on-call@example.com"}}

    [problem] = problems_for(values)
    assert problem.startswith("alerts.snsTopicArn: String should match pattern '^arn:aws[a-z-]*:sns:")

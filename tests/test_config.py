"""Stack config validation: every invalid input gets one clear error naming file and key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from infra.config import ConfigError, load_stack, parse_stack_config
from tests.conftest import write_stack

SOURCE = "stacks/Pulumi.test.yaml"


def valid_values() -> dict[str, Any]:
    return {
        "region": "us-east-1",
        "environment": "prod",
        "mlflowTrackingUri": "http://mlflow.internal:5000",
        "network": {"vpcId": "vpc-0abc", "privateSubnetIds": ["subnet-a1", "subnet-b1"]},
        "endpoints": [
            {
                "name": "fraud-scorer",
                "servedModels": [
                    {"name": "champion", "modelUri": "models:/fraud/12", "computeType": "CPU_MEDIUM", "workloadSize": "Small"},
                    {"name": "challenger", "modelUri": "models:/fraud@challenger", "computeType": "CPU_MEDIUM", "workloadSize": "Small"},
                ],
                "trafficConfig": {
                    "routes": [
                        {"servedModelName": "champion", "trafficPercentage": 90},
                        {"servedModelName": "challenger", "trafficPercentage": 10},
                    ]
                },
            }
        ],
    }


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

    assert uri == f"sqlite:///{Path(__file__).resolve().parent.parent}/.kiln/mlflow/mlflow.db"


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


def test_missing_stack_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_stack(str(tmp_path / "Pulumi.nope.yaml"))

    assert "stack file not found" in str(caught.value)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config: [unclosed\n")

    with pytest.raises(ConfigError) as caught:
        load_stack(str(path))

    assert "not valid YAML" in str(caught.value)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_are_valid(stack: str) -> None:
    name, config = load_stack(stack)

    assert name == stack
    assert config.environment == stack

"""`kiln:network.vpcEndpoints`: what it accepts, which endpoints a stack needs, and what they cost."""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan.catalog import INTERFACE_ENDPOINT_AZ_HOURLY_USD
from infra.plan.config import ConfigError, parse_stack_config
from infra.plan.stack import plan_stack
from tests.stack_values import valid_values

ROUTE_TABLE = "rtb-0abc0000000000001"


def planned(values: dict[str, Any]):
    return plan_stack("prod", parse_stack_config(values, "stacks/Pulumi.prod.yaml"))


def with_endpoints(**endpoints: Any) -> dict[str, Any]:
    values = valid_values()
    values["network"]["vpcEndpoints"] = endpoints
    return values


def problems(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_stack_config(values, "stacks/Pulumi.prod.yaml")
    return error.value.problems


def gpu_only(**endpoints: Any) -> dict[str, Any]:
    values = with_endpoints(**endpoints)
    values["endpoints"] = [{"name": "ticket-router", "servedModels": [
        {"name": "champion", "modelUri": "models:/tickets/3", "computeType": "GPU_SMALL", "workloadSize": "Small"}]}]
    return values


@pytest.mark.parametrize("route_tables, message", [
    (["rtb-123"], "not route table ids: 'rtb-123' (expected 'rtb-' and 8 or 17 hexadecimal digits)"),
    (["subnet-0a1000000000000a1"], "not route table ids: 'subnet-0a1000000000000a1'"),
    ([f"{ROUTE_TABLE}\n"], "not route table ids: 'rtb-0abc0000000000001\\n'"),
    ([ROUTE_TABLE, ROUTE_TABLE], "route table ids are listed twice"),
    ("rtb-0abc0000000000001", "Input should be a valid list"),
])
def test_route_table_ids_are_checked_like_subnet_ids(route_tables: Any, message: str) -> None:
    [problem] = problems(with_endpoints(routeTableIds=route_tables))

    assert problem.startswith("network.vpcEndpoints.routeTableIds")
    assert message in problem


def test_unknown_keys_and_non_booleans_are_refused() -> None:
    assert problems(with_endpoints(routeTables=[ROUTE_TABLE])) == [
        "network.vpcEndpoints.routeTables: unknown key 'routeTables'; did you mean routeTableIds?"]
    assert problems(with_endpoints(enabled="yes", routeTableIds=[ROUTE_TABLE]))[0].startswith(
        "network.vpcEndpoints.enabled: Input should be a valid boolean")


def test_cpu_served_models_need_the_s3_gateway_endpoint_for_their_packages() -> None:
    [problem] = problems(with_endpoints())

    assert problem.startswith("network.vpcEndpoints.routeTableIds: is required with CPU served models "
                              "(fraud-scorer.champion, fraud-scorer.challenger)")
    assert "install Docker" in problem and "S3 gateway endpoint" in problem
    # Off, nothing is needed; GPU instances (Docker on the AMI) take an S3 interface endpoint.
    assert planned(with_endpoints(enabled=False)).vpc_endpoints is None
    assert planned(gpu_only()).vpc_endpoints.s3_gateway is False


def test_unset_the_stack_plans_no_endpoints_and_lets_instances_send_https_anywhere() -> None:
    plan = planned(valid_values())

    assert plan.vpc_endpoints is None
    assert plan.gateway.instance_https_anywhere is True
    assert plan.network_hourly_cost == 0.0
    assert not any(served.s3_regional_endpoint for served in plan.served_models)


def test_the_endpoints_follow_what_the_instances_call() -> None:
    plan = planned(with_endpoints(routeTableIds=[ROUTE_TABLE]))
    endpoints = plan.vpc_endpoints

    assert plan.gateway.instance_https_anywhere is False
    assert list(endpoints.interface_services) == [
        "ecr.api", "ecr.dkr", "logs", "autoscaling", "monitoring", "ssm", "ssmmessages", "ec2messages"]
    assert endpoints.s3_gateway and endpoints.route_table_ids == [ROUTE_TABLE]
    assert endpoints.service_name("ecr.dkr") == "com.amazonaws.us-east-1.ecr.dkr"

    values = with_endpoints(routeTableIds=[ROUTE_TABLE])
    values["sessionManager"] = False
    for served in values["endpoints"][0]["servedModels"]:
        served["scaling"] = {"highResolutionMetric": False}
    values["endpoints"][0]["auth"] = {}
    values["endpoints"][0]["servedModels"][0]["environmentVars"] = {
        "API_KEY": "arn:aws:ssm:us-east-1:123456789012:parameter/fraud/api-key"}
    assert list(planned(values).vpc_endpoints.interface_services) == [
        "ecr.api", "ecr.dkr", "logs", "autoscaling", "secretsmanager", "ssm"]

    values["endpoints"][0]["servedModels"][1]["scaleToZeroEnabled"] = True
    assert {"elasticloadbalancing", "ec2"} <= set(planned(values).vpc_endpoints.interface_services)


def test_interface_endpoints_are_billed_per_availability_zone_and_hour_and_counted_in_the_total() -> None:
    base = planned(valid_values())
    values = with_endpoints(routeTableIds=[ROUTE_TABLE])
    values["network"]["privateSubnetIds"].append("subnet-0c1000000000000c1")
    plan = planned(values)
    endpoints = plan.vpc_endpoints

    # 8 interface endpoints (S3 is a free gateway endpoint) in 3 AZs at $0.01 an hour each.
    assert endpoints.interface_endpoint_count == 8
    assert endpoints.hourly_cost == pytest.approx(8 * 3 * INTERFACE_ENDPOINT_AZ_HOURLY_USD) == pytest.approx(0.24)
    assert endpoints.monthly_cost == pytest.approx(175.20)
    assert plan.hourly_cost_min == pytest.approx(base.hourly_cost_min + 0.24)
    assert plan.hourly_cost_max == pytest.approx(base.hourly_cost_max + 0.24)
    assert endpoints.arithmetic() == ("8 interface endpoints × 3 AZs × $0.01/h = $0.24/h; S3 through a gateway "
                                      "endpoint (free); services: " + ", ".join(endpoints.interface_services))
    # Without route tables S3 is one more interface endpoint, and boto3 must use its regional name.
    gpu = planned(gpu_only())
    assert gpu.vpc_endpoints.interface_endpoint_count == len(gpu.vpc_endpoints.interface_services) + 1
    assert all(served.s3_regional_endpoint for served in gpu.served_models)
    assert "; S3 through an interface endpoint; services: ecr.api, ecr.dkr, " in gpu.vpc_endpoints.arithmetic()

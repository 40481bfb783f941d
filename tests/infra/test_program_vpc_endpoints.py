"""`kiln:network.vpcEndpoints` in the real program, under mocks: the endpoints the instances
call, one security group admitting HTTPS from the instances (and an activator) only, and the
instances' HTTPS egress narrowed from 0.0.0.0/0 to those endpoints and S3's prefix list."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from infra.plan.catalog import HOURS_PER_MONTH
from infra.plan.vpc_endpoints import ACTIVATOR, ALWAYS, IN_FLIGHT_METRIC, SESSION_MANAGER
from infra.preview.policy_pack import check_policies
from infra.preview.program import ProgramRun, Registration, run_program
from infra.preview.report import build_plan_report
from infra.program.physical_names import name_problem
from infra.review.render import render_markdown
from infra.review.report import build_review
from tests.conftest import stack_config, write_stack

ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ROUTE_TABLES = ["rtb-0d3e00000000000a1", "rtb-0d3e00000000000b1"]


def with_endpoints(stack: str, store: Any, **endpoints: Any) -> dict[str, Any]:
    config = json.loads(json.dumps(stack_config(stack, store)))
    config["kiln:network"]["vpcEndpoints"] = endpoints
    return config


@pytest.fixture(scope="module")
def dev_on(example_store: Any) -> ProgramRun:
    """Dev: a CPU served model that scales to zero (an activator), S3 through a gateway endpoint."""
    return run_program("dev", with_endpoints("dev", example_store, routeTableIds=ROUTE_TABLES), preview=False)


@pytest.fixture(scope="module")
def dev_off(example_store: Any) -> ProgramRun:
    return run_program("dev", stack_config("dev", example_store), preview=False)


def group_id(run: ProgramRun, name: str) -> str:
    return run.named(name).outputs["id"]


def rules(run: ProgramRun, type_: str, group: str) -> list[dict[str, Any]]:
    return [r.inputs for r in run.of_type(type_) if r.inputs["securityGroupId"] == group_id(run, group)]


def peers(rule_inputs: list[dict[str, Any]]) -> list[tuple[int, str]]:
    keys = ("cidrIpv4", "cidrIpv6", "referencedSecurityGroupId", "prefixListId")
    return sorted((r["fromPort"], next(r[k] for k in keys if k in r)) for r in rule_inputs)


def endpoints(run: ProgramRun) -> dict[str, Registration]:
    """By service: `com.amazonaws.us-east-1.ecr.api` → `ecr.api`."""
    return {r.inputs["serviceName"].split(".", 3)[3]: r for r in run.of_type(ENDPOINT)}


def test_the_endpoints_are_exactly_what_the_instances_and_the_activator_call(dev_on: ProgramRun) -> None:
    found = endpoints(dev_on)
    expected = {*ALWAYS, *IN_FLIGHT_METRIC, *SESSION_MANAGER, *ACTIVATOR, "s3"}

    assert set(found) == expected
    assert "sts" not in found and "secretsmanager" not in found  # dev: no auth, no secret variables
    s3 = found.pop("s3").inputs
    assert (s3["vpcEndpointType"], s3["routeTableIds"]) == ("Gateway", ROUTE_TABLES)
    endpoint_group = group_id(dev_on, "vpc-endpoints-sg")
    for service, registration in found.items():
        inputs = registration.inputs
        assert inputs["serviceName"] == f"com.amazonaws.us-east-1.{service}"
        assert (inputs["vpcEndpointType"], inputs["privateDnsEnabled"]) == ("Interface", True)
        assert inputs["subnetIds"] == ["subnet-0d3e00000000000a1", "subnet-0d3e00000000000b1"]
        assert inputs["securityGroupIds"] == [endpoint_group]
        assert inputs["tags"]["kiln:stack"] == "dev"


def test_instance_https_goes_only_to_the_endpoints_and_s3s_prefix_list(dev_on: ProgramRun) -> None:
    s3_prefix_list = dev_on.named("vpc-endpoints-s3").outputs["prefixListId"]
    endpoint_group = group_id(dev_on, "vpc-endpoints-sg")
    instance_egress = rules(dev_on, EGRESS, "gateway-instance-sg")

    assert peers(instance_egress) == sorted([(443, endpoint_group), (443, s3_prefix_list)])
    assert all("0.0.0.0/0" not in json.dumps(r) for r in instance_egress)
    # No instance boots before the endpoints it reaches AWS through exist.
    group = dev_on.of_type("aws:autoscaling/group:Group")[0]
    assert {r.urn for r in dev_on.of_type(ENDPOINT)} <= set(group.dependencies)
    # The endpoints admit HTTPS from the instances and the activator, from no address block.
    activator_group = next(r for r in dev_on.of_type(SECURITY_GROUP) if r.name.endswith("-sg") and "activator" in
                           r.inputs["description"]).outputs["id"]
    assert peers(rules(dev_on, INGRESS, "vpc-endpoints-sg")) == sorted(
        [(443, group_id(dev_on, "gateway-instance-sg")), (443, activator_group)])
    # The activator, in the same subnets, reaches AWS through the endpoints too.
    activator_egress = [r.inputs for r in dev_on.of_type(EGRESS) if r.inputs["securityGroupId"] == activator_group]
    assert all("cidrIpv4" not in r for r in activator_egress)
    assert (443, endpoint_group) in peers(activator_egress)


def test_without_the_key_instances_keep_https_to_anywhere_and_nothing_else_changes(
        dev_off: ProgramRun, dev_on: ProgramRun) -> None:
    assert dev_off.of_type(ENDPOINT) == []
    assert peers(rules(dev_off, EGRESS, "gateway-instance-sg")) == [(443, "0.0.0.0/0")]
    on_names = {r.name for r in dev_on.registrations}
    off_names = {r.name for r in dev_off.registrations}
    # Off, the instances' and the activator's HTTPS to anywhere; on, the endpoints and the rules to them instead.
    assert sorted(off_names - on_names) == ["fraud-scorer.champion-activator-https-out", "gateway-instances-https-out"]
    assert {name for name in on_names - off_names if not name.startswith("vpc-endpoints")} == {
        "fraud-scorer.champion-activator-to-endpoints", "fraud-scorer.champion-activator-to-endpoints-out"}
    template_on = base64.b64decode(dev_on.of_type(LAUNCH_TEMPLATE)[0].inputs["userData"]).decode()
    template_off = base64.b64decode(dev_off.of_type(LAUNCH_TEMPLATE)[0].inputs["userData"]).decode()
    assert template_on == template_off  # S3 through the gateway endpoint: the instance is told nothing new


def test_without_route_tables_s3_is_an_interface_endpoint_and_boto3_uses_its_regional_name(example_store: Any) -> None:
    config = json.loads(json.dumps(stack_config("prod", example_store)))
    # Prod's GPU endpoint alone: CPU instances need the S3 gateway endpoint for their packages.
    config["kiln:endpoints"] = [e for e in config["kiln:endpoints"] if e["name"] == "ticket-router"]
    config["kiln:network"]["vpcEndpoints"] = {}
    run = run_program("prod", config, preview=False)
    s3 = endpoints(run)["s3"].inputs

    assert (s3["vpcEndpointType"], s3["privateDnsEnabled"]) == ("Interface", True)
    assert s3["dnsOptions"] == {"privateDnsOnlyForInboundResolverEndpoint": False}
    assert peers(rules(run, EGRESS, "gateway-instance-sg")) == [(443, group_id(run, "vpc-endpoints-sg"))]
    user_data = base64.b64decode(run.of_type(LAUNCH_TEMPLATE)[0].inputs["userData"]).decode()
    assert "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT=regional" in user_data


def test_plan_and_review_show_the_endpoints_cost_in_the_total(example_store: Any, tmp_path: Path) -> None:
    path = write_stack(tmp_path, with_endpoints("dev", example_store, routeTableIds=ROUTE_TABLES), stack="dev")
    plan = build_plan_report(str(path), policies=False).plan
    endpoints_cost = plan.vpc_endpoints.hourly_cost
    served_cost = sum(served.capacity.sizing.hourly_cost_max for served in plan.served_models)

    assert endpoints_cost == pytest.approx(len(plan.vpc_endpoints.interface_services) * 2 * 0.01)
    assert plan.hourly_cost_max == pytest.approx(served_cost + endpoints_cost)
    as_json = json.loads(CliRunner().invoke(main, ["plan", str(path), "--json"]).stdout)
    assert as_json["vpcEndpoints"]["hourlyCost"] == endpoints_cost
    assert as_json["totals"]["hourlyCostMax"] == plan.hourly_cost_max
    console = CliRunner().invoke(main, ["plan", str(path)])
    assert console.exit_code == 0, console.output
    assert f"vpc endpoints: {plan.vpc_endpoints.arithmetic()}" in " ".join(console.output.split())
    review = build_review(str(path))
    markdown = render_markdown(review)
    # The policy pack passes the narrowed stack as it passes the shipped one.
    assert review.policy is not None and review.policy.mandatory == []
    cost = f"${endpoints_cost:,.2f}"
    monthly = f"${endpoints_cost * HOURS_PER_MONTH:,.2f}"
    assert f"| VPC endpoints ({plan.vpc_endpoints.interface_endpoint_count} interface × 2 AZs) | {cost} | {cost} | " \
           f"{monthly} | {monthly} |" in markdown
    assert f"**${plan.hourly_cost_max:,.2f}**" in markdown


def test_prod_with_the_key_on_passes_the_pack_and_every_new_name_fits_aws(example_store: Any) -> None:
    config = with_endpoints("prod", example_store, routeTableIds=ROUTE_TABLES + ["rtb-0d3e00000000000c1"])
    run = run_program("prod", config, preview=False)
    result = check_policies(run, config)

    # The shipped prod stack's one advisory (its CPU model on a GPU), nothing else.
    assert [(v.policy, v.level) for v in result.violations] == [("no-gpu-framework-on-gpu", "advisory")]
    assert (443, "0.0.0.0/0") not in peers(rules(run, EGRESS, "gateway-instance-sg"))
    new = [r for r in run.registrations if r.name.startswith("vpc-endpoints")]
    # The component, 8 interface endpoints and the S3 gateway endpoint, their group, its ingress,
    # the instances' two egress rules.
    assert len(new) == 14
    assert [name_problem(r.type, r.name, r.inputs) for r in new] == [None] * len(new)
    assert all(r.inputs["tags"] == {"kiln:stack": "prod", "kiln:environment": "prod"}
               for r in new if r.type in (ENDPOINT, SECURITY_GROUP))

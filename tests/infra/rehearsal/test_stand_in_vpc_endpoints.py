"""`kiln:network.vpcEndpoints` in the stand-in account: the stack's route tables are made there
like its VPC and subnets, and the provider creates each endpoint as pulumi-aws would, handing
back the S3 prefix list id the instances' egress rule names."""

from __future__ import annotations

from pathlib import Path

from infra.plan.config import read_stack, read_stack_file, resolve_stack_path
from infra.rehearsal.local_aws import local_aws
from infra.rehearsal.provider import StandInProvider
from infra.rehearsal.rehearsal import rehearse, stand_in_references
from models.examples.seed import LocalStore
from tests.conftest import write_stack

ROUTE_TABLES = ["rtb-0d3e00000000000a1", "rtb-0d3e00000000000b1"]


def test_route_tables_are_made_in_the_account_and_the_endpoints_created_there(tmp_path: Path) -> None:
    config = read_stack_file(resolve_stack_path("dev"))
    config["kiln:network"] = {**config["kiln:network"], "vpcEndpoints": {"routeTableIds": ROUTE_TABLES}}
    stack_file = read_stack(str(write_stack(tmp_path, config, stack="dev")))
    with local_aws() as (aws, _):
        ec2 = aws.client("ec2")
        network = stand_in_references(aws, stack_file)["kiln:network"]
        tables = network["vpcEndpoints"]["routeTableIds"]

        assert len(tables) == 2 and set(tables).isdisjoint(ROUTE_TABLES)
        described = ec2.describe_route_tables(RouteTableIds=tables)["RouteTables"]
        assert {t["VpcId"] for t in described} == {network["vpcId"]}
        associated = {a["SubnetId"] for t in described for a in t["Associations"]}
        assert associated == set(network["privateSubnetIds"])

        provider = StandInProvider(aws)
        group = provider.security_group("vpc-endpoints-sg-1a2b3c4", {"description": "endpoints", "vpcId": network["vpcId"]})
        gateway = provider.vpc_endpoint("vpc-endpoints-s3", {
            "vpcId": network["vpcId"], "serviceName": "com.amazonaws.us-east-1.s3", "vpcEndpointType": "Gateway",
            "routeTableIds": tables, "tags": {"kiln:stack": "dev"}})
        interface = provider.vpc_endpoint("vpc-endpoints-ecr-api", {
            "vpcId": network["vpcId"], "serviceName": "com.amazonaws.us-east-1.ecr.api", "vpcEndpointType": "Interface",
            "subnetIds": network["privateSubnetIds"], "securityGroupIds": [group["id"]], "privateDnsEnabled": True,
            "tags": {"kiln:stack": "dev"}})

        s3_prefix_list = ec2.describe_prefix_lists(
            Filters=[{"Name": "prefix-list-name", "Values": ["com.amazonaws.us-east-1.s3"]}])["PrefixLists"][0]
        assert gateway["prefixListId"] == s3_prefix_list["PrefixListId"]
        routes = ec2.describe_route_tables(RouteTableIds=tables[:1])["RouteTables"][0]["Routes"]
        assert {"DestinationPrefixListId": gateway["prefixListId"], "GatewayId": gateway["id"]}.items() <= next(
            r for r in routes if "DestinationPrefixListId" in r).items()
        created = ec2.describe_vpc_endpoints(VpcEndpointIds=[interface["id"]])["VpcEndpoints"][0]
        assert (created["ServiceName"], created["PrivateDnsEnabled"]) == ("com.amazonaws.us-east-1.ecr.api", True)
        assert [g["GroupId"] for g in created["Groups"]] == [group["id"]]
        assert "prefixListId" not in interface
        assert len(provider.skipped) == 1 and "act only on AWS" in provider.skipped[0]


def test_a_stack_without_the_key_gets_no_route_tables() -> None:
    with local_aws() as (aws, _):
        assert "vpcEndpoints" not in stand_in_references(aws, read_stack("dev"))["kiln:network"]


def test_a_stack_with_the_key_on_rehearses_end_to_end(tmp_path: Path, example_store: LocalStore) -> None:
    config = {**read_stack_file(resolve_stack_path("dev")), "kiln:mlflowTrackingUri": example_store.tracking_uri}
    config["kiln:network"] = {**config["kiln:network"], "vpcEndpoints": {"routeTableIds": ROUTE_TABLES}}
    path = write_stack(tmp_path, config, stack="dev")

    report = rehearse(str(path), tmp_path / "work", registry=False)

    assert [step.name for step in report.steps if not step.ok] == []
    assert any("VPC endpoints" in note for note in report.notes)

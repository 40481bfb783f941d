"""The stand-in account judges the serving path's own calls as AWS does: an Allow scoped to
one autoscaling group or one listener's rules permits exactly those (moto alone checks them
against "*" and denies both), and CloudWatch actions go by their IAM name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.components.permissions import trust_policy
from infra.plan.config import read_stack
from infra.rehearsal.local_aws import LocalAws, local_aws
from infra.rehearsal.provider import StandInProvider
from infra.rehearsal.rehearsal import stand_in_references
from tests.fakes import listener_on_new_load_balancer


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[LocalAws, Any]]:
    with local_aws() as stand_in:
        yield stand_in


def _role_credentials(aws: LocalAws, name: str, policy: str) -> Any:
    iam = aws.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_policy("lambda.amazonaws.com"))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="scoped", PolicyDocument=policy)
    return aws.assume_role(arn, name)


def test_scoped_allows_permit_their_resource_and_nothing_else(account: tuple[LocalAws, Any]) -> None:
    aws, enforce = account
    ec2, elbv2, autoscaling = aws.client("ec2"), aws.client("elbv2"), aws.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"]["SubnetId"]
               for i, z in enumerate("ab")]
    template = ec2.create_launch_template(LaunchTemplateName="t", LaunchTemplateData={"ImageId": "ami-12345678"})
    for name in ("mine", "theirs"):
        autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=2, VPCZoneIdentifier=subnets[0],
                                              LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]})
    mine = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["mine"])["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    group = elbv2.create_target_group(Name="tg", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
    forward = [{"Type": "forward", "TargetGroupArn": group}]
    rules = {}
    for name in ("mine", "theirs"):
        listener = listener_on_new_load_balancer(elbv2, f"lb-{name}", subnets)
        rules[name] = (listener, elbv2.create_rule(ListenerArn=listener, Priority=1, Actions=forward, Conditions=[
            {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/x"]}}])["Rules"][0]["RuleArn"])
    own_rules = rules["mine"][0].replace(":listener/", ":listener-rule/", 1) + "/*"
    credentials = _role_credentials(aws, "activator", _policy(
        {"Effect": "Allow", "Action": "autoscaling:SetDesiredCapacity", "Resource": mine},
        {"Effect": "Allow", "Action": "elasticloadbalancing:ModifyRule", "Resource": own_rules},
        {"Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingGroups", "cloudwatch:PutMetricData"], "Resource": "*"},
    ))
    enforce()
    as_role = {service: aws.client(service, credentials) for service in ("autoscaling", "elbv2", "cloudwatch")}

    as_role["autoscaling"].set_desired_capacity(AutoScalingGroupName="mine", DesiredCapacity=1)
    as_role["elbv2"].modify_rule(RuleArn=rules["mine"][1], Actions=forward)
    as_role["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["theirs"])
    as_role["cloudwatch"].put_metric_data(Namespace="Kiln/Serving", MetricData=[{"MetricName": "InFlightRequests", "Value": 1}])
    with pytest.raises(ClientError, match="AccessDenied"):
        as_role["autoscaling"].set_desired_capacity(AutoScalingGroupName="theirs", DesiredCapacity=1)
    with pytest.raises(ClientError, match="AccessDenied"):
        as_role["elbv2"].modify_rule(RuleArn=rules["theirs"][1], Actions=forward)
    with pytest.raises(ClientError, match="AccessDenied"):
        as_role["elbv2"].describe_rules(ListenerArn=rules["mine"][0])


def test_what_the_stack_references_but_does_not_create_is_made_in_the_account(account: tuple[LocalAws, Any]) -> None:
    """prod names its VPC, three private and two public subnets and an ACM certificate: none
    exist in the stand-in account, so the rehearsal makes equivalents and plans with them."""
    aws, _ = account
    stack_file = read_stack("prod")

    replaced = stand_in_references(aws, stack_file)

    network = replaced["kiln:network"]
    subnets = aws.client("ec2").describe_subnets(SubnetIds=network["privateSubnetIds"] + network["publicSubnetIds"])["Subnets"]
    assert len(network["privateSubnetIds"]) == len(stack_file.config.network.private_subnet_ids) == 3
    assert len(network["publicSubnetIds"]) == 2
    assert {s["VpcId"] for s in subnets} == {network["vpcId"]}
    assert len({s["AvailabilityZone"] for s in subnets if s["SubnetId"] in network["privateSubnetIds"]}) == 3
    certificate = replaced["kiln:gateway"]["certificateArn"]
    assert aws.client("acm").describe_certificate(CertificateArn=certificate)["Certificate"]["CertificateArn"] == certificate
    assert replaced["kiln:gateway"]["internetFacing"] == stack_file.raw["kiln:gateway"]["internetFacing"]


def test_a_warm_pool_is_put_on_its_group_and_the_rehearsal_says_what_moto_leaves_out(
        account: tuple[LocalAws, Any]) -> None:
    aws, _ = account
    ec2, autoscaling = aws.client("ec2"), aws.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    template = ec2.create_launch_template(LaunchTemplateName="router-lt-1a2b3c4", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"})["LaunchTemplate"]["LaunchTemplateId"]
    provider = StandInProvider(aws)

    provider.group("router-asg-1a2b3c4", {
        "launchTemplate": {"id": template}, "minSize": 2, "maxSize": 8, "vpcZoneIdentifiers": [subnet],
        "warmPool": {"minSize": 1, "poolState": "Stopped", "instanceReusePolicy": {"reuseOnScaleIn": True}}})

    pool = autoscaling.describe_warm_pool(AutoScalingGroupName="router-asg-1a2b3c4")["WarmPoolConfiguration"]
    assert (pool["MinSize"], pool["PoolState"], pool["InstanceReusePolicy"]) == (1, "Stopped", {"ReuseOnScaleIn": True})
    assert any("warm pool of router-asg-1a2b3c4" in line for line in provider.skipped)

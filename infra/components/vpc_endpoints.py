"""VPC endpoints for what the instances call, and the instances' HTTPS egress narrowed to them.

With private DNS on, the services' regional names resolve to the endpoints' addresses in the
private subnets, so the AWS CLI, Docker and boto3 on an instance reach them unchanged. The
instances may then send HTTPS only to the endpoints' security group and, with an S3 gateway
endpoint, to S3's prefix list (the route the gateway endpoint adds): no 0.0.0.0/0.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.security_rules import allow_tcp
from infra.plan.vpc_endpoints import VpcEndpointsPlan

HTTPS = 443


class VpcEndpoints(pulumi.ComponentResource):
    """Interface endpoints (private DNS) in the private subnets behind one security group that
    admits HTTPS from the instances only, and S3 as a gateway endpoint in the given route tables
    or else as one more interface endpoint."""

    def __init__(
        self,
        name: str,
        plan: VpcEndpointsPlan,
        vpc_id: str,
        instances: aws.ec2.SecurityGroup,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kiln:network:VpcEndpoints", name, {"services": list(plan.interface_services)}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=vpc_id, description="Kiln VPC endpoints: HTTPS from the serving instances only",
            tags=tags, opts=child,
        )
        self.admit(f"{name}-from-instances", instances, child)
        self.endpoints = {service: self._interface(name, plan, service, vpc_id, tags, child)
                          for service in plan.interface_services}
        if plan.s3_gateway:
            self.s3 = aws.ec2.VpcEndpoint(
                f"{name}-s3", vpc_id=vpc_id, service_name=plan.service_name("s3"), vpc_endpoint_type="Gateway",
                route_table_ids=plan.route_table_ids, tags=tags, opts=child,
            )
            # S3's addresses, as the route the gateway endpoint adds to the route tables names them.
            allow_tcp(aws.vpc.SecurityGroupEgressRule, f"{name}-instances-to-s3", instances, HTTPS, child,
                      prefix_list_id=self.s3.prefix_list_id)
        else:
            # Private DNS for S3's regional names from inside the VPC too: with no gateway
            # endpoint there is nothing to answer for them "only for the inbound resolver".
            self.s3 = self._interface(name, plan, "s3", vpc_id, tags, child,
                                      dns_options={"private_dns_only_for_inbound_resolver_endpoint": False})
        self.register_outputs({"securityGroupId": self.security_group.id})

    def admit(self, rule_name: str, clients: aws.ec2.SecurityGroup, opts: pulumi.ResourceOptions) -> None:
        """Let `clients` call the endpoints over HTTPS: in on the endpoints' group, out on theirs."""
        allow_tcp(aws.vpc.SecurityGroupIngressRule, rule_name, self.security_group, HTTPS, opts,
                  referenced_security_group_id=clients.id)
        allow_tcp(aws.vpc.SecurityGroupEgressRule, f"{rule_name}-out", clients, HTTPS, opts,
                  referenced_security_group_id=self.security_group.id)

    def _interface(self, name: str, plan: VpcEndpointsPlan, service: str, vpc_id: str, tags: dict[str, str],
                   opts: pulumi.ResourceOptions, **extra: object) -> aws.ec2.VpcEndpoint:
        return aws.ec2.VpcEndpoint(
            f"{name}-{service.replace('.', '-')}", vpc_id=vpc_id, service_name=plan.service_name(service),
            vpc_endpoint_type="Interface", subnet_ids=plan.subnet_ids, security_group_ids=[self.security_group.id],
            private_dns_enabled=True, tags=tags, opts=opts, **extra,
        )

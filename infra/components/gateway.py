"""The gateway: one Application Load Balancer in front of every endpoint of the stack."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.components.artifact_store import ACCESS_LOG_PREFIX, AccessLogStore
from infra.components.security_rules import allow_tcp
from infra.plan.stack import GatewayPlan
from runtime.contract import RUNTIME_PORT

# TLS 1.3 with TLS 1.2 fallback: the AWS-recommended policy for new listeners.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
NOT_FOUND_BODY = json.dumps({"error_code": "ENDPOINT_NOT_FOUND", "message": "no serving endpoint at this path"})


class Gateway(pulumi.ComponentResource):
    """ALB (internal unless internet-facing), its security groups and listener.

    Instances accept traffic only from the ALB's security group, on the runtime port.
    With a certificate the listener is HTTPS and port 80 only redirects to it.
    """

    def __init__(
        self, name: str, plan: GatewayPlan, vpc_id: str, tags: dict[str, str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("kiln:gateway:Gateway", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg", vpc_id=vpc_id, description="Kiln gateway: clients to the load balancer", tags=tags, opts=child
        )
        self.instance_security_group = aws.ec2.SecurityGroup(
            f"{name}-instance-sg",
            vpc_id=vpc_id,
            description="Kiln serving instances: runtime port from the gateway only",
            tags=tags,
            opts=child,
        )
        alb, instances = self.security_group, self.instance_security_group
        ingress, egress = aws.vpc.SecurityGroupIngressRule, aws.vpc.SecurityGroupEgressRule
        for index, cidr in enumerate(plan.ingress_cidrs):
            peer = {"cidr_ipv6": cidr} if ":" in cidr else {"cidr_ipv4": cidr}
            for port in sorted({plan.listener_port, 80}):
                allow_tcp(ingress, f"{name}-alb-in-{port}-{index}", alb, port, child, **peer)
        allow_tcp(egress, f"{name}-alb-to-instances", alb, RUNTIME_PORT, child, referenced_security_group_id=instances.id)
        allow_tcp(ingress, f"{name}-instances-from-alb", instances, RUNTIME_PORT, child, referenced_security_group_id=alb.id)
        if plan.instance_https_anywhere:
            # Instances reach ECR, S3 and CloudWatch over HTTPS (through a NAT gateway or VPC endpoints
            # the VPC has); with the stack's own endpoints, those admit them (infra/components/vpc_endpoints.py).
            allow_tcp(egress, f"{name}-instances-https-out", instances, 443, child, cidr_ipv4="0.0.0.0/0")
        logs = AccessLogStore(f"{name}-access-logs", plan.region, tags, opts=child) if plan.access_logs else None
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=plan.load_balancer_name,
            load_balancer_type="application",
            internal=plan.internal,
            subnets=plan.subnet_ids,
            security_groups=[self.security_group.id],
            idle_timeout=plan.idle_timeout_seconds,
            drop_invalid_header_fields=True,
            enable_deletion_protection=plan.deletion_protection,
            access_logs={"bucket": logs.bucket.bucket, "prefix": ACCESS_LOG_PREFIX, "enabled": True} if logs else None,
            tags=tags,
            # ELB checks that it may write to the bucket when logging is turned on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs.policy] if logs else []),
        )
        not_found = {"type": "fixed-response", "fixed_response": {"content_type": "application/json", "message_body": NOT_FOUND_BODY, "status_code": "404"}}
        if plan.certificate_arn:
            self.listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.load_balancer.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=SSL_POLICY,
                certificate_arn=plan.certificate_arn,
                default_actions=[not_found],
                tags=tags,
                opts=child,
            )
            aws.lb.Listener(
                f"{name}-http-redirect",
                load_balancer_arn=self.load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[{"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}],
                tags=tags,
                opts=child,
            )
            scheme = "https"
        else:
            self.listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=self.load_balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[not_found],
                tags=tags,
                opts=child,
            )
            scheme = "http"
        self.base_url = self.load_balancer.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.register_outputs({"dnsName": self.load_balancer.dns_name, "baseUrl": self.base_url})

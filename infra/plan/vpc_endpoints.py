"""Which VPC endpoints a stack's instances need, and what they cost.

With `kiln:network.vpcEndpoints` on, instances reach AWS only through endpoints in their own
subnets, so the stack needs one for every service anything on an instance calls, and no more
(each interface endpoint is billed per Availability Zone and hour). What calls what:

- the user data: `aws ecr get-login-password` (ecr.api), `docker pull` (ecr.dkr, and S3, where
  ECR keeps image layers), Docker's awslogs driver (logs), `dnf install docker` on a CPU AMI
  (S3: the Amazon Linux 2023 repositories), `aws autoscaling complete-lifecycle-action`;
- the runtime: the model's files and inference-table rows (S3), the in-flight metric
  (monitoring, with `highResolutionMetric`), token hashes and secret variables (secretsmanager
  or ssm, by reference);
- the SSM agent, with `sessionManager`: ssm, ssmmessages, ec2messages;
- a scale-to-zero served model's activator, a Lambda function in the same subnets whose calls
  private DNS sends to these endpoints too: autoscaling, elasticloadbalancing, ec2, ssm.

Credentials come from IMDS, which no security group filters; nothing calls STS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.plan.catalog import HOURS_PER_MONTH, INTERFACE_ENDPOINT_AZ_HOURLY_USD
from infra.plan.config import StackConfig
from runtime.secrets import parse_reference

if TYPE_CHECKING:  # the stack plan holds this one
    from infra.plan.stack import ServedModelPlan


# Every interface endpoint's service, in the order the plan lists them, and why it is there.
ALWAYS = {
    "ecr.api": "ECR registry login (aws ecr get-login-password)",
    "ecr.dkr": "image pull (docker pull)",
    "logs": "the runtime's log stream (Docker's awslogs driver)",
    "autoscaling": "the launch lifecycle action (aws autoscaling complete-lifecycle-action)",
}
IN_FLIGHT_METRIC = {"monitoring": "the in-flight metric (cloudwatch:PutMetricData)"}
SESSION_MANAGER = {
    "ssm": "the SSM agent's registration (Session Manager)",
    "ssmmessages": "Session Manager's shell channels",
    "ec2messages": "the SSM agent's message polling",
}
SECRETS = {
    "secretsmanager": "token hashes and secret variables in Secrets Manager",
    "ssm": "secret variables in SSM Parameter Store",
}
ACTIVATOR = {
    "autoscaling": "the activator raising its group",
    "elasticloadbalancing": "the activator's target health and listener rule",
    "ec2": "the activator finding its instance",
    "ssm": "the activator's readiness parameter",
}


@dataclass(frozen=True)
class VpcEndpointsPlan:
    """The endpoints a stack creates in its private subnets (one network interface per subnet,
    each in its own Availability Zone) and, for S3, in its route tables."""

    region: str
    subnet_ids: list[str]
    # Interface endpoint services (`ecr.api`, …) and why each is needed.
    interface_services: dict[str, str]
    # S3 through a gateway endpoint routed from these tables; empty: an S3 interface endpoint.
    route_table_ids: list[str]

    def service_name(self, service: str) -> str:
        return f"com.amazonaws.{self.region}.{service}"

    @property
    def s3_gateway(self) -> bool:
        return bool(self.route_table_ids)

    @property
    def interface_endpoint_count(self) -> int:
        return len(self.interface_services) + (0 if self.s3_gateway else 1)

    @property
    def hourly_cost(self) -> float:
        """Interface endpoints × Availability Zones (one per private subnet) × the hourly price."""
        return round(self.interface_endpoint_count * len(self.subnet_ids) * INTERFACE_ENDPOINT_AZ_HOURLY_USD, 4)

    @property
    def monthly_cost(self) -> float:
        return round(self.hourly_cost * HOURS_PER_MONTH, 2)

    def arithmetic(self) -> str:
        s3 = "S3 through a gateway endpoint (free)" if self.s3_gateway else "S3 through an interface endpoint"
        return (f"{self.interface_endpoint_count} interface endpoints × {len(self.subnet_ids)} AZs × "
                f"${INTERFACE_ENDPOINT_AZ_HOURLY_USD}/h = ${self.hourly_cost:.2f}/h; {s3}; "
                f"services: {', '.join(self.interface_services)}")


def _secret_services(served: ServedModelPlan) -> set[str]:
    """The services holding what this served model's instances read at start: a token-hash
    secret Kiln creates lives in Secrets Manager."""
    services = {parse_reference(reference).service for reference in served.secret_references()}
    if served.auth is not None and served.auth.token_hashes is None:
        services.add("secretsmanager")
    return services


def plan_vpc_endpoints(config: StackConfig, served_models: list[ServedModelPlan]) -> VpcEndpointsPlan | None:
    """The stack's VPC endpoints, or None when `kiln:network.vpcEndpoints` is off."""
    endpoints = config.network.endpoints
    if endpoints is None:
        return None
    services = dict(ALWAYS)
    if any(served.scaling.high_resolution_metric for served in served_models):
        services.update(IN_FLIGHT_METRIC)
    if config.session_manager:
        services.update(SESSION_MANAGER)
    needed = set().union(*(_secret_services(served) for served in served_models))
    services.update({service: why for service, why in SECRETS.items() if service in needed and service not in services})
    if any(served.scale_to_zero for served in served_models):
        services.update({service: why for service, why in ACTIVATOR.items() if service not in services})
    return VpcEndpointsPlan(
        region=config.region,
        subnet_ids=config.network.private_subnet_ids,
        interface_services=services,
        route_table_ids=endpoints.route_table_ids,
    )

"""A serving endpoint: its served models and the gateway route that splits traffic between them."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.activator import activators_for, route_target_group
from infra.components.foundation import Foundation, Release
from infra.components.gateway import Gateway
from infra.components.served_model import ServedModel
from infra.plan.stack import EndpointPlan


class Endpoint(pulumi.ComponentResource):
    """`/serving-endpoints/<name>/invocations` forwarded to its served models by route weight.

    A served model at 0 % keeps its instances (at its minimum) and its target group, so
    shifting traffic to it is a weight change, not a deployment.
    """

    def __init__(
        self,
        name: str,
        plan: EndpointPlan,
        releases: dict[str, Release],
        foundation: Foundation,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kiln:serving:Endpoint", name, None, opts)
        gateway = foundation.gateway
        self.token_secret = token_hash_secret(name, plan, foundation.kms_key_arn, self) if plan.creates_token_secret else None
        # The first version's ARN (the secret's): instances that read it wait for a value to exist.
        token_secret_arn = self.token_secret.arn if self.token_secret else None
        self.served_models = {
            served.name: ServedModel(
                served.logical_name, served, releases[served.name], foundation, token_secret_arn,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for served in plan.served_models
        }
        # Scale-to-zero served models are reached through an activator while they have no
        # instance. The rule forwards to the activators' target groups and the activators may
        # rewrite only this rule, so its ARN reaches them once the rule exists (no cycle: the
        # rule waits for their target groups, their role policies wait for the rule).
        route_arn, resolve_route_arn = pulumi.deferred_output()
        try:
            self.activators = activators_for(self.served_models, plan.served_models, foundation, route_arn, parent=self)
            self.route = self._route(name, plan, gateway)
        except Exception as error:
            # Settle what waits for the rule's ARN, or the program would hang instead of failing.
            resolve_route_arn(pulumi.Output.from_input(_never_created(error)))
            raise
        resolve_route_arn(self.route.arn)
        self.url = pulumi.Output.concat(gateway.base_url, plan.path)
        self.register_outputs({"url": self.url, **({"tokenHashSecretArn": token_secret_arn} if token_secret_arn else {})})

    def _route(self, name: str, plan: EndpointPlan, gateway: Gateway) -> aws.lb.ListenerRule:
        """The endpoint's path, forwarded to its served models (or their activators) by weight."""
        return aws.lb.ListenerRule(
            f"{name}-route",
            listener_arn=gateway.listener.arn,
            priority=plan.listener_priority,
            conditions=[{"path_pattern": {"values": [plan.path]}}],
            actions=[
                {
                    "type": "forward",
                    "forward": {
                        "target_groups": [
                            {
                                "arn": route_target_group(self.served_models[served.name], self.activators.get(served.name)),
                                "weight": served.traffic_percentage,
                            }
                            for served in plan.served_models
                        ],
                    },
                }
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )


# Until a team puts hashes in it, the secret the stack creates holds none: the endpoint then
# answers 401 to everything but /ping and /health (auth is never off by omission).
EMPTY_TOKEN_HASHES = "# sha256 hex digests of the bearer tokens this endpoint accepts, one per line\n"


def token_hash_secret(name: str, plan: EndpointPlan, kms_key_arn: str | None,
                      parent: pulumi.Resource) -> aws.secretsmanager.SecretVersion:
    """The endpoint's token-hash secret's first version, which accepts no token (its `arn` is
    the secret's, and what depends on it waits until the secret has a value to read).

    The version's value is Pulumi's only at creation (ignore_changes): teams rotate tokens
    with `aws secretsmanager put-secret-value`, and the next `pulumi up` leaves them be.
    """
    child = pulumi.ResourceOptions(parent=parent)
    secret = aws.secretsmanager.Secret(
        f"{name}-token-hashes",
        description=f"Kiln: sha256 hashes of the bearer tokens {plan.path} accepts, one per line",
        kms_key_id=kms_key_arn,
        tags={k: v for k, v in plan.served_models[0].tags.items() if k != "kiln:served-model"},
        opts=child,
    )
    return aws.secretsmanager.SecretVersion(
        f"{name}-token-hashes-initial",
        secret_id=secret.id,
        secret_string=EMPTY_TOKEN_HASHES,
        opts=pulumi.ResourceOptions(parent=parent, ignore_changes=["secretString"]),
    )


async def _never_created(error: Exception) -> str:
    raise error

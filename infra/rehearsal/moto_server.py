"""moto's server for the rehearsal, told which resource a request acts on.

moto authorizes S3, IAM, SQS and STS requests against the resource they name; for every
other service it checks policies against "*", so an Allow scoped to one autoscaling group
or one listener rule (as Kiln's roles are) never matches and moto denies what AWS allows.
For the calls on the serving path that AWS authorizes per resource (the Service
Authorization Reference lists `autoScalingGroup` for autoscaling actions that name a group,
and `listener-rule` for ModifyRule/DeleteRule), this names the resource before moto checks.
Describe calls stay "*", as AWS's do: they support no resource-level permissions.

moto also names an action by the request's signing name, which for CloudWatch is
`monitoring`; IAM's service prefix is `cloudwatch` (`cloudwatch:PutMetricData`), so every
correct CloudWatch policy would be denied. The action is given its IAM name.

Run as `python -m infra.rehearsal.moto_server` with moto.server's own arguments.
"""

from __future__ import annotations

from moto.autoscaling.responses import AutoScalingResponse
from moto.elbv2.responses import ELBV2Response
from moto.iam.access_control import IAMRequestBase
from moto.server import main

# Signing names that differ from the IAM service prefix, on the serving path.
IAM_PREFIX_OF_SIGNING_NAME = {"monitoring": "cloudwatch"}

RULE_ACTIONS = {"ModifyRule", "DeleteRule"}


def _autoscaling_group(self: AutoScalingResponse) -> str:
    name = self._get_param("AutoScalingGroupName")
    group = self.autoscaling_backend.autoscaling_groups.get(name) if name else None
    if group is None or self._get_action().startswith("Describe"):
        return "*"
    return group.arn


def _listener_rule(self: ELBV2Response) -> str:
    return self._get_param("RuleArn") if self._get_action() in RULE_ACTIONS else "*"


_moto_request_init = IAMRequestBase.__init__


def _request_with_iam_action_name(self: IAMRequestBase, *args: object, **kwargs: object) -> None:
    _moto_request_init(self, *args, **kwargs)
    service, _, action = self._action.partition(":")
    self._action = f"{IAM_PREFIX_OF_SIGNING_NAME.get(service, service)}:{action}"


IAMRequestBase.__init__ = _request_with_iam_action_name
AutoScalingResponse._determine_resource = _autoscaling_group
ELBV2Response._determine_resource = _listener_rule

if __name__ == "__main__":
    main()

"""moto's server for the rehearsal, told which resource a request acts on.

moto authorizes S3, IAM, SQS and STS requests against the resource they name; for every
other service it checks policies against "*", so an Allow scoped to one autoscaling group
or one listener rule (as Kiln's roles are) never matches and moto denies what AWS allows.
For the calls on the serving path that AWS authorizes per resource (the Service
Authorization Reference lists `autoScalingGroup` for autoscaling actions that name a group,
`listener-rule` for ModifyRule/DeleteRule, `Secret` for GetSecretValue and `parameter` for
GetParameter), this names the resource before moto checks: an instance role scoped to its own
secrets then reads those and is denied any other, as on AWS.
Describe calls stay "*", as AWS's do: they support no resource-level permissions.

moto also reads a policy's ARN patterns as regular expressions with `*` made `.*`, so IAM's
other wildcard, `?` (one character: the `-??????` AWS documents for a secret's random
suffix), breaks its matcher; patterns are matched here as IAM matches them.

moto also names an action by the request's signing name, which for CloudWatch is
`monitoring`; IAM's service prefix is `cloudwatch` (`cloudwatch:PutMetricData`), so every
correct CloudWatch policy would be denied. The action is given its IAM name.

moto 5.2 has no instance refresh API. The server records the refreshes StartInstanceRefresh
and RollbackInstanceRefresh ask for and answers DescribeInstanceRefreshes with them, newest
first, so `kiln status` reads a refresh in progress as it would on AWS; it replaces no
instance and never completes a refresh on its own.

Run as `python -m infra.rehearsal.moto_server` with moto.server's own arguments.
"""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Any

from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult
from moto.elbv2.responses import ELBV2Response
from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase
from moto.secretsmanager.exceptions import SecretNotFoundException
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.server import main
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.ssm.utils import parameter_arn

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


# Instance refreshes by (account, region, group name), newest first.
_REFRESHES: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
ACTIVE_REFRESH = {"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"}


class InstanceRefreshInProgress(AutoscalingClientError):
    code = "InstanceRefreshInProgress"
    message = "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh."


class ActiveInstanceRefreshNotFound(AutoscalingClientError):
    code = "ActiveInstanceRefreshNotFound"
    message = "No in-progress or pending Instance Refresh found for this Auto Scaling group."


def _refreshes(self: AutoScalingResponse) -> list[dict[str, Any]]:
    name = self._get_param("AutoScalingGroupName")
    if name not in self.autoscaling_backend.autoscaling_groups:
        raise ValidationError(f"AutoScalingGroup name not found - {name}")
    return _REFRESHES.setdefault((self.current_account, self.region, name), [])


def _start_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    refreshes = _refreshes(self)
    if refreshes and refreshes[0]["Status"] in ACTIVE_REFRESH:
        raise InstanceRefreshInProgress()
    name = self._get_param("AutoScalingGroupName")
    group = self.autoscaling_backend.autoscaling_groups[name]
    refresh = {
        "InstanceRefreshId": str(uuid.uuid4()), "AutoScalingGroupName": name, "Status": "InProgress",
        "StartTime": datetime.datetime.now(datetime.UTC), "PercentageComplete": 0,
        "InstancesToUpdate": len(group.instance_states), "Preferences": self._get_param("Preferences") or {},
    }
    refreshes.insert(0, refresh)
    return ActionResult({"InstanceRefreshId": refresh["InstanceRefreshId"]})


def _rollback_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    refreshes = _refreshes(self)
    if not refreshes or refreshes[0]["Status"] not in ACTIVE_REFRESH:
        raise ActiveInstanceRefreshNotFound()
    refresh = refreshes[0]
    refresh["Status"] = "RollbackInProgress"
    refresh["RollbackDetails"] = {"RollbackReason": "Rollback initiated by user",
                                  "RollbackStartTime": datetime.datetime.now(datetime.UTC),
                                  "PercentageCompleteOnRollback": 0}
    return ActionResult({"InstanceRefreshId": refresh["InstanceRefreshId"]})


def _describe_instance_refreshes(self: AutoScalingResponse) -> ActionResult:
    return ActionResult({"InstanceRefreshes": list(_refreshes(self))})


def _secret(self: SecretsManagerResponse) -> str:
    """The secret's full ARN (a role's `-??????` pattern must match its six-character suffix)."""
    secret_id = self._get_param("SecretId")
    try:
        return self.backend.describe_secret(secret_id).arn if secret_id else "*"
    except SecretNotFoundException:
        return "*"


def _parameter(self: SimpleSystemManagerResponse) -> str:
    name = self._get_param("Name")
    if not name or self._get_action() != "GetParameter":
        return "*"
    return name if name.startswith("arn:") else parameter_arn(self.current_account, self.region, name)


def _iam_match(pattern: str, string: str) -> re.Match[str] | None:
    """IAM's wildcards: `*` any run of characters, `?` any one; everything else literal."""
    translated = "".join({"*": ".*", "?": "."}.get(char, re.escape(char)) for char in pattern)
    return re.match(f"^{translated}$", string, flags=re.DOTALL)


_moto_request_init = IAMRequestBase.__init__


def _request_with_iam_action_name(self: IAMRequestBase, *args: object, **kwargs: object) -> None:
    _moto_request_init(self, *args, **kwargs)
    service, _, action = self._action.partition(":")
    self._action = f"{IAM_PREFIX_OF_SIGNING_NAME.get(service, service)}:{action}"


IAMRequestBase.__init__ = _request_with_iam_action_name
AutoScalingResponse._determine_resource = _autoscaling_group
ELBV2Response._determine_resource = _listener_rule
AutoScalingResponse.start_instance_refresh = _start_instance_refresh
AutoScalingResponse.rollback_instance_refresh = _rollback_instance_refresh
AutoScalingResponse.describe_instance_refreshes = _describe_instance_refreshes
SecretsManagerResponse._determine_resource = _secret
IAMPolicyStatement._match = staticmethod(_iam_match)
SimpleSystemManagerResponse._determine_resource = _parameter

if __name__ == "__main__":
    main()

"""What one served model looks like live, and the one word that sums it up in Databricks'
terms (READY, NOT_READY, UPDATING, SCALED_TO_ZERO).

Pure data, no boto3: infra/operate/live.py fills it from the account, `kiln status` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic.alias_generators import to_camel


class ServingState(StrEnum):
    READY = "READY"
    NOT_READY = "NOT_READY"
    UPDATING = "UPDATING"
    SCALED_TO_ZERO = "SCALED_TO_ZERO"


# A scaled-to-zero served model answers too: its activator holds the request and wakes a group
# (docs/scaling.md), as Databricks reports a scaled-to-zero endpoint ready.
ANSWERING = frozenset({ServingState.READY, ServingState.SCALED_TO_ZERO})

# DescribeInstanceRefreshes statuses of a refresh that is still changing the group
# (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstanceRefresh.html).
ACTIVE_REFRESH_STATUSES = frozenset({"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"})
ROLLED_BACK_STATUSES = frozenset({"RollbackInProgress", "RollbackSuccessful", "RollbackFailed"})


@dataclass(frozen=True)
class TargetHealth:
    target: str
    state: str
    reason: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class TargetGroupHealth:
    name: str
    targets: list[TargetHealth]

    @property
    def healthy(self) -> int:
        return sum(1 for target in self.targets if target.state == "healthy")


@dataclass(frozen=True)
class Refresh:
    """The group's latest instance refresh."""

    id: str
    status: str
    percentage_complete: int
    status_reason: str | None = None
    # The next checkpoint it pauses at (percent replaced), None past the last one.
    next_checkpoint: int | None = None
    rollback_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_REFRESH_STATUSES

    @property
    def rolled_back(self) -> bool:
        return self.status in ROLLED_BACK_STATUSES


@dataclass(frozen=True)
class Activity:
    time: datetime
    status: str
    description: str
    cause: str | None = None


@dataclass(frozen=True)
class GroupState:
    """One autoscaling group as DescribeAutoScalingGroups and its neighbours report it."""

    name: str
    desired: int
    minimum: int
    maximum: int
    in_service: int
    pending: int
    warm: int
    target_groups: list[TargetGroupHealth]
    refresh: Refresh | None
    alarms_in_alarm: list[tuple[str, str]]
    activities: list[Activity]
    model: str | None
    image: str | None

    @property
    def healthy(self) -> int:
        return sum(group.healthy for group in self.target_groups)


@dataclass(frozen=True)
class ServedModelStatus:
    endpoint: str
    served_model: str
    state: ServingState
    reasons: list[str]
    group: GroupState | None = None

    def as_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "servedModel": self.served_model, "state": self.state.value,
                "reasons": self.reasons, "group": _jsonable(asdict(self.group)) if self.group else None}


@dataclass(frozen=True)
class StackStatus:
    stack: str
    region: str
    served_models: list[ServedModelStatus] = field(default_factory=list)

    @property
    def answering(self) -> bool:
        return all(served.state in ANSWERING for served in self.served_models)

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "region": self.region, "answering": self.answering,
                "servedModels": [served.as_json() for served in self.served_models]}


def serving_state(group: GroupState, scale_to_zero: bool) -> tuple[ServingState, list[str]]:
    """The word for a deployed group, and why: a refresh in progress is UPDATING (the old
    instances keep serving), a scale-to-zero group with nothing desired is SCALED_TO_ZERO, one
    healthy target is READY, else NOT_READY with each unhealthy target's reason. A scale-to-zero
    group waking up (its instances launching or registering, none failing) is still
    SCALED_TO_ZERO: its route stays on the activator, which holds requests until one is healthy."""
    refresh = group.refresh
    if refresh is not None and refresh.active:
        checkpoint = f", next checkpoint at {refresh.next_checkpoint} %" if refresh.next_checkpoint else ""
        why = f"; {refresh.rollback_reason}" if refresh.rollback_reason else ""
        return ServingState.UPDATING, [f"instance refresh {refresh.status} {refresh.percentage_complete} %{checkpoint}{why}"]
    if group.desired == 0 and scale_to_zero:
        return ServingState.SCALED_TO_ZERO, ["no instance desired: the activator wakes the group on the next request"]
    if group.desired == 0:
        return ServingState.NOT_READY, ["desired capacity is 0 and scaleToZeroEnabled is off, so no activator wakes the "
                                        "group: set its desired capacity back to its minimum"]
    if group.healthy:
        return ServingState.READY, []
    if scale_to_zero and all(t.state == "initial" for tg in group.target_groups for t in tg.targets):
        return ServingState.SCALED_TO_ZERO, [
            f"waking: {group.pending} pending, {group.in_service} in service of {group.desired}; the activator holds "
            "requests until one is healthy"]
    reasons = [
        f"{target_group.name}: {target.target} {target.state}"
        + (f" ({target.reason}: {target.description})" if target.reason else "")
        for target_group in group.target_groups
        for target in target_group.targets
    ]
    if not reasons:
        reasons = [f"no target registered yet ({group.in_service} in service, {group.pending} pending of {group.desired})"]
    return ServingState.NOT_READY, reasons


def _jsonable(value: Any) -> Any:
    """Dataclass fields in the camelCase the other `--json` outputs use; times as ISO 8601."""
    if isinstance(value, dict):
        return {to_camel(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value

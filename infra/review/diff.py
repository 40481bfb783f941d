"""What changes between two plans: settings, resources, cost, and what each change restarts.

Settings are compared by name, not list position (endpoints.fraud-scorer.servedModels.
champion.computeType), so reordering a stack file is not a change. Resources are compared
by type and logical name, which is what the Pulumi engine matches on within one project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infra.plan.config import StackConfig
from infra.preview.program import ProgramRun, Registration

# Inputs whose change makes AWS replace the resource instead of updating it (the AWS
# provider marks them ForceNew). Only the types Kiln creates are listed.
REPLACING_INPUTS: dict[str, tuple[str, ...]] = {
    "aws:lb/loadBalancer:LoadBalancer": ("name", "internal", "loadBalancerType"),
    "aws:lb/targetGroup:TargetGroup": ("name", "port", "protocol", "vpcId", "targetType"),
    "aws:s3/bucket:Bucket": ("bucket",),
    "aws:ecr/repository:Repository": ("name",),
    "aws:iam/role:Role": ("name",),
    "aws:autoscaling/group:Group": ("name",),
    "aws:ec2/securityGroup:SecurityGroup": ("name", "vpcId", "description"),
    "aws:lb/listener:Listener": ("loadBalancerArn",),
    # Renaming an inference table replaces its catalog entry; the rows in S3 stay where they are.
    "aws:glue/catalogDatabase:CatalogDatabase": ("name",),
    "aws:glue/catalogTable:CatalogTable": ("name", "databaseName"),
}

# What a change does to running instances, in the words of the rollout it triggers.
ROLLOUT = (
    "new launch template version → instance refresh: new instances launch first (max healthy 200 %), "
    "take traffic only after /ping passes, then old ones drain; auto rollback if they never become ready. "
    "Both configurations are paid for during the transition."
)


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


@dataclass(frozen=True)
class ResourceChange:
    type: str
    name: str
    kind: str  # added | removed | updated | replaced | differs (two different stacks)
    keys: tuple[str, ...]
    note: str = ""


def flatten_settings(config: StackConfig) -> dict[str, Any]:
    """Config as dotted paths, list items keyed by their `name` where they have one."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, list) and value and all(isinstance(v, dict) and ("name" in v or "servedModelName" in v) for v in value):
            for item in value:
                key = item.get("name") or item.get("servedModelName")
                walk(f"{prefix}.{key}", {k: v for k, v in item.items() if k not in ("name", "servedModelName")})
        else:
            flat[prefix] = value

    walk("", config.model_dump(by_alias=True, mode="json", exclude={"region"}) | {"region": config.region})
    return flat


def diff_settings(base: StackConfig, head: StackConfig) -> list[Change]:
    before, after = flatten_settings(base), flatten_settings(head)
    return [
        Change(path, before.get(path), after.get(path))
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    ]


def _changed_keys(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key)))


def _note(before: Registration, registration: Registration, keys: tuple[str, ...]) -> tuple[str, str]:
    replacing = [key for key in keys if key in REPLACING_INPUTS.get(registration.type, ())]
    if replacing:
        return "replaced", f"replaced because {', '.join(replacing)} changed"
    if registration.type == "aws:ec2/launchTemplate:LaunchTemplate" and "imageId" in keys:
        # A pinned AMI bumped in kiln:amis: every group of that compute class rolls.
        return "updated", f"AMI {before.inputs['imageId']} → {registration.inputs['imageId']}: {ROLLOUT}"
    if registration.type == "aws:ec2/launchTemplate:LaunchTemplate":
        return "updated", ROLLOUT
    if registration.type == "aws:autoscaling/group:Group" and {"minSize", "maxSize"} & set(keys):
        return "updated", "group size bounds change in place; no instance restarts"
    if registration.type == "aws:lb/listenerRule:ListenerRule":
        return "updated", "traffic weights change in place, effective within seconds"
    return "updated", "updated in place"


def _stack_neutral(value: Any, stack: str) -> Any:
    """Spell the stack's own name as <stack>, so comparing dev with prod shows what differs
    in substance rather than every tag and derived name."""
    if isinstance(value, dict):
        return {k: _stack_neutral(v, stack) for k, v in value.items()}
    if isinstance(value, list):
        return [_stack_neutral(v, stack) for v in value]
    if isinstance(value, str):
        return re.sub(rf"(?<![a-z0-9]){re.escape(stack)}(?![a-z0-9])", "<stack>", value)
    return value


def diff_resources(base: ProgramRun, head: ProgramRun) -> list[ResourceChange]:
    """Between two versions of one stack: what is added, removed, updated or replaced.
    Between two stacks: what differs (there is no rollout from one stack to another)."""
    same_stack = base.stack == head.stack

    def index(run: ProgramRun) -> dict[tuple[str, str], Registration]:
        # Components are groupings, not AWS resources; their changes show up as settings.
        return {(r.type, r.name): r for r in run.registrations if r.custom}

    before, after = index(base), index(head)
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None:
            changes.append(ResourceChange(key[0], key[1], "added", (), "created" if same_stack else ""))
        elif new is None:
            changes.append(ResourceChange(key[0], key[1], "removed", (), "deleted" if same_stack else ""))
        else:
            keys = _changed_keys(_stack_neutral(old.inputs, base.stack), _stack_neutral(new.inputs, head.stack))
            if keys:
                kind, note = _note(old, new, keys) if same_stack else ("differs", "")
                changes.append(ResourceChange(key[0], key[1], kind, keys, note))
    return changes

"""Wrap Kiln's plain rules as pulumi_policy policies, at the levels of the stack's environment.

The environment comes from the stack config the engine hands the pack process
(PULUMI_CONFIG, `kiln:environment`) and the stack's name, the stricter of the two, so one pack
enforces "no scale to zero" in prod and only advises in dev, and a stack named prod keeps
prod's levels whatever its config says. A `--policy-pack-config` file can still override any level.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import Policy

from policies.rules.rule import (
    Resource,
    ResourceRule,
    Rule,
    StackRule,
    declared_environment,
    level_for,
    levels_environment,
)

PACK_NAME = "kiln"


def stack_environment(environ: Mapping[str, str] = os.environ) -> str:
    """dev, staging or prod: the stricter of the stack's `kiln:environment` and the environment
    its name says; prod when neither says one."""
    try:
        config = json.loads(environ.get("PULUMI_CONFIG") or "{}")
    except json.JSONDecodeError:
        config = {}
    declared = declared_environment(config) if isinstance(config, dict) else None
    return levels_environment(declared, environ.get("PULUMI_STACK", "")).environment


def _schema(rule: Rule) -> PolicyConfigSchema | None:
    return PolicyConfigSchema(properties={k: dict(v) for k, v in rule.config.items()}) if rule.config else None


def _resource_policy(rule: ResourceRule, environment: str) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.checks:
            return
        for message in rule.check(args.resource_type, args.props, args.get_config()):
            report_violation(message, None)

    return ResourceValidationPolicy(validate=validate, **_described(rule, environment))


def _described(rule: Rule, environment: str) -> dict[str, Any]:
    """What the engine shows of a policy, whichever kind it is: name, text, level, config, fix."""
    return {
        "name": rule.id,
        "description": rule.description,
        "enforcement_level": EnforcementLevel(level_for(rule, environment)),
        "config_schema": _schema(rule),
        "remediation_steps": rule.fix,
    }


def _as_resource(resource: Any) -> Resource:
    return Resource(
        type=resource.resource_type,
        urn=resource.urn,
        name=resource.name,
        props=resource.props,
        parent=resource.parent.urn if resource.parent is not None else None,
        property_dependencies={k: tuple(d.urn for d in v) for k, v in resource.property_dependencies.items()},
    )


def _stack_policy(rule: StackRule, environment: str) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources: Sequence[Resource] = [_as_resource(r) for r in args.resources]
        for violation in rule.check(resources, args.get_config()):
            report_violation(violation.message, violation.urn)

    return StackValidationPolicy(validate=validate, **_described(rule, environment))


def policies_for(rules: Sequence[Rule], environment: str) -> list[Policy]:
    """One pulumi_policy policy per rule, at the rule's level for `environment`."""
    return [
        _resource_policy(rule, environment) if isinstance(rule, ResourceRule) else _stack_policy(rule, environment)
        for rule in rules
    ]

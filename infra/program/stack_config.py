"""Read the stack config the way the Pulumi engine hands it to the program.

The CLI passes every `kiln:` value as a string (objects as JSON). Reading them back here
and validating with the same pydantic models as `kiln plan` keeps one path for both.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi

from infra.plan.config import NAMESPACE, StackConfig, parse_stack_config


def stack_config_from_pulumi() -> StackConfig:
    kiln = pulumi.Config(NAMESPACE)
    values: dict[str, Any] = {}
    for field_name, field in StackConfig.model_fields.items():
        key = field.alias or field_name
        raw = pulumi.Config("aws").get("region") if key == "region" else kiln.get(key)
        if raw is None:
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return parse_stack_config(values, f"stacks/Pulumi.{pulumi.get_stack()}.yaml")

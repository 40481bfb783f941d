"""What a rule is: an id, a one-line description, the resource types it reads, a level per
environment and a pure function that returns violation messages saying how to fix them.

Rules never import Pulumi. They read properties as plain `Mapping`/`Sequence` values, so the
same function runs on a dict in a unit test and on pulumi_policy's unknown-checking proxy in
the pack (where touching a value that is unknown during preview raises, and the pack reports
"can't run during preview" instead of a wrong verdict).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["advisory", "mandatory", "disabled"]
ENVIRONMENTS = ("dev", "staging", "prod")
# An unknown or missing environment gets prod's levels: a guardrail fails closed.
STRICTEST_ENVIRONMENT = "prod"
# Where a stack's config declares its environment (the second as a nested `kiln:config` object key).
ENVIRONMENT_KEYS = ("kiln:environment", "kiln:config:environment")

MANDATORY: Mapping[str, Level] = {"dev": "mandatory", "staging": "mandatory", "prod": "mandatory"}
MANDATORY_IN_PROD: Mapping[str, Level] = {"dev": "advisory", "staging": "advisory", "prod": "mandatory"}
# For what only prod needs (an on-call to alert): dev and staging stacks are not asked.
ONLY_IN_PROD: Mapping[str, Level] = {"dev": "disabled", "staging": "disabled", "prod": "mandatory"}
ADVISORY: Mapping[str, Level] = {"dev": "advisory", "staging": "advisory", "prod": "advisory"}

Props = Mapping[str, Any]
Config = Mapping[str, Any]
ResourceCheck = Callable[[Props, Config], list[str]]


@dataclass(frozen=True)
class Resource:
    """One resource as a stack rule sees it: the engine's final state (outputs) and its links."""

    type: str
    urn: str
    name: str
    props: Props
    parent: str | None = None
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def depends_through(self, prop: str) -> Sequence[str]:
        """URNs this resource's `prop` was computed from (e.g. a rule's `securityGroupId`).

        Links by dependency, not by id, because ids are unknown during preview while the
        dependency graph is always known.
        """
        return self.property_dependencies.get(prop, ())


@dataclass(frozen=True)
class Violation:
    message: str
    urn: str | None = None


StackCheck = Callable[[Sequence[Resource], Config], list[Violation]]


@dataclass(frozen=True)
class ResourceRule:
    """Checked once per resource of the listed types, on its inputs (as `pulumi preview` does)."""

    id: str
    description: str
    levels: Mapping[str, Level]
    checks: Mapping[str, ResourceCheck]
    fix: str
    # JSON Schema per config property, each with a `default` (see docs/policies.md).
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def resource_types(self) -> tuple[str, ...]:
        return tuple(self.checks)

    def check(self, resource_type: str, props: Props, config: Config | None = None) -> list[str]:
        check = self.checks.get(resource_type)
        return check(props, with_defaults(self.config, config)) if check else []


@dataclass(frozen=True)
class StackRule:
    """Checked once per stack, on every resource's final state, for rules that span resources."""

    id: str
    description: str
    levels: Mapping[str, Level]
    resource_types: tuple[str, ...]
    run: StackCheck
    fix: str
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def check(self, resources: Sequence[Resource], config: Config | None = None) -> list[Violation]:
        return self.run(resources, with_defaults(self.config, config))


Rule = ResourceRule | StackRule


def with_defaults(schema: Mapping[str, Mapping[str, Any]], config: Config | None) -> dict[str, Any]:
    """Schema defaults under the given config: the engine sends defaults too, a unit test may not."""
    values = {name: spec["default"] for name, spec in schema.items() if "default" in spec}
    values.update(config or {})
    return values


@dataclass(frozen=True)
class LevelsEnvironment:
    """Whose levels a stack's policies run at, and why (`kiln check` prints the reason)."""

    environment: str
    reason: str


def environment_of_stack_name(stack: str) -> str | None:
    """`prod` and `prod-eu` name prod; `feature-x` names no environment."""
    first = stack.split("-", 1)[0]
    return stack if stack in ENVIRONMENTS else first if first in ENVIRONMENTS else None


def declared_environment(config: Mapping[str, Any]) -> str | None:
    """The environment a stack's `config:` mapping declares, if it declares a known one."""
    return next((config[key] for key in ENVIRONMENT_KEYS if config.get(key) in ENVIRONMENTS), None)


def levels_environment(declared: str | None, stack: str) -> LevelsEnvironment:
    """The stricter of the stack's declared environment (`kiln:environment`) and the one its
    name says: one line declaring `dev` must not give a stack named `prod` dev's levels."""
    named = environment_of_stack_name(stack)
    if declared and named and declared != named:
        stricter = max(declared, named, key=ENVIRONMENTS.index)
        return LevelsEnvironment(
            stricter,
            f"{stricter}'s: stack {stack!r} names {named} and kiln:environment says {declared}; the stricter applies",
        )
    if declared:
        return LevelsEnvironment(declared, f"{declared}'s (kiln:environment)")
    if named:
        return LevelsEnvironment(named, f"{named}'s (the stack name {stack!r}; no kiln:environment)")
    return LevelsEnvironment(
        STRICTEST_ENVIRONMENT,
        f"{STRICTEST_ENVIRONMENT}'s (neither kiln:environment nor the stack name {stack!r} names an environment)",
    )


def level_for(rule: Rule, environment: str) -> Level:
    return rule.levels.get(environment, rule.levels[STRICTEST_ENVIRONMENT])


def prop(props: Any, path: str, default: Any = None) -> Any:
    """`prop(p, "instanceRefresh.preferences.autoRollback")`: a nested value or `default`.

    Only the keys on the path are touched, so an unknown value elsewhere never stops a rule.
    """
    value = props
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def items(value: Any) -> list[Any]:
    """A list property as a list (absent or null reads as empty)."""
    if value is None or isinstance(value, (str, bytes, Mapping)):
        return []
    return list(value)


def truthy(value: Any) -> bool:
    """AWS booleans arrive as bools or as the strings "true"/"false" (launch template EBS)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def of_type(resources: Sequence[Resource], *types: str) -> list[Resource]:
    return [resource for resource in resources if resource.type in types]

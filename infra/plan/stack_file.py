"""Read a stack file's bytes into plain data the way the Pulumi CLI would, refusing what it
would refuse or misread instead of guessing.

The Pulumi CLI reads stack files as UTF-8 YAML (Go's yaml.v3): a key written twice is an
error there ("mapping key already defined"), not "the last one wins". It then hands the
program and the policy pack the whole config as one JSON environment variable
(PULUMI_CONFIG), which Linux caps per string, so only JSON's types can make the trip.
Every problem names its key path (`config.kiln:endpoints[0].tags`) and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

# PyYAML would make a date-like value a datetime object, which no stack key takes and JSON
# cannot carry: it stays the text it was written as.
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# What a stack value may be: JSON's types. !!binary, !!set, !!omap and the like are not.
PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))
# Nodes a document may expand to, aliases followed: a few anchors nested ten deep (the
# "billion laughs") would otherwise expand to gigabytes when the config is turned into JSON.
MAX_EXPANDED_NODES = 100_000
# Linux caps one environment string at MAX_ARG_STRLEN = 32 pages = 131,072 bytes
# (execve(2), "Limits on size of arguments and environment"), terminating NUL included.
MAX_ARG_STRLEN = 131_072
CONFIG_VARIABLE = "PULUMI_CONFIG"


class StackFileSyntaxError(ValueError):
    """A stack file the Pulumi CLI could not read as Kiln would: the message starts with the
    key path or line and says what to change."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader without implicit timestamps (a copy: the base class keeps its own)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def decode_stack_text(data: bytes) -> str:
    """UTF-8 text (a byte order mark is allowed), or a message saying where it is not."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise StackFileSyntaxError("is UTF-16 text; save it as UTF-8, which is what the Pulumi CLI reads")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise StackFileSyntaxError(
            f"is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line} cannot be decoded; "
            "save the file as UTF-8"
        ) from None


def load_stack_yaml(text: str) -> Any:
    """The document as plain data (str, int, float, bool, None, list, dict)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise StackFileSyntaxError(f"not valid YAML: {error}") from None
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node) -> None:
    for count, (path, node) in enumerate(_walk(root, ""), start=1):
        if count > MAX_EXPANDED_NODES:
            raise StackFileSyntaxError(
                f"expands to more than {MAX_EXPANDED_NODES:,} values through its anchors and aliases; "
                "write the values out instead of nesting aliases"
            )
        where = f"{path or '(top level)'} (line {node.start_mark.line + 1})"
        if node.tag not in PLAIN_TAGS:
            raise StackFileSyntaxError(
                f"{where}: YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not a stack value; "
                "stack values are strings, numbers, booleans, lists and mappings"
            )
        if isinstance(node, yaml.MappingNode):
            keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
            duplicates = sorted({key for key in keys if keys.count(key) > 1})
            if duplicates:
                raise StackFileSyntaxError(
                    f"{where}: key {duplicates[0]!r} is written twice; the Pulumi CLI refuses a repeated key, "
                    "so keep one"
                )


def _walk(node: yaml.Node, path: str) -> Iterator[tuple[str, yaml.Node]]:
    """Every node with its key path, aliases followed (they share node objects)."""
    yield path, node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(key, path)
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            yield from _walk(value, f"{path}.{name}" if path else name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk(item, f"{path}[{index}]")


def config_strings(config: dict[str, Any]) -> dict[str, str]:
    """Stack-file values as the CLI passes them to a program: strings, objects as JSON."""
    strings = {}
    for key, value in config.items():
        if isinstance(value, str):
            strings[key] = value
        elif isinstance(value, bool):
            strings[key] = "true" if value else "false"
        else:
            strings[key] = json.dumps(value)
    return strings


def config_environment_problems(config: dict[str, Any]) -> list[str]:
    """Whether the whole config fits the one environment variable the engine passes it in;
    when not, the largest key is named, as it is the one to shrink."""
    strings = config_strings(config)
    size = len(f"{CONFIG_VARIABLE}={json.dumps(strings)}".encode()) + 1
    if size <= MAX_ARG_STRLEN:
        return []
    largest = max(strings, key=lambda key: len(json.dumps(strings[key])))
    return [
        f"config.{largest}: {len(json.dumps(strings[largest])) // 1024} KiB of the stack's {size // 1024} KiB config; "
        f"the Pulumi engine hands the whole config to the program and the policy pack in one environment variable "
        f"({CONFIG_VARIABLE}), which Linux caps at {MAX_ARG_STRLEN // 1024} KiB (\"Argument list too long\"); "
        "shorten it (keep large data in the model's artifacts, not in the stack file)"
    ]

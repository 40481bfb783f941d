"""Malformed stack files, generated from the shipped ones: whatever is wrong with a file, a
command reads it to a plan or refuses it with exit 2, never a traceback or another exit code.

Seeded, so a failure names a mutant that can be made again. Most mutants go through the
stack loader and the planner in-process (what `kiln check` does before the program runs);
a few go through the real `kiln check` command in a subprocess.
"""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.plan.config import PROJECT_ROOT, STACKS_DIR, ConfigError, read_stack
from infra.plan.stack import plan_stack

SEED = 20261127
IN_PROCESS_MUTANTS = 240
SUBPROCESS_MUTANTS = 6
SHIPPED = sorted(STACKS_DIR.glob("Pulumi.*.yaml"))

# Values a person or a tool might put anywhere: wrong types, edges, huge, empty, odd text.
NASTY_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, 1e300, -1e-300, float("inf"), float("nan"), "", " ", "\n", "x\n",
    "0", "true", "null", "2026-11-27", "ümlaut", "emoji 😀", "a" * 300, "x" * 140_000, [], [None], [[]], {}, {"": ""},
    {"unknownKey": 1}, "aws:tag", "sqlite:///", "s3://", "models:/x@", "10.0.0.1", "subnet-zz", "vpc-", "c7i.large",
    "CPU_MEDIUM", "GPU_MEDIUM_8", "spreadAcrossGpus", "measured",
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a parsed document, containers included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


def replace_value(rng: random.Random, document: Any) -> None:
    path = rng.choice([p for p in _paths(document) if p])
    _parent(document, path)[path[-1]] = copy.deepcopy(rng.choice(NASTY_VALUES))


def delete_entry(rng: random.Random, document: Any) -> None:
    path = rng.choice([p for p in _paths(document) if p])
    del _parent(document, path)[path[-1]]


def add_key(rng: random.Random, document: Any) -> None:
    mappings = [p for p in _paths(document) if isinstance(_parent(document, (*p, None)), dict)]
    target = _parent(document, (*rng.choice(mappings), None))
    target[rng.choice(["kiln:extra", "servedModel", "nmae", "tags", "aws:profile", 7, "kiln:"])] = rng.choice(NASTY_VALUES)


def duplicate_item(rng: random.Random, document: Any) -> None:
    lists = [p for p in _paths(document) if isinstance(_parent(document, (*p, None)), list) and _parent(document, (*p, None))]
    if lists:
        target = _parent(document, (*rng.choice(lists), None))
        target.append(copy.deepcopy(rng.choice(target)))


STRUCTURAL: list[Callable[[random.Random, Any], None]] = [replace_value, replace_value, delete_entry, add_key, duplicate_item]


def structural_mutant(rng: random.Random, text: str) -> bytes:
    document = yaml.safe_load(text)
    for _ in range(rng.randint(1, 3)):
        rng.choice(STRUCTURAL)(rng, document)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode()


def textual_mutant(rng: random.Random, text: str) -> bytes:
    """Damage a person or an editor does to the file itself."""
    lines = text.splitlines(keepends=True)
    data = text.encode()
    kind = rng.randrange(9)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    if kind == 1:
        position = rng.randrange(len(data))
        return data[:position] + bytes([rng.randrange(256)]) + data[position + 1:]
    if kind == 2:
        return text.encode(rng.choice(["utf-16", "utf-16-le", "utf-32"]))
    if kind == 3:
        return text.encode("utf-8", "replace").replace(b"a", b"\xe4", 1)
    if kind == 4:
        index = rng.randrange(len(lines))
        return "".join(lines[: index + 1] + [lines[index]] + lines[index + 1:]).encode()
    if kind == 5:
        index = rng.randrange(len(lines))
        return "".join(lines[:index] + lines[index + 1:]).encode()
    if kind == 6:
        index = rng.randrange(len(lines))
        return "".join(lines[:index] + [lines[index].lstrip(" ")] + lines[index + 1:]).encode()
    if kind == 7:
        position = rng.randrange(len(data))
        return data[:position] + rng.choice([b"\x00", b"\t", b"&a ", b"*a", b"!!binary ", b"{", b"- ", b": "]) + data[position:]
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 512)))


def mutants(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    made = []
    for number in range(count):
        source = rng.choice(SHIPPED)
        mutate = structural_mutant if rng.random() < 0.6 else textual_mutant
        made.append((f"{number}-{mutate.__name__}-from-{source.name}", mutate(rng, source.read_text())))
    return made


def read_and_plan(path: Path) -> None:
    """What `kiln check` does with a stack file before the program runs; ConfigError is the
    only way to refuse one."""
    stack_file = read_stack(str(path))
    plan_stack(stack_file.name, stack_file.config)


def test_every_mutant_is_planned_or_refused_with_the_file_and_a_key_path(tmp_path: Path) -> None:
    outcomes = {"planned": 0, "refused": 0}
    for name, data in mutants(IN_PROCESS_MUTANTS, SEED):
        path = tmp_path / name / "Pulumi.fuzz.yaml"
        path.parent.mkdir()
        path.write_bytes(data)
        try:
            read_and_plan(path)
            outcomes["planned"] += 1
        except ConfigError as error:
            outcomes["refused"] += 1
            assert error.problems and all(problem.strip() for problem in error.problems), name
            assert str(error).startswith(f"{path}: ") or str(error).startswith("stacks/Pulumi.fuzz.yaml: "), name
        except Exception as error:  # noqa: BLE001 (the test is that nothing else escapes)
            pytest.fail(f"mutant {name} crashed the loader: {type(error).__name__}: {error}")
    # The generator must exercise both outcomes, or it tests nothing.
    assert outcomes["refused"] >= IN_PROCESS_MUTANTS // 2 and outcomes["planned"] > 0, outcomes


def test_the_real_command_exits_0_or_2_and_never_shows_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "AWS_EC2_METADATA_DISABLED": "true"}
    for name, data in mutants(SUBPROCESS_MUTANTS, SEED + 1):
        path = tmp_path / f"{name}.d" / "Pulumi.fuzz.yaml"
        path.parent.mkdir()
        path.write_bytes(data)
        result = subprocess.run([sys.executable, "-m", "infra.commands.cli", "check", str(path)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, errors="replace", timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode in (0, 2), f"mutant {name}: exit {result.returncode}\n{output[-2000:]}"
        assert "Traceback" not in output, f"mutant {name}\n{output[-2000:]}"

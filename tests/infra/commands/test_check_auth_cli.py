"""`kiln check` on an internet-facing prod stack: auth is on by default, and turning it off
for an endpoint fails the check (exit 1) naming the endpoint's served models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from infra.commands.cli import main
from infra.plan.config import read_stack_file, resolve_stack_path
from tests.conftest import write_stack


def internet_facing_prod(directory: Path, auth: dict[str, Any] | None) -> Path:
    """The shipped prod stack open to everyone over HTTPS; `auth` set on its first endpoint."""
    config: dict[str, Any] = json.loads(json.dumps(read_stack_file(resolve_stack_path("prod"))))
    config["kiln:gateway"] = {**config["kiln:gateway"], "internetFacing": True, "allowedCidrs": ["0.0.0.0/0"]}
    if auth is not None:
        config["kiln:endpoints"][0]["auth"] = auth
    return write_stack(directory, config, stack="prod")


def mandatory(stack: Path, store: Any) -> tuple[int, list[tuple[str, str]]]:
    result = CliRunner().invoke(main, ["check", str(stack), "--json", "--mlflow-tracking-uri", store.tracking_uri])
    report = json.loads(result.stdout)
    return result.exit_code, [(v["policy"], v["urn"].rsplit("::", 1)[1]) for v in report["violations"]
                              if v["level"] == "mandatory"]


def test_an_internet_facing_prod_stack_with_auth_off_fails_the_check(example_store: Any, tmp_path: Path) -> None:
    code, found = mandatory(internet_facing_prod(tmp_path, {"enabled": False}), example_store)

    assert code == 1
    assert sorted(found) == [("internet-facing-requires-auth", "fraud-scorer.challenger"),
                             ("internet-facing-requires-auth", "fraud-scorer.champion")]


def test_an_internet_facing_prod_stack_passes_with_auth_left_at_its_default(example_store: Any, tmp_path: Path) -> None:
    assert mandatory(internet_facing_prod(tmp_path, None), example_store) == (0, [])

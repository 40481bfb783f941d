"""Stack commands whose MLflow registry cannot be reached say so in one line, with the way out."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from tests.conftest import stack_config, write_stack

STACK_COMMANDS = (["plan"], ["check"], ["bake", "--skip-reload"], ["review"], ["serve"], ["rehearse"])


@pytest.fixture
def closed_port_uri() -> Iterator[str]:
    """An HTTP registry on a loopback port nothing listens on (bound, never listening)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}"


@pytest.mark.parametrize("command", STACK_COMMANDS, ids=[c[0] for c in STACK_COMMANDS])
def test_an_unreachable_registry_fails_in_one_line_naming_the_flag(command: list[str], closed_port_uri: str) -> None:
    result = CliRunner().invoke(main, [command[0], "prod", *command[1:], "--mlflow-tracking-uri", closed_port_uri])

    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert f"cannot reach the MLflow registry {closed_port_uri} (--mlflow-tracking-uri: Connection refused)" in result.output
    assert "--mlflow-tracking-uri sqlite:///.kiln/mlflow/mlflow.db" in result.output


def test_the_message_names_the_stack_key_when_the_stack_file_gave_the_registry(
    example_store, closed_port_uri: str, tmp_path: Path
) -> None:
    stack_file = write_stack(tmp_path, {**stack_config("dev", example_store), "kiln:mlflowTrackingUri": closed_port_uri})

    result = CliRunner().invoke(main, ["plan", str(stack_file)])

    assert result.exit_code == 2
    assert f"(kiln:mlflowTrackingUri in {stack_file.name}: Connection refused)" in result.output

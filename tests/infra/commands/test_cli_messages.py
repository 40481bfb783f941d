"""The small things a newcomer meets first: exit codes, --version and -h, errors a script can parse."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from tests.runtime_support import free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another server is listening on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_serve_with_a_busy_port_fails_before_starting_any_model(busy_port: int) -> None:
    # An unreachable registry would fail too, later: the port is checked first.
    result = CliRunner().invoke(main, ["serve", "prod", "--port", str(busy_port)])

    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{busy_port}" in result.output
    assert "choose another with --port" in result.output


def test_runtime_with_a_busy_port_fails_before_fetching_the_model(busy_port: int) -> None:
    result = CliRunner().invoke(main, ["runtime", "--model-uri", "models:/missing/1", "--port", str(busy_port)])

    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{busy_port}" in result.output


def test_version_names_the_package_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])

    assert (result.exit_code, result.output) == (0, f"kiln {version('kiln')}\n")


@pytest.mark.parametrize("argv", [["-h"], ["plan", "-h"]])
def test_h_is_help(argv: list[str]) -> None:
    result = CliRunner().invoke(main, argv)

    assert result.exit_code == 0
    assert result.output.startswith("Usage:")


@pytest.mark.parametrize("argv", [["plan", "prdo", "--json"], ["simulate", "prdo", "--trace", "step", "--json"]])
def test_with_json_an_error_is_a_json_object_on_stdout(argv: list[str]) -> None:
    result = CliRunner().invoke(main, argv)

    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert "stack file not found" in error and "dev, prod, staging" in error


@pytest.mark.parametrize(("argv", "message"), [
    (["bake", "dev", "--served-model", "nosuch", "--skip-reload", "--json"],
     "unknown served model nosuch; this stack serves fraud-scorer/champion"),
    (["plan", "dev", "--json", "--bogus"], "No such option '--bogus'."),
    (["simulate", "--json"], "Missing argument 'STACK'."),
])
def test_with_json_a_usage_error_is_a_json_object_on_stdout_too(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(main, argv)

    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"error": message}
    assert result.stderr.startswith("Usage: ")  # click's usage text, on stderr as without --json


def test_without_json_a_usage_error_leaves_stdout_empty() -> None:
    result = CliRunner().invoke(main, ["plan", "dev", "--bogus"])

    assert (result.exit_code, result.stdout) == (2, "")


def test_runtime_without_a_registry_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.examples.seed import DEFAULT_STORE, LocalStore

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    result = CliRunner().invoke(main, ["runtime", "--model-uri", "models:/x/1", "--port", str(free_port())])

    assert result.exit_code == 2
    assert "models:/x/1 is resolved through an MLflow registry and none was given: pass --mlflow-tracking-uri" in result.output
    assert LocalStore(DEFAULT_STORE).tracking_uri in " ".join(result.output.split())


def test_ctrl_c_is_exit_130_not_1_which_ci_reads_as_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("infra.commands.cli.build_plan_report", interrupted)
    monkeypatch.setattr("infra.commands.cli.require_reachable_registry", lambda *args: None)

    result = CliRunner().invoke(main, ["plan", "dev"])

    assert result.exit_code == 130
    assert "interrupted" in result.output

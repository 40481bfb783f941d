"""Every command in the bash code blocks of README.md and docs/*.md runs as written (issue 16).

These are the lines a newcomer copies first, so a broken one is the first thing they meet.
Each distinct command runs once, after `make plan`'s setup (`kiln examples`), from a scratch
folder that sees the checkout's stacks, docs and example store: `kiln` commands in this
process (click's CliRunner), servers as processes that are polled until ready, sent the
documented `curl` lines that follow them, and stopped.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking._tracking_service import utils as mlflow_tracking

from infra.commands.cli import main
from infra.plan.config import PROJECT_ROOT
from tests.runtime_support import free_port

DOCUMENTS = (PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md")))

# What the scratch folder links from the checkout: what documented commands read. schema/ is
# not linked: `kiln schema -o schema/stack.schema.json` writes there.
READ_FROM_CHECKOUT = (".kiln", "docs", "stacks")

# Documented commands this test does not run, and why. Each must still name a documented
# command (test_every_skip_names_a_documented_command), so the list cannot go stale.
SKIPPED: dict[tuple[str, ...], str] = {
    ("make", "plan"): "creates .venv with pip (minutes); its two steps, `kiln examples` and `kiln plan dev`, run here",
    ("make", "test"): "runs this suite",
    ("make", "mutation"): "mutation testing takes tens of minutes (docs/testing.md) and is not part of `make test`",
    ("mutmut",): "mutation testing (minutes); `results` and `show` read what a `make mutation` run left",
    ("python", "-m", "tests.mutation_report"): "reads the results of a `make mutation` run",
    ("pulumi",): "needs the Pulumi CLI and an AWS account",
    ("kiln", "rehearse"): "takes 1-2 minutes; tests/infra/rehearsal runs `kiln rehearse dev` itself",
    ("kiln", "bake", "dev"): "its reload check builds the model's virtualenv from PyPI (minutes on a fresh cache); "
    "`kiln bake prod … --skip-reload` runs here and tests/models/test_bake_reload.py runs the reload check",
}

# Commands that serve until stopped. They get a free port instead of the documented one (which
# another process on a shared machine may hold); the curl lines after them follow the port.
SERVERS = (("kiln", "serve"), ("kiln", "runtime"))
SERVER_READY_S = 120

# `.venv/bin/kiln` and `kiln` are the same command.
VENV_BIN = ".venv/bin/"


@dataclass(frozen=True)
class DocumentedCommand:
    """One command line of a bash code block, with its continuation lines joined."""

    where: str
    words: tuple[str, ...]
    follow_ups: tuple[tuple[str, ...], ...] = field(default=())

    def starts_with(self, prefix: tuple[str, ...]) -> bool:
        return self.words[: len(prefix)] == prefix


def code_blocks(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the first line, lines) of each fenced block."""
    language, start, lines = None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```") and language is None:
            language, start, lines = line[3:].strip(), number + 1, []
        elif line.startswith("```"):
            yield language, start, lines
            language = None
        elif language is not None:
            lines.append(line)


def command_lines(lines: list[str], start: int) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(line number, words) per command: `\\` continues a line, `#` starts a comment."""
    pending, first = "", start
    for number, line in enumerate(lines, start=start):
        if not pending:
            first = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words = tuple(shlex.split(pending + line, comments=True))
        pending = ""
        if words:
            yield first, tuple(word.removeprefix(VENV_BIN) if i == 0 else word for i, word in enumerate(words))


def documented_commands() -> list[DocumentedCommand]:
    """Every distinct command of every bash block, each server with the curl lines after it."""
    commands: list[DocumentedCommand] = []
    for path in DOCUMENTS:
        for language, start, lines in code_blocks(path):
            if language != "bash":
                continue
            previous: int | None = None  # index in `commands` of this block's previous command
            for number, words in command_lines(lines, start):
                where = f"{path.relative_to(PROJECT_ROOT)}:{number}"
                if words[0] == "curl":
                    server = commands[previous] if previous is not None else None
                    assert server is not None and any(server.starts_with(s) for s in SERVERS), \
                        f"{where}: a curl line must follow the server it calls, in the same block"
                    commands[previous] = DocumentedCommand(server.where, server.words, (*server.follow_ups, words))
                    continue
                known = [i for i, command in enumerate(commands) if command.words == words]
                if not known:
                    commands.append(DocumentedCommand(where, words))
                previous = known[0] if known else len(commands) - 1
    return commands


COMMANDS = documented_commands()


def test_untagged_code_blocks_hold_no_commands() -> None:
    """A command block without the bash tag would silently escape this test."""
    untagged = [
        f"{path.relative_to(PROJECT_ROOT)}:{start}"
        for path in DOCUMENTS
        for language, start, lines in code_blocks(path)
        if not language and any(re.match(r"(\.venv/bin/)?(kiln|make|curl|pulumi|python) ", line) for line in lines)
    ]

    assert untagged == []


def test_every_skip_names_a_documented_command() -> None:
    unused = [prefix for prefix in SKIPPED if not any(command.starts_with(prefix) for command in COMMANDS)]

    assert unused == []


def test_the_policy_config_example_is_the_shipped_file() -> None:
    """docs/policies.md shows the file its commands pass, so the example is one that works."""
    blocks = [lines for language, _, lines in code_blocks(PROJECT_ROOT / "docs" / "policies.md") if language == "json"]

    assert ["\n".join(lines) + "\n" for lines in blocks] == [(PROJECT_ROOT / "docs" / "examples" / "policy-config.json").read_text()]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder to run documented commands from, after `make plan`'s setup (`kiln examples`)."""
    result = CliRunner().invoke(main, ["examples"])
    assert result.exit_code == 0, result.output
    folder = tmp_path_factory.mktemp("newcomer")
    for name in READ_FROM_CHECKOUT:
        (folder / name).symlink_to(PROJECT_ROOT / name)
    return folder


def with_port(words: tuple[str, ...], port: int) -> list[str]:
    """The server's words with `--port` set to `port` (replaced, or added where the default applies)."""
    if "--port" in words:
        at = words.index("--port")
        return [*words[: at + 1], str(port), *words[at + 2:]]
    return [*words, "--port", str(port)]


def wait_until_ready(server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + SERVER_READY_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"server exited with {server.returncode}: {server.stdout.read()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"not ready on port {port} within {SERVER_READY_S} s")


def run_server(command: DocumentedCommand, folder: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "infra.commands.cli", *with_port(expand(command.words, folder), port)[1:]]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PWD": str(folder)}
    # Its own process group: `kiln serve` starts a runtime per served model, stopped with it.
    server = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        wait_until_ready(server, port)
        for curl in command.follow_ups:
            # --fail: an HTTP error status fails the line, as `-s` alone would hide it.
            words = [re.sub(r"(localhost|127\.0\.0\.1):\d+", f"127.0.0.1:{port}", word) for word in curl]
            answer = subprocess.run([*words, "--fail"], capture_output=True, text=True, timeout=60)
            assert answer.returncode == 0 and answer.stdout, f"{shlex.join(curl)}: {answer.stderr}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def expand(words: tuple[str, ...], folder: Path) -> tuple[str, ...]:
    """The one shell expansion the docs use, `$PWD`; any other `$` would not run as written here."""
    expanded = tuple(word.replace("$PWD", str(folder)) for word in words)
    assert not any("$" in word for word in expanded), f"unsupported shell expansion in {shlex.join(words)}"
    return expanded


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_documented_command_runs_as_written(command: DocumentedCommand, scratch: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if reason := next((why for prefix, why in SKIPPED.items() if command.starts_with(prefix)), None):
        pytest.skip(reason)
    assert command.words[0] == "kiln", f"{shlex.join(command.words)}: not a kiln command; add it to SKIPPED with why"
    if any(command.starts_with(server) for server in SERVERS):
        run_server(command, scratch)
        return
    monkeypatch.chdir(scratch)
    # As in a fresh `kiln` process: `kiln examples` above set MLflow's process-wide tracking URI
    # to the example store, which a command that takes MLflow's own must not inherit.
    monkeypatch.setattr(mlflow_tracking, "_tracking_uri", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    result = CliRunner().invoke(main, expand(command.words, scratch)[1:], env={"PWD": str(scratch)})

    assert result.exit_code == 0, f"{shlex.join(command.words)} exited {result.exit_code}:\n{result.output}"

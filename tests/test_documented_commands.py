"""Every command in the code blocks of README.md and docs/*.md runs as written (issue 16).

These are the lines a newcomer copies first, so a broken one is the first thing they meet.
Commands sit in `bash` blocks, or after a `$ ` prompt in `console` blocks (a command with its
output); a command line in any other block fails test_commands_sit_in_runnable_blocks.
Each distinct command runs once, after `make plan`'s setup (`kiln examples`), from a scratch
folder that sees the checkout's stacks, docs and example store, each as a process of its own
as a shell would start it (an in-process run shares MLflow's tracking URI with the commands
before it and passed a line that fails in a fresh shell); servers are polled until ready,
sent the documented `curl` lines that follow them, and stopped. What a command leaves in the
folder must be ignored by the repository's .gitignore, or be a tracked file it regenerates.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.plan.config import PROJECT_ROOT
from tests.models.test_models_doc import log_model, models_doc_snippet
from tests.runtime_support import free_port

DOCUMENTS = (PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md")))

# What the scratch folder links from the checkout: what documented commands read. schema/ is
# not linked: `kiln schema -o schema/stack.schema.json` writes there.
READ_FROM_CHECKOUT = (".kiln", "docs", "stacks")

# docs/models.md's commands bake "the store you logged to", `sqlite:///$PWD/mlflow.db`: they run
# in a folder of their own where the page's Python snippet has run first, as a data scientist
# runs it, and registered models:/iris/1 there. Only there: elsewhere ./mlflow.db (MLflow's
# default store) must not exist, as on a fresh clone, or a command that forgot its store would
# pass here.
LOGGED_BY_SNIPPET = {"docs/models.md"}

# Code block languages whose lines run, and the prompt a command line starts with (None: every line).
RUNNABLE: dict[str, str | None] = {"bash": None, "console": "$ "}

# A command line outside a runnable block; a synopsis (`kiln status STACK [--json]`) or a
# template with <placeholders> is not one.
COMMAND_LINE = re.compile(r"(\$ )?(\.venv/bin/)?(kiln|make|curl|pulumi|python|mutmut|aws) ")
TEMPLATE_MARKS = ("[", "<")

TERMINAL_COLUMNS = 100

# Bounds a documented command's run; the longest, a reload check on a fresh cache, takes ~4 min.
COMMAND_TIMEOUT_S = 600

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
    ("kiln", "amis"): "reads AWS's public SSM parameters with your AWS credentials; tests/infra/commands/test_amis_cli.py "
    "runs it against moto",
    ("python", "-m", "benchmarks.runtime_vs_peers"): "installs MLServer into a virtualenv from PyPI and load-tests "
    "three servers (minutes; a benchmark, not a test: see the project rules)",
}

# Commands that serve until stopped. They get a free port instead of the documented one (which
# another process on a shared machine may hold); the curl lines after them follow the port.
SERVERS = (("kiln", "serve"), ("kiln", "runtime"))
SERVER_READY_S = 120
# A server drains for up to 30 s (runtime/settings.py's default) before it exits.
SERVER_STOP_S = 60

# `.venv/bin/kiln` and `kiln` are the same command.
VENV_BIN = ".venv/bin/"


@dataclass(frozen=True)
class DocumentedCommand:
    """One command line of a bash code block, with its continuation lines joined."""

    where: str
    words: tuple[str, ...]
    follow_ups: tuple[tuple[str, ...], ...] = field(default=())
    # What a console block shows it printing (lines with a `…` mark a cut, not output).
    shown: tuple[str, ...] = field(default=())

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


def command_lines(lines: list[str], start: int, prompt: str | None = None) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(line number, words) per command: `\\` continues a line, `#` starts a comment; with a
    prompt, only lines after it are commands (the others are their output)."""
    pending, first = "", start
    for number, line in enumerate(lines, start=start):
        if not pending:
            if prompt is not None and not line.startswith(prompt):
                continue
            first = number
            line = line.removeprefix(prompt or "")
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words = tuple(shlex.split(pending + line, comments=True))
        pending = ""
        if words:
            yield first, tuple(word.removeprefix(VENV_BIN) if i == 0 else word for i, word in enumerate(words))


def shown_output(lines: list[str], start: int, number: int, prompt: str) -> tuple[str, ...]:
    """The lines a console block shows after the command on line `number`, up to the next prompt."""
    after = []
    for line in lines[number - start + 1:]:
        if line.startswith(prompt):
            break
        after.append(line)
    return tuple(after)


def documented_commands() -> list[DocumentedCommand]:
    """Every distinct command of every runnable block, each server with the curl lines after it."""
    commands: list[DocumentedCommand] = []
    for path in DOCUMENTS:
        for language, start, lines in code_blocks(path):
            if language not in RUNNABLE:
                continue
            previous: int | None = None  # index in `commands` of this block's previous command
            for number, words in command_lines(lines, start, RUNNABLE[language]):
                where = f"{path.relative_to(PROJECT_ROOT)}:{number}"
                if words[0] == "curl":
                    server = commands[previous] if previous is not None else None
                    assert server is not None and any(server.starts_with(s) for s in SERVERS), \
                        f"{where}: a curl line must follow the server it calls, in the same block"
                    commands[previous] = DocumentedCommand(server.where, server.words, (*server.follow_ups, words))
                    continue
                known = [i for i, command in enumerate(commands) if command.words == words]
                prompt = RUNNABLE[language]
                shown = shown_output(lines, start, number, prompt) if prompt else ()
                if not known:
                    commands.append(DocumentedCommand(where, words, shown=shown))
                previous = known[0] if known else len(commands) - 1
    return commands


COMMANDS = documented_commands()


def test_commands_sit_in_runnable_blocks() -> None:
    """A command in a block tagged `text` (or untagged) would silently escape this test."""
    elsewhere = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}: {line}"
        for path in DOCUMENTS
        for language, start, lines in code_blocks(path)
        if language not in RUNNABLE
        for number, line in enumerate(lines, start=start)
        if COMMAND_LINE.match(line) and not any(mark in line for mark in TEMPLATE_MARKS)
    ]

    assert elsewhere == []


def test_a_command_in_a_text_block_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is what keeps a hidden command out of reach; it must see one."""
    document = tmp_path / "doc.md"
    document.write_text("```text\nkiln bake models:/x/1 --json\nkiln status STACK [--json]\n```\n"
                        "```console\n$ kiln plan dev\noutput\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "DOCUMENTS", (document,))
    monkeypatch.setattr(sys.modules[__name__], "PROJECT_ROOT", tmp_path)

    with pytest.raises(AssertionError, match="doc.md:2: kiln bake"):
        test_commands_sit_in_runnable_blocks()
    assert [c.words for c in documented_commands()] == [("kiln", "plan", "dev")]


def test_every_skip_names_a_documented_command() -> None:
    unused = [prefix for prefix in SKIPPED if not any(command.starts_with(prefix) for command in COMMANDS)]

    assert unused == []


def test_the_policy_config_example_is_the_shipped_file() -> None:
    """docs/policies.md shows the file its commands pass, so the example is one that works."""
    blocks = [lines for language, _, lines in code_blocks(PROJECT_ROOT / "docs" / "policies.md") if language == "json"]

    assert ["\n".join(lines) + "\n" for lines in blocks] == [(PROJECT_ROOT / "docs" / "examples" / "policy-config.json").read_text()]


def fresh_shell(folder: Path) -> dict[str, str]:
    """The environment of a newcomer's shell in `folder`: no MLFLOW_TRACKING_URI of a developer's."""
    env = {name: value for name, value in os.environ.items() if name != "MLFLOW_TRACKING_URI"}
    # A 100-column terminal (issue 16's width), so tables print as the docs show them.
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), "PWD": str(folder), "COLUMNS": str(TERMINAL_COLUMNS)}


def kiln(words: tuple[str, ...] | list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """`kiln WORDS` run from `folder` as its own process, as the installed command would be."""
    return subprocess.run([sys.executable, "-m", "infra.commands.cli", *words[1:]], cwd=folder, env=fresh_shell(folder),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The folder to run a document's commands from (one per document that logs a store, one
    for the others), each after `make plan`'s setup (`kiln examples`)."""
    folders: dict[str | None, Path] = {}

    def folder_for(where: str) -> Path:
        document = where.rsplit(":", 1)[0]
        logged = document in LOGGED_BY_SNIPPET
        key = document if logged else None
        if key not in folders:
            folder = tmp_path_factory.mktemp("newcomer")
            result = kiln(("kiln", "examples"), folder)
            assert result.returncode == 0, result.stdout + result.stderr
            for name in READ_FROM_CHECKOUT:
                (folder / name).symlink_to(PROJECT_ROOT / name)
            if logged:
                assert log_model(models_doc_snippet(), folder) == "models:/iris/1"
            folders[key] = folder
        return folders[key]

    return folder_for


def unignored_files(folder: Path) -> list[str]:
    """Files under `folder` (not behind its links to the checkout) that `git status` would show
    as new in the checkout: neither ignored by .gitignore nor tracked."""
    written = sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                     if path.is_file() and not path.is_symlink() and not any(p.is_symlink() for p in path.parents))
    return [name for name in written
            if subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=PROJECT_ROOT).returncode != 0
            and subprocess.run(["git", "ls-files", "--error-unmatch", name], cwd=PROJECT_ROOT,
                               capture_output=True).returncode != 0]


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
    # Its own process group: `kiln serve` starts a runtime per served model, stopped with it.
    server = subprocess.Popen(argv, cwd=folder, env=fresh_shell(folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        wait_until_ready(server, port)
        for curl in command.follow_ups:
            # --fail: an HTTP error status fails the line, as `-s` alone would hide it.
            words = [re.sub(r"(localhost|127\.0\.0\.1):\d+", f"127.0.0.1:{port}", word) for word in curl]
            answer = subprocess.run([*words, "--fail"], capture_output=True, text=True, timeout=60)
            assert answer.returncode == 0 and answer.stdout, f"{shlex.join(curl)}: {answer.stderr}"
    finally:
        stopped = stop(server)
    assert stopped == 0, f"Ctrl-C should drain and exit 0 (README \"Exit codes\"), it exited {stopped}"


def stop(server: subprocess.Popen) -> int | None:
    """Ctrl-C, as a terminal sends it to the foreground process group; SIGKILL if it has not
    exited within SERVER_STOP_S, so no server outlives the test. Its exit code, None if killed."""
    try:
        os.killpg(server.pid, signal.SIGINT)
        return server.wait(timeout=SERVER_STOP_S)
    except ProcessLookupError:  # the whole group had already exited
        return server.wait()
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        return None


def expand(words: tuple[str, ...], folder: Path) -> tuple[str, ...]:
    """The one shell expansion the docs use, `$PWD`; any other `$` would not run as written here."""
    expanded = tuple(word.replace("$PWD", str(folder)) for word in words)
    assert not any("$" in word for word in expanded), f"unsupported shell expansion in {shlex.join(words)}"
    return expanded


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_documented_command_runs_as_written(command: DocumentedCommand, scratch: Callable[[str], Path]) -> None:
    if reason := next((why for prefix, why in SKIPPED.items() if command.starts_with(prefix)), None):
        pytest.skip(reason)
    assert command.words[0] == "kiln", f"{shlex.join(command.words)}: not a kiln command; add it to SKIPPED with why"
    folder = scratch(command.where)
    if any(command.starts_with(server) for server in SERVERS):
        run_server(command, folder)
    else:
        result = kiln(expand(command.words, folder), folder)

        assert result.returncode == 0, \
            f"{shlex.join(command.words)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        printed = {line.rstrip() for line in result.stdout.splitlines()}
        stale = [line for line in command.shown if "…" not in line and line.rstrip() not in printed]
        assert stale == [], f"{command.where} shows lines {shlex.join(command.words)} no longer prints"
    assert unignored_files(folder) == [], f"{shlex.join(command.words)} left files git would offer to commit"


PYTHON_MODULES = sorted({command.words[2] for command in COMMANDS if command.starts_with(("python", "-m"))})


@pytest.mark.parametrize("module", PYTHON_MODULES)
def test_every_documented_python_module_starts_with_the_projects_interpreter(module: str) -> None:
    """The `python -m` lines skipped above still name a module that exists and imports in
    `.venv` from the checkout, as written (issue 16 item 9: the benchmark's line did not)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr

"""Where every `kiln` command writes: tables to stdout, progress and errors to stderr.

A user error is one clear message, exit code 2, no traceback. Each domain has one
exception type carrying what a person needs (STYLE.md); this module is the one place that
knows them all and how to introduce them.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from infra.commands.registry import RegistryUnreachable
from infra.plan.config import ConfigError
from infra.preview.policy_pack import PolicyPackError
from models.artifacts import ModelResolutionError
from models.build_context import BuildContextError
from models.checks import PackagingError

# Tables stay readable when piped into a file or a CI log (160 columns), unless COLUMNS says
# how wide the reader is (`COLUMNS=100 kiln plan prod | less`), which rich then follows.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
errors = Console(stderr=True)

# What each user error is, in the words that start its message.
INTRODUCTIONS: dict[type[Exception], str] = {
    ConfigError: "invalid stack config\n",
    ModelResolutionError: "cannot resolve a served model: ",
    PackagingError: "",
    BuildContextError: "",
    PolicyPackError: "the policy pack gave no verdict: ",
    RegistryUnreachable: "",
}


# Exit codes (README "Exit codes"): 1 is findings, so a crash must never read as one.
INVALID_INPUT = 2
INTERNAL_ERROR = 3


def fail(message: str, code: int = INVALID_INPUT) -> NoReturn:
    # Messages carry check ids in [brackets] and paths; never read them as rich markup.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if json_requested():
        click.echo(json.dumps({"error": message}))
    sys.exit(code)


def json_requested() -> bool:
    """Whether the running command was given `--json`: a script reading its stdout then gets
    the error as JSON there too, instead of nothing it can parse."""
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.params.get("as_json"))


@contextmanager
def user_errors(own: dict[type[Exception], str] | None = None) -> Iterator[None]:
    """Turn the known user errors, and the command's `own` ({type: introduction}), into `fail`."""
    introductions = {**INTRODUCTIONS, **(own or {})}
    try:
        yield
    except tuple(introductions) as error:
        intro = next(text for kind, text in introductions.items() if isinstance(error, kind))
        fail(f"{intro}{error}")


def crash(error: Exception) -> NoReturn:
    """An exception no command expected: a bug in Kiln. Exit 3, never 1 (findings): a CI step
    must not read a crash as a policy verdict. Says where it happened, for the bug report."""
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    fail(
        f"internal error (a bug in Kiln, not in your input): {type(error).__name__}: {error}{where}; "
        "please report it with the command you ran",
        INTERNAL_ERROR,
    )

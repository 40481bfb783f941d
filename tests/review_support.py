"""Helpers for `kiln review --against <git ref>` tests: a git repository holding a stack file,
and edits of that file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from models.examples.seed import LocalStore
from tests.conftest import stack_config, write_stack


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


def stack_repository(root: Path, store: LocalStore) -> Path:
    """A git repo under `root` whose main branch holds the prod stack pointing at `store`: its stack file."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    path = write_stack(repo, stack_config("prod", store), stack="prod")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    return path


def change_stack(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text())
    change(document["config"])
    path.write_text(yaml.safe_dump(document, sort_keys=False))

"""The stack repository the review tests compare against (`--against main`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.review_support import stack_repository


@pytest.fixture
def stack_repo(tmp_path: Path, example_store) -> Path:
    """A git repo whose main branch holds the prod stack pointing at the example store."""
    return stack_repository(tmp_path, example_store)

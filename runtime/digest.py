"""A model directory's content digest: its name in the cache and its key in the artifact store.

Standard library only: the runtime inside the image verifies downloads with this same
function, and the image carries no more of Kiln than it needs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(directory: Path) -> str:
    """sha256 over relative paths and file contents, independent of timestamps and order."""
    outer = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        outer.update(path.relative_to(directory).as_posix().encode() + b"\0")
        outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.hexdigest()

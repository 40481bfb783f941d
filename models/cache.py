"""What the Kiln cache holds and how to trim it.

Why: every reload check leaves a virtualenv of the model's requirements (~0.9 GB for an
MLflow + scikit-learn model, several GB with torch), every model version its files, every
environment a build context. All are content-addressed and rebuilt on demand, so any of
them can go; what is worth keeping is what was used recently.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from models import artifacts
from models.reload import READY_MARKER

# Folders of the cache root that are not model files (a model's folder is named by its digest).
KINDS = ("venvs", "contexts", "measurements", "index")
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class CacheEntry:
    kind: str  # model, venv, context, measurements, index
    path: Path
    size_bytes: int
    # When it was last written or used: a venv's ready marker is touched on every reuse.
    last_used: float

    def age_days(self, now: float) -> float:
        return (now - self.last_used) / SECONDS_PER_DAY


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _last_used(path: Path) -> float:
    marker = path / READY_MARKER
    return (marker if marker.is_file() else path).stat().st_mtime


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every model, virtualenv, build context and measurement in the cache (one entry each),
    plus the registry index as one entry."""
    root = root or artifacts.CACHE_DIR
    if not root.is_dir():
        return []
    entries = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue  # downloads in progress (.download-*) and lock files
        if child.name == "venvs":
            # Only the virtualenvs: their `.lock` files may be held by a running check.
            entries += [CacheEntry("venv", p, _size(p), _last_used(p)) for p in sorted(child.iterdir()) if p.is_dir()]
        elif child.name in ("contexts", "measurements"):
            # Each build context is a folder and the zip uploaded from it; each measurement one
            # model's file, read (and so marked used) whenever a `sizing: measured` plan sizes from it.
            kind = "context" if child.name == "contexts" else "measurements"
            entries += [CacheEntry(kind, p, _size(p), _last_used(p)) for p in sorted(child.iterdir())]
        elif child.name in KINDS:
            entries.append(CacheEntry(child.name, child, _size(child), _last_used(child)))
        else:
            entries.append(CacheEntry("model", child, _size(child), _last_used(child)))
    return entries


def prune(entries: Iterable[CacheEntry], kinds: Iterable[str], older_than_days: float, now: float | None = None,
          dry_run: bool = False) -> list[CacheEntry]:
    """Remove the entries of `kinds` unused for more than `older_than_days`; returns them."""
    now = time.time() if now is None else now
    wanted = set(kinds)
    removed = [e for e in entries if e.kind in wanted and e.age_days(now) > older_than_days]
    if not dry_run:
        for entry in removed:
            if entry.path.is_dir():
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                entry.path.unlink(missing_ok=True)
    return removed

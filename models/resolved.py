"""What pip actually installed for a model: the reload check's virtualenv, read back.

Why: a requirement says `torch==2.5.1`; what serves is whatever pip resolves for it. With
`--extra-index-url https://download.pytorch.org/whl/cpu` that is `2.5.1+cpu`, which has no
CUDA at all; from PyPI it is the CUDA build with its nvidia-* wheels (CUDA 12.8 for torch 2.9,
13.0 for torch 2.14). Only the resolved set says which CUDA the image will carry, if any, so
the GPU checks read it here instead of guessing from the requirement text.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

# Every instance type in the compute catalog is x86_64 Linux: what pip resolves elsewhere
# (macOS has no CUDA wheels at all) says nothing about the image.
IMAGE_PLATFORM = "linux-x86_64"
# The CUDA runtime wheel: `nvidia-cuda-runtime-cu11`/`-cu12` up to CUDA 12, plain
# `nvidia-cuda-runtime` (pulled in by cuda-toolkit[cudart]) from CUDA 13. Its version is the
# CUDA version (12.8.90 → 12.8).
CUDA_RUNTIME_WHEELS = frozenset(
    canonicalize_name(name) for name in ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime-cu12")
)


@dataclass(frozen=True)
class ResolvedPackages:
    """Installed distributions (canonical name → version) and the platform pip resolved them for."""

    versions: dict[NormalizedName, Version]
    platform: str

    @property
    def for_image_platform(self) -> bool:
        return self.platform == IMAGE_PLATFORM

    @property
    def torch(self) -> Version | None:
        return self.versions.get(canonicalize_name("torch"))

    @property
    def cuda(self) -> CudaBuild | None:
        """The CUDA the packages carry: the CUDA runtime wheel's major.minor (the newest, if
        several), else the `+cuXYZ` label of a torch wheel that bundles its CUDA (older
        download.pytorch.org builds). None: no CUDA at all (`+cpu`, `+rocm…`, or no framework)."""
        runtimes = sorted((version, name) for name, version in self.versions.items() if name in CUDA_RUNTIME_WHEELS)
        if runtimes:
            version, name = runtimes[-1]
            return CudaBuild(Version(f"{version.major}.{version.minor}"), f"{name}=={version}")
        label = self.torch.local if self.torch else None
        if label and label.startswith("cu") and label[2:].isdigit() and len(label) >= 5:
            return CudaBuild(Version(f"{label[2:-1]}.{label[-1]}"), f"torch=={self.torch}")
        return None


@dataclass(frozen=True)
class CudaBuild:
    """A CUDA version and the installed package that says so (`nvidia-cuda-runtime-cu12==12.8.90`)."""

    version: Version
    source: str


def site_packages(venv: Path) -> Path:
    """The virtualenv's site-packages (lib/pythonX.Y/site-packages on POSIX)."""
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no lib/python*/site-packages in the virtualenv {venv}")
    return found[0]


def read_resolved(venv: Path) -> ResolvedPackages:
    """The distributions installed in `venv`, read from their metadata (nothing is imported).

    A distribution with a version PEP 440 cannot parse is left out: no GPU check reads one.
    """
    versions: dict[NormalizedName, Version] = {}
    for distribution in metadata.distributions(path=[str(site_packages(venv))]):
        try:
            versions[canonicalize_name(distribution.metadata["Name"])] = Version(distribution.version)
        except InvalidVersion:
            continue
    return ResolvedPackages(versions, sysconfig.get_platform())


def installed_bytes(venv: Path) -> int:
    """What the virtualenv's packages occupy installed: the image's Python layer holds the same
    wheels, installed by the same pip for the same requirements."""
    return sum(f.stat().st_size for f in site_packages(venv).rglob("*") if f.is_file() and not f.is_symlink())

"""The lock (requirements.lock, `make lock`) and everything installed from it agree.

The Makefile installs the tool's environment with `-c requirements.lock`, `pulumi install`
and the policy pack's requirements constrain with it, and the image's runtime requirements
pin the runtime's own packages to it: a fresh clone gets the versions the tests ran.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# The platform the lock resolves for (the Makefile's LOCK_TARGET): markers are read there.
LINUX_PYTHON_311 = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11",
                    "platform_machine": "x86_64", "extra": ""}


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, version = line.split(";")[0].strip().split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    return [Requirement(line) for line in lines]


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(LINUX_PYTHON_311)


def _locked_version_within(requirement: Requirement, where: str) -> str:
    """The lock's version of `requirement`, asserted present and inside its range."""
    locked = _locked()
    name = canonicalize_name(requirement.name)

    assert name in locked, f"{where}: {requirement} is not in requirements.lock; run `make lock`"
    assert requirement.specifier.contains(locked[name], prereleases=True), (
        f"{where}: {requirement}, but requirements.lock has {name}=={locked[name]}; run `make lock`")
    return locked[name]


@pytest.mark.parametrize("requirement", _project_requirements(), ids=str)
def test_every_project_requirement_is_locked_within_its_range(requirement: Requirement) -> None:
    """A dependency added to pyproject.toml without `make lock` would install unpinned."""
    _locked_version_within(requirement, "pyproject.toml")


@pytest.mark.parametrize("requirement", [r for r in _requirements(ROOT / "runtime" / "requirements.txt") if _applies(r)],
                         ids=str)
def test_the_image_runtime_requirements_agree_with_the_lock(requirement: Requirement) -> None:
    """An exact pin is the lock's version; a range (what the model pins too) holds it."""
    version = _locked_version_within(requirement, "runtime/requirements.txt")
    if any(spec.operator == "==" for spec in requirement.specifier):
        assert str(requirement.specifier) == f"=={version}"


def test_the_runtimes_own_server_packages_are_pinned() -> None:
    pinned = {canonicalize_name(r.name) for r in _requirements(ROOT / "runtime" / "requirements.txt")
              if any(spec.operator == "==" for spec in r.specifier)}

    assert pinned == {"uvicorn", "httptools", "uvloop"}


@pytest.mark.parametrize("installer", ["infra/requirements.txt", "policies/requirements.txt"])
def test_pulumi_install_and_the_pack_install_with_the_lock(installer: str) -> None:
    """pip reads a -c path relative to the requirements file that names it."""
    path = ROOT / installer
    constraints = [line.split(None, 1)[1] for line in path.read_text().splitlines() if line.startswith("-c ")]

    assert [(path.parent / c).resolve() for c in constraints] == [LOCK]


def test_the_lock_holds_no_cuda_wheels() -> None:
    """The tool never needs a GPU: a CUDA torch (its nvidia-* wheels are ~3 GB) has no place here."""
    cuda = [name for name in _locked() if name.startswith("nvidia-") or name in ("torch", "triton")]

    assert cuda == []


def test_the_environment_the_tests_run_in_is_the_locks() -> None:
    """`make test` runs in the environment the Makefile installed with `-c requirements.lock`
    (reinstalled whenever the lock changes): every locked package it has is at the locked version.
    An install that ignored the lock gets whatever was released that morning and fails here."""
    from importlib.metadata import distributions

    locked = _locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    drifted = {name: (version, installed[name]) for name, version in locked.items()
               if name in installed and installed[name] != version}

    assert drifted == {}, "locked vs installed; run `make test`, which reinstalls from the lock"
    # `.[dev]` holds every extra, so the Makefile's install brings every locked package.
    assert sorted(set(locked) - set(installed)) == []

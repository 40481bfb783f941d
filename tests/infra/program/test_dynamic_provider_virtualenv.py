"""Under the real CLI, Kiln's dynamic providers (image build, model upload) run in the
project's virtualenv, not only the program.

The Pulumi engine starts the dynamic-provider host `pulumi-resource-pulumi-python` in the
program directory (`main: infra/`) and hands it the `virtualenv` option from Pulumi.yaml
exactly as written, while the language host resolves that same option against the project
root. The resolution steps below are the ones the pulumi/pulumi sources take (v3.200.0 to
v3.259.0, the versions `pulumi>=3.200` covers), cited where each is reproduced; docs/sources.md
has the whole finding.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from infra.plan.config import PROJECT_ROOT

PROJECT_FILE = PROJECT_ROOT / "Pulumi.yaml"


def runtime_options(project: dict) -> dict[str, object]:
    return project["runtime"].get("options", {})


def provider_host_environment(project: dict) -> dict[str, str]:
    """`PULUMI_RUNTIME_<OPTION>` for every runtime option, formatted with %v and not resolved
    (sdk/go/common/resource/plugin/provider_plugin.go, v3.259.0 line 248)."""
    return {f"PULUMI_RUNTIME_{key.upper()}": str(value) for key, value in runtime_options(project).items()}


def program_directory(root: Path, project: dict) -> Path:
    """The engine's working directory for the program and for every plugin it starts: `main`
    when it is a directory (pkg/engine/project.go `getPwdMain`, line 63; the plugin's
    `cmd.Dir = pwd`, sdk/go/common/resource/plugin/plugin.go line 599)."""
    main = root / project.get("main", ".")
    return main if main.is_dir() else main.parent


def provider_host_python(env: dict[str, str], cwd: Path) -> Path:
    """The interpreter sdk/python/dist/pulumi-resource-pulumi-python runs: the virtualenv from
    the environment (or `.venv` for the uv toolchain), trailing '/' removed, made absolute
    against the host's working directory, used only if `<venv>/bin/python` is a file; else the
    script stops ("... doesn't exist")."""
    venv = env.get("PULUMI_RUNTIME_VIRTUALENV") or (".venv" if env.get("PULUMI_RUNTIME_TOOLCHAIN") == "uv" else "")
    assert venv, "no virtualenv: the host would run python3 from PATH, whatever that is"
    venv = venv.rstrip("/")
    venv_path = Path(venv) if venv.startswith("/") else Path(f"{cwd}/{venv}")
    python = venv_path / "bin" / "python"
    assert python.is_file(), f"the dynamic-provider host would stop: {venv_path} doesn't exist or is not a virtualenv"
    return python


def language_host_virtualenv(root: Path, project: dict) -> Path:
    """The virtualenv the program runs in: the option joined to the project root
    (sdk/python/toolchain/pip.go `resolveVirtualEnvironmentPath`, line 588)."""
    return root / str(runtime_options(project)["virtualenv"])


def fresh_clone(tmp_path: Path) -> Path:
    """The repository's Pulumi.yaml and infra/.venv link as a clone has them, with a
    virtualenv created where the project's docs say (`python -m venv .venv`)."""
    (tmp_path / "Pulumi.yaml").write_text(PROJECT_FILE.read_text())
    (tmp_path / "infra").mkdir()
    link = PROJECT_ROOT / "infra" / ".venv"
    if link.is_symlink():
        (tmp_path / "infra" / ".venv").symlink_to(os.readlink(link))
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    return tmp_path


def test_the_dynamic_provider_host_finds_the_project_virtualenv_from_the_program_directory(tmp_path: Path) -> None:
    root = fresh_clone(tmp_path)
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())

    python = provider_host_python(provider_host_environment(project), program_directory(root, project))

    assert program_directory(root, project) == root / "infra"
    assert python.resolve() == (root / ".venv" / "bin" / "python").resolve()


def test_the_program_and_its_dynamic_providers_share_one_virtualenv(tmp_path: Path) -> None:
    root = fresh_clone(tmp_path)
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())

    provider_venv = provider_host_python(provider_host_environment(project), program_directory(root, project)).parent.parent

    assert provider_venv.resolve() == language_host_virtualenv(root, project).resolve()

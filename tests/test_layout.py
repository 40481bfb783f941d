"""Dependencies point one way, down the flow (README "Layout"): a module imports its own
package and the packages below it, never one above, and nothing edits sys.path to get there.

Every import counts, including those inside functions: a lazy import of a higher layer
breaks the direction just the same, only later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtime", "infra", "models", "policies")
# What each package may import besides itself (a prefix: "infra.plan" allows its modules).
# Most specific package first; the Pulumi program's entry module is `infra` itself.
ALLOWED: dict[str, tuple[str, ...]] = {
    "runtime": (),
    "infra.activator": (),
    "infra.plan": ("runtime",),
    "models": ("infra.plan", "runtime"),
    # The pack shares the packaging rules and their levels with models/checks.py.
    "policies": ("infra.plan.catalog", "infra.plan.packaging"),
    "infra.providers": ("infra.plan", "models", "runtime"),
    "infra.program": ("infra.plan", "models", "runtime"),
    "infra.components": ("infra.plan", "infra.providers", "models", "runtime"),
    "infra.preview": ("infra.plan",),
    "infra.review": ("infra.preview", "infra.plan"),
    # The simulator replays the runtime's own admission limit and in-flight peak, and the
    # activator's own poll schedule, not copies.
    "infra.simulator": ("infra.plan", "infra.activator", "runtime.contract", "runtime.admission", "runtime.gauge"),
    # `kiln status` reads the account by the tags the plan puts on what it deploys.
    "infra.operate": ("infra.plan",),
    "infra.local": ("infra.plan", "models", "runtime"),
    # The rehearsal deploys the program and runs what AWS would run of it: components' user
    # data, the providers, the activator, the local router's weighting; then reads the account
    # as `kiln status` does.
    "infra.rehearsal": ("infra.preview", "infra.plan", "infra.components.user_data", "infra.providers",
                        "infra.activator", "infra.local", "infra.operate", "models", "runtime"),
    "infra.commands": ("infra", "models", "policies", "runtime"),
    "infra": ("infra.components", "infra.program", "infra.plan", "models"),
}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _package_of(module: str) -> str:
    return next(p for p in sorted(ALLOWED, key=len, reverse=True) if module == p or module.startswith(p + "."))


def _kiln_imports(path: Path) -> list[tuple[int, str]]:
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in imported if name.split(".")[0] in PACKAGES]


def _allowed(package: str, target: str) -> bool:
    return any(target == p or target.startswith(p + ".") for p in (package, *ALLOWED[package]))


SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_point_down_the_flow(path: Path) -> None:
    package = _package_of(_module_name(path))
    upward = [f"line {line}: {target}" for line, target in _kiln_imports(path) if not _allowed(package, target)]

    assert not upward, f"{package} may import only {', '.join(ALLOWED[package]) or 'nothing of Kiln'}: {upward}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_edits_the_import_path(path: Path) -> None:
    edits = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
             and node.value.id == "sys"]

    assert not edits, f"sys.path used on lines {edits}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself: a models module importing the Pulumi program's components is refused."""
    module = tmp_path / "upward.py"
    module.write_text("def late():\n    from infra.components.gateway import Gateway\n    return Gateway\n")

    assert [target for _, target in _kiln_imports(module)] == ["infra.components.gateway.Gateway"]
    assert not _allowed("models", "infra.components.gateway.Gateway")
    assert _allowed("models", "infra.plan.catalog.PROFILES") and not _allowed("policies", "infra.plan.stack.plan_stack")


def test_the_policy_pack_runs_in_the_project_virtualenv_where_kiln_is_installed() -> None:
    """What replaces the old sys.path edit: the engine starts the pack in the virtualenv its
    PulumiPolicy.yaml names (relative to the pack), which must be the one the project's
    Pulumi.yaml names (relative to the project), where `pulumi install` installs Kiln."""
    pack = yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text())
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    pack_venv = (ROOT / "policies" / pack["runtime"]["options"]["virtualenv"]).resolve()
    project_venv = (ROOT / project["runtime"]["options"]["virtualenv"]).resolve()
    installs = [line.strip() for line in (ROOT / "policies" / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    assert pack_venv == project_venv
    assert installs == ["-c ../requirements.lock", "-e .."] and (ROOT / "policies" / "..").resolve() == ROOT

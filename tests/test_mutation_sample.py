"""A fixed sample of realistic one-line bugs, one per class that once passed the whole suite;
each must make the named tests fail. It is the CI-sized stand-in for `make mutation`
(docs/testing.md): if a test that guards one of these classes is weakened, CI goes red.

Each bug is applied to a copy of the project, whose tests then run in a fresh interpreter
(`--noconftest`: the named test files need no shared fixtures, which keeps each run ~1 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.plan.config import PROJECT_ROOT

COPIED = ("infra", "models", "policies", "runtime", "tests", "stacks", "schema", "docs", "Pulumi.yaml", "pyproject.toml")
# Only a bound on a mutant that hangs: a normal run takes seconds, but a cold CI machine's first
# interpreter once needed over 120 s to import the project's dependencies from disk.
RUN_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class KnownBug:
    id: str
    path: str
    before: str
    after: str
    tests: tuple[str, ...]


BUGS = (
    KnownBug(
        "negative-route-percentage",
        "infra/plan/config.py",
        "traffic_percentage: int = Field(ge=0, le=100)",
        "traffic_percentage: int = Field(le=100)",
        ("tests/infra/plan/test_config.py",),
    ),
    KnownBug(
        "zero-percent-route-dropped",
        "infra/plan/config.py",
        "traffic_percentage: int = Field(ge=0, le=100)",
        "traffic_percentage: int = Field(ge=1, le=100)",
        ("tests/infra/plan/test_config.py",),
    ),
    KnownBug(
        "names-differ-between-processes",
        "infra/plan/names.py",
        "return hashlib.sha256(text.encode()).hexdigest()[:length]",
        'return format(hash(text) % 16**length, f"0{length}x")',
        ("tests/infra/plan/test_names.py",),
    ),
    KnownBug(
        "side-effects-out-of-order",
        "infra/activator/handler.py",
        """        took = self.take_route()
        self.autoscaling.set_desired_capacity(
            AutoScalingGroupName=self.settings.group_name, DesiredCapacity=0, HonorCooldown=False
        )""",
        """        self.autoscaling.set_desired_capacity(
            AutoScalingGroupName=self.settings.group_name, DesiredCapacity=0, HonorCooldown=False
        )
        took = self.take_route()""",
        ("tests/infra/activator/test_activator_handler.py",),
    ),
    KnownBug(
        "entry-point-misroutes-alarms",
        "infra/activator/handler.py",
        'if "alarmData" in event:',
        'if "alarm" in event:',
        ("tests/infra/activator/test_activator_handler.py",),
    ),
    KnownBug(
        "diff-forgets-removals",
        "infra/review/diff.py",
        "for key in sorted(set(before) | set(after)):",
        "for key in sorted(after):",
        ("tests/infra/review/test_review_diff.py",),
    ),
    KnownBug(
        "gpu-image-hash-ignores-python",
        "models/environment.py",
        """                "gpu" if self.gpu else "cpu",
                self.python_version,
""",
        """                "gpu" if self.gpu else "cpu",
""",
        ("tests/models/test_environment_hash.py",),
    ),
    KnownBug(
        "payload-limit-default-in-decimal-megabytes",
        "runtime/settings.py",
        "DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024",
        "DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1000 * 1000",
        ("tests/runtime/test_runtime_settings.py",),
    ),
    KnownBug(
        "iam-action-dropped",
        "infra/components/permissions.py",
        '"Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],',
        '"Action": ["ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability"],',
        ("tests/infra/components/test_permissions.py",),
    ),
    KnownBug(
        "iam-condition-dropped",
        "infra/components/permissions.py",
        '"Condition": {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},',
        "",
        ("tests/infra/components/test_permissions.py",),
    ),
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in COPIED:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, root / name)
    return root


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: bug.id)
def test_the_suite_catches_a_known_bug(bug: KnownBug, pristine: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(pristine, project)
    source = project / bug.path
    text = source.read_text()
    assert text.count(bug.before) == 1, f"{bug.id}: the sample no longer matches {bug.path}; update it to the code"
    source.write_text(text.replace(bug.before, bug.after))

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "--noconftest", "-p", "no:cacheprovider", *bug.tests],
        cwd=project,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )

    # 1 = tests ran and failed; 2+ would be a broken copy (collection error), which proves nothing.
    assert result.returncode == 1, f"{bug.id} was not caught:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"

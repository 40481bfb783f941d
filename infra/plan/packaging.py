"""Packaging rules that the packaging checks (models/checks.py) and the policy pack
(policies/rules/served_models.py) both apply: one rule per packaging finding, its id, one
line and level per environment, and what counts as Anaconda's channels.

Why one module: the two used to disagree (the check made the `defaults` channel an error
everywhere, the pack advised in dev), so the pack's advisory rule could never fire. It sits
in the plan, upstream of both, because the checks run before any resource exists and the
pack after; neither may import the other (tests/test_layout.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

Level = Literal["advisory", "mandatory"]
# An unknown environment gets prod's levels: a guardrail fails closed.
STRICTEST_ENVIRONMENT = "prod"
ADVISORY: Mapping[str, Level] = {"dev": "advisory", "staging": "advisory", "prod": "advisory"}
MANDATORY: Mapping[str, Level] = {"dev": "mandatory", "staging": "mandatory", "prod": "mandatory"}
# Databricks is stricter in production: what only costs reproducibility or validation elsewhere.
MANDATORY_IN_PROD: Mapping[str, Level] = {"dev": "advisory", "staging": "advisory", "prod": "mandatory"}


@dataclass(frozen=True)
class PackagingRule:
    """A packaging check as a rule of the pack: its id names the rule and the finding."""

    id: str
    description: str
    levels: Mapping[str, Level]


MODEL_SIGNATURE = "model-signature"
NO_CONDA_DEFAULTS_CHANNEL = "no-conda-defaults-channel"
BUILD_TIME = "build-time"
BUILD_TIME_MARGIN = "build-time-margin"
# Every packaging finding of models/checks.py that `kiln plan` can see (the reload check's and
# the build context's exist only in `kiln bake`).
PACKAGING_RULES: tuple[PackagingRule, ...] = (
    # Without a signature requests are not validated; Unity Catalog requires one.
    PackagingRule(MODEL_SIGNATURE, "Served models carry an MLflow signature.", MANDATORY_IN_PROD),
    PackagingRule("input-example-missing", "Served models carry an input example to predict before serving.", ADVISORY),
    PackagingRule("requirements-missing", "Served models declare their pip requirements.", MANDATORY),
    PackagingRule("requirements-unpinned", "Served models pin every requirement to an exact version.", MANDATORY_IN_PROD),
    PackagingRule("dev-packages", "Serving requirements hold no test, notebook or lint tooling.", ADVISORY),
    # Anaconda's commercial terms make it a licence question (advice) before prod, and its
    # `defaults` channel drifts between builds, which an image tag must not (mandatory in prod).
    PackagingRule(NO_CONDA_DEFAULTS_CHANNEL, "Served models do not depend on Anaconda's `defaults` conda channel.",
                  MANDATORY_IN_PROD),
    PackagingRule("mlflow-legacy", "Served models were logged with MLflow 1.18 or later.", MANDATORY),
    PackagingRule("python-unsupported", "Served models use a Python Kiln has a base image for.", MANDATORY),
    PackagingRule("gpu-framework-on-cpu", "GPU frameworks are served on GPU compute types.", ADVISORY),
    PackagingRule("cpu-torch-on-gpu", "A CPU-only torch is not served on a GPU compute type.", MANDATORY),
    PackagingRule("no-gpu-framework-on-gpu", "GPU compute types serve models that use a GPU framework.", ADVISORY),
    PackagingRule("resolved-elsewhere", "GPU packages were resolved for the image's platform.", ADVISORY),
    PackagingRule("gpu-driver-too-old", "The CUDA a model's packages carry runs on the GPU AMI's driver.", MANDATORY),
    PackagingRule("gpu-two-cuda-stacks", "A GPU image carries one CUDA stack.", ADVISORY),
    PackagingRule("memory-per-concurrency", "A worker's model fits the compute type's memory per worker.", MANDATORY),
    PackagingRule("gpu-spread-unsupported", "Only Transformers models are spread across GPUs.", MANDATORY),
    PackagingRule("image-disk-builder", "The image builds within the largest CodeBuild disk.", MANDATORY),
    PackagingRule("image-disk-instance", "The pulled image and model fit the instance root volume.", MANDATORY),
    # Two rules, not one whose level follows the estimate: over the timeout CodeBuild stops the
    # build (and the deployment with it) in every environment; close to it, a slow mirror or a
    # cold cache may, which is worth knowing but no reason to stop.
    PackagingRule(BUILD_TIME, "The estimated image build time is within the build timeout.", MANDATORY),
    PackagingRule(BUILD_TIME_MARGIN, "The estimated image build time leaves a margin under the build timeout.",
                  ADVISORY),
)
PACK_RULE_LEVELS: Mapping[str, Mapping[str, Level]] = {rule.id: rule.levels for rule in PACKAGING_RULES}
# Set (to 1) by `kiln check`, or by a CI job running `pulumi preview --policy-pack policies`:
# the program then leaves the packaging findings that are pack rules to the pack, so they are
# reported beside the other violations, instead of stopping before any resource is declared.
PACK_ENFORCES_PACKAGING = "KILN_POLICY_PACK_ENFORCES_PACKAGING"


def finding_level(rule_id: str, environment: str) -> Literal["error", "warning"]:
    """A packaging finding's level where the pack rule of the same id has `environment`'s
    level: mandatory → error, advisory → warning."""
    levels = PACK_RULE_LEVELS[rule_id]
    return "error" if levels.get(environment, levels[STRICTEST_ENVIRONMENT]) == "mandatory" else "warning"


def pack_enforces_packaging(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PACK_ENFORCES_PACKAGING, "") == "1"


@contextmanager
def packaging_enforced_by_pack() -> Iterator[None]:
    """For a program run in this process (`kiln check`): the pack enforces its packaging rules."""
    previous = os.environ.get(PACK_ENFORCES_PACKAGING)
    os.environ[PACK_ENFORCES_PACKAGING] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PACK_ENFORCES_PACKAGING, None)
        else:
            os.environ[PACK_ENFORCES_PACKAGING] = previous

# Anaconda's channels under its commercial terms, by every name conda accepts for them:
# `defaults`, the channels it expands to (pkgs/main, pkgs/r, pkgs/msys2 on repo.anaconda.com),
# and their anaconda.org mirrors (`anaconda`, `main`, `r`, `msys2`, also written as URLs).
ANACONDA_CHANNELS = frozenset({"defaults", "anaconda", "main", "r", "msys2", "pkgs/main", "pkgs/r", "pkgs/msys2"})
ANACONDA_HOSTS = ("repo.anaconda.com", "repo.continuum.io")


def is_anaconda_channel(channel: str) -> bool:
    name = channel.strip().lower().removesuffix("/")
    if any(host in name for host in ANACONDA_HOSTS):
        return True
    return re.sub(r"^(https?://)?(conda\.)?anaconda\.org/", "", name) in ANACONDA_CHANNELS


def anaconda_channels(channels: Iterable[object]) -> list[str]:
    """The channels among `channels` that are Anaconda's."""
    return [str(channel) for channel in channels if is_anaconda_channel(str(channel))]

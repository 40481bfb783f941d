"""Packaging rules that the packaging checks (models/checks.py) and the policy pack
(policies/rules/served_models.py) both apply: their ids and levels per environment, and what
counts as Anaconda's channels.

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
from typing import Literal

Level = Literal["advisory", "mandatory", "disabled"]
# An unknown environment gets prod's levels: a guardrail fails closed.
STRICTEST_ENVIRONMENT = "prod"

# Each id names both the rule and the packaging finding: one name for one problem.
# Without a signature requests are not validated; Databricks and Unity Catalog require one in prod.
MODEL_SIGNATURE = "model-signature"
# Anaconda's commercial terms make it a licence question (advice) before prod, and its
# `defaults` channel drifts between builds, which an image tag must not (mandatory in prod).
NO_CONDA_DEFAULTS_CHANNEL = "no-conda-defaults-channel"
PACK_RULE_LEVELS: Mapping[str, Mapping[str, Level]] = {
    MODEL_SIGNATURE: {"dev": "advisory", "staging": "advisory", "prod": "mandatory"},
    NO_CONDA_DEFAULTS_CHANNEL: {"dev": "advisory", "staging": "advisory", "prod": "mandatory"},
}
# Set (to 1) by `kiln check`, or by a CI job running `pulumi preview --policy-pack policies`:
# the program then leaves the packaging findings that are pack rules to the pack, so they are
# reported beside the other violations, instead of stopping before any resource is declared.
PACK_ENFORCES_PACKAGING = "KILN_POLICY_PACK_ENFORCES_PACKAGING"


def pack_rule_level(rule_id: str, environment: str) -> Level:
    levels = PACK_RULE_LEVELS[rule_id]
    return levels.get(environment, levels[STRICTEST_ENVIRONMENT])


def finding_level(rule_id: str, environment: str) -> Literal["error", "warning"] | None:
    """A packaging finding's level where the pack rule of the same id has `environment`'s
    level: mandatory → error, advisory → warning, disabled → no finding."""
    level = pack_rule_level(rule_id, environment)
    return None if level == "disabled" else "error" if level == "mandatory" else "warning"


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

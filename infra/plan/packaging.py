"""Packaging rules that the packaging checks (models/checks.py) and the policy pack
(policies/rules/served_models.py) both apply: what counts as Anaconda's channels, and how much
a model on them matters in each environment.

Why one module: the two used to disagree (the check made the `defaults` channel an error
everywhere, the pack advised in dev), so the pack's advisory rule could never fire. It sits
in the plan, upstream of both, because the checks run before any resource exists and the
pack after; neither may import the other (tests/test_layout.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

Level = Literal["advisory", "mandatory", "disabled"]

# The id of the rule and of the packaging finding: one name for one problem.
NO_CONDA_DEFAULTS_CHANNEL = "no-conda-defaults-channel"
# Anaconda's commercial terms make it a licence question (advice) before prod, and its
# `defaults` channel drifts between builds, which an image tag must not (mandatory in prod).
NO_CONDA_DEFAULTS_CHANNEL_LEVELS: Mapping[str, Level] = {"dev": "advisory", "staging": "advisory", "prod": "mandatory"}

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

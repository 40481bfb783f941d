"""Replay one served model's traffic through every policy, at the planned numbers and at both
ends of every estimate's range, so a report can say how much of a result is an estimate."""

from __future__ import annotations

from dataclasses import dataclass

from infra.plan.launch_timing import BOUNDS
from infra.plan.stack import ServedModelPlan
from infra.simulator.model import Result, simulate
from infra.simulator.scaling_policies import policies_for
from infra.simulator.trace import Trace


@dataclass(frozen=True)
class Replay:
    """One policy's result with the planned numbers, and with every estimate at its low
    (everything fast) and high (everything slow) end."""

    planned: Result
    low: Result
    high: Result


def replay(plan: ServedModelPlan, trace: Trace, slower: float = 1.0) -> list[Replay]:
    runs = {bound: [simulate(policy, trace) for policy in policies_for(plan, bound, slower)] for bound in BOUNDS}
    return [Replay(planned, low, high) for low, planned, high in zip(runs["low"], runs["planned"], runs["high"], strict=True)]

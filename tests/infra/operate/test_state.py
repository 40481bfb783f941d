"""The word for a live group, from states moto cannot produce: a group emptied by hand, and
a refresh at its checkpoint."""

from __future__ import annotations

import dataclasses

from rich.console import Console

from infra.commands.status import print_status
from infra.operate.state import (
    GroupState,
    Refresh,
    ServedModelStatus,
    ServingState,
    StackStatus,
    TargetGroupHealth,
    TargetHealth,
    serving_state,
)

GROUP = GroupState(name="kiln-prod-scorer-champion", desired=2, minimum=2, maximum=4, in_service=2, pending=0, warm=0,
                   target_groups=[TargetGroupHealth("tg", [TargetHealth("i-1", "healthy"), TargetHealth("i-2", "healthy")])],
                   refresh=None, alarms_in_alarm=[], activities=[], model="models:/scorer/7", image="repo@sha256:ab")


def test_an_emptied_group_without_an_activator_is_not_ready_and_says_so() -> None:
    empty = dataclasses.replace(GROUP, desired=0, in_service=0, target_groups=[TargetGroupHealth("tg", [])])

    assert serving_state(empty, scale_to_zero=True) == (
        ServingState.SCALED_TO_ZERO, ["no instance desired: the activator wakes the group on the next request"])
    state, reasons = serving_state(empty, scale_to_zero=False)
    assert state is ServingState.NOT_READY and "scaleToZeroEnabled is off" in reasons[0]


def test_a_refresh_waiting_at_its_checkpoint_is_updating_while_the_old_instances_serve() -> None:
    waiting = dataclasses.replace(GROUP, refresh=Refresh("r-1", "Baking", 50, next_checkpoint=100))

    assert serving_state(waiting, scale_to_zero=False) == (
        ServingState.UPDATING, ["instance refresh Baking 50 %, next checkpoint at 100 %"])


def test_a_finished_rollback_leaves_the_group_ready() -> None:
    rolled_back = dataclasses.replace(GROUP, refresh=Refresh("r-1", "RollbackSuccessful", 100,
                                                             rollback_reason="alarm kiln-prod-rollout-5xx in ALARM"))

    assert serving_state(rolled_back, scale_to_zero=False) == (ServingState.READY, [])
    assert rolled_back.refresh.rolled_back and not rolled_back.refresh.active


def test_the_table_says_why_the_last_refresh_rolled_back() -> None:
    rolled_back = dataclasses.replace(GROUP, refresh=Refresh("r-1", "RollbackSuccessful", 100,
                                                             rollback_reason="alarm kiln-prod-rollout-5xx in ALARM"))
    status = StackStatus("prod", "us-east-1", [ServedModelStatus("scorer", "champion", ServingState.READY, [], rolled_back)])
    out = Console(record=True, width=200)

    print_status(out, status)

    text = out.export_text()
    assert "scorer/champion" in text and "READY" in text and "models:/scorer/7" in text
    assert "last instance refresh RollbackSuccessful: alarm kiln-prod-rollout-5xx in ALARM" in text

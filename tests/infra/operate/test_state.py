"""The word for a live group, from states moto cannot produce: a group emptied by hand, and
a refresh at its checkpoint."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

from rich.console import Console

from infra.commands.status import print_status
from infra.operate.state import (
    Activity,
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


def test_a_scale_to_zero_group_waking_up_is_still_scaled_to_zero_until_a_target_fails() -> None:
    launching = dataclasses.replace(GROUP, desired=1, in_service=0, pending=1, target_groups=[TargetGroupHealth("tg", [])])
    registering = dataclasses.replace(GROUP, desired=1, in_service=1, pending=0,
                                      target_groups=[TargetGroupHealth("tg", [TargetHealth("i-1", "initial")])])
    failing = dataclasses.replace(GROUP, desired=1, in_service=1, pending=0, target_groups=[TargetGroupHealth(
        "tg", [TargetHealth("i-1", "unhealthy", "Target.FailedHealthChecks", "Health checks failed")])])

    # The activator holds the requests of a waking model: it answers, only later.
    assert serving_state(launching, scale_to_zero=True) == (ServingState.SCALED_TO_ZERO, [
        "waking: 1 pending, 0 in service of 1; the activator holds requests until one is healthy"])
    assert serving_state(registering, scale_to_zero=True)[0] is ServingState.SCALED_TO_ZERO
    # A failing instance is NOT_READY, and without scale to zero nothing holds the requests.
    assert serving_state(failing, scale_to_zero=True) == (ServingState.NOT_READY, [
        "tg: i-1 unhealthy (Target.FailedHealthChecks: Health checks failed)"])
    assert serving_state(launching, scale_to_zero=False)[0] is ServingState.NOT_READY


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


def test_a_group_that_cannot_launch_says_why_in_its_last_scaling_activities() -> None:
    """moto records no scaling activity, so this is where a capacity error reaches the reader:
    the table lists the latest ones, and --json carries them with ISO times."""
    failed = Activity(datetime(2026, 11, 27, 5, 12, tzinfo=UTC), "Failed", "Launching a new EC2 instance.  Status Reason: "
                      "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested.")
    stuck = dataclasses.replace(GROUP, in_service=0, target_groups=[TargetGroupHealth("tg", [])], activities=[failed])
    state, reasons = serving_state(stuck, scale_to_zero=False)
    status = StackStatus("prod", "us-east-1", [ServedModelStatus("scorer", "champion", state, reasons, stuck)])
    out = Console(record=True, width=300)

    print_status(out, status)

    text = out.export_text()
    assert state is ServingState.NOT_READY
    assert "no target registered yet (0 in service, 0 pending of 2)" in text
    assert "2026-11-27 05:12 Failed: Launching a new EC2 instance.  Status Reason: We currently do not have sufficient" in text
    [activity] = json.loads(json.dumps(status.as_json()))["servedModels"][0]["group"]["activities"]
    assert (activity["time"], activity["status"]) == ("2026-11-27T05:12:00+00:00", "Failed")

"""Readiness means "can answer" (DESIGN decision 4), and SIGTERM drains.

A model that fails to load or to predict its input example, or files that do not match
the planned digest, never turn /ping to 200: the runtime logs why and exits non-zero.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.runtime_models import FailsToLoad, Switchboard, save
from tests.runtime_support import RunningProcess, fraud_model_dir, moto_s3, start_runtime, upload_model

__all__ = ["fraud_model_dir", "moto_s3"]

EXIT_TIMEOUT_SECONDS = 60


def refused_start(runtime: RunningProcess) -> tuple[list[int], int | None]:
    """Every /ping status the runtime answered before it exited, and its exit code."""
    try:
        seen = runtime.wait_for_ping()
        code = runtime.process.wait(EXIT_TIMEOUT_SECONDS)
    finally:
        runtime.stop()
    return seen, code


@pytest.mark.parametrize(
    ("model", "action", "logged"),
    [(FailsToLoad(), "ok", "weights are corrupt"), (Switchboard(), "raise", "switchboard was told to fail")],
    ids=["fails-to-load", "fails-warm-up"],
)
def test_readiness_stays_503_and_the_runtime_exits_when_the_model_cannot_answer(
    tmp_path: Path, model: object, action: str, logged: str
) -> None:
    saved = save(model, tmp_path / "broken", example_action=action)

    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(saved))

    seen, code = refused_start(runtime)

    assert 200 not in seen
    assert code != 0
    assert logged in runtime.log()


def test_files_that_do_not_match_the_digest_refuse_to_start(tmp_path: Path, fraud_model_dir: Path,
                                                             moto_s3: dict[str, str]) -> None:
    uri = upload_model(moto_s3, fraud_model_dir)
    planned = "0" * 64
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=uri, KILN_MODEL_DIGEST=planned,
                            KILN_CACHE_DIR=str(tmp_path / "cache"), **moto_s3)

    seen, code = refused_start(runtime)

    assert 200 not in seen
    assert code != 0
    assert "digest mismatch" in runtime.log()


def test_a_gpu_compute_type_without_a_usable_gpu_never_turns_ready(tmp_path: Path, fraud_model_dir: Path) -> None:
    """Issue 18: MLflow falls back to the CPU on its own; with KILN_REQUIRE_GPU (the instance's user data on
    a GPU compute type) the worker refuses before loading, and the log says what it found instead."""
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(fraud_model_dir), KILN_REQUIRE_GPU="true")

    seen, code = refused_start(runtime)

    assert 200 not in seen
    assert code != 0
    assert ("worker 0: no usable GPU, and this compute type requires one (KILN_REQUIRE_GPU): device cpu (no GPU "
            "framework in this environment (torch is not installed)") in runtime.log()


def test_each_worker_sees_its_own_gpu(tmp_path: Path, fraud_model_dir: Path) -> None:
    """Issue 18: every worker loaded onto device 0; with KILN_GPUS each worker is shown one GPU."""
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(fraud_model_dir), KILN_WORKERS="3", KILN_GPUS="2")
    try:
        assert runtime.wait_for_ping()[-1] == 200
        devices = httpx.get(runtime.url + "/version", timeout=5).json()["devices"]
    finally:
        runtime.stop()

    assert [(d["worker"], d["cuda_visible_devices"]) for d in devices] == [(0, "0"), (1, "1"), (2, "0")]


def test_missing_model_uri_is_a_settings_error(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI="")
    code = runtime.process.wait(EXIT_TIMEOUT_SECONDS)

    assert code == 2
    assert "KILN_MODEL_URI" in runtime.log()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_sigterm_refuses_new_requests_drains_in_flight_ones_and_exits_0(tmp_path: Path, stop: signal.Signals) -> None:
    model = save(Switchboard(), tmp_path / "switchboard", example_action="ok")
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(model), KILN_WORKERS="1", KILN_DRAIN_SECONDS="20")
    body = json.dumps({"dataframe_split": {"columns": ["action"], "data": [["sleep:1.5"]]}})
    in_flight: list[httpx.Response] = []
    try:
        assert runtime.wait_for_ping()[-1:] == [200], runtime.log()
        request = threading.Thread(target=lambda: in_flight.append(
            httpx.post(f"{runtime.url}/invocations", content=body, headers={"content-type": "application/json"}, timeout=30)))
        request.start()
        runtime.wait_for_in_flight(1)

        runtime.process.send_signal(stop)
        pings = runtime.wait_for_status(503, "/ping")
        refused = httpx.post(f"{runtime.url}/invocations", content=body, headers={"content-type": "application/json"})
        request.join(30)
        code = runtime.process.wait(EXIT_TIMEOUT_SECONDS)
    finally:
        runtime.stop()

    assert pings[-1] == 503
    assert refused.status_code == 503
    assert [r.status_code for r in in_flight] == [200]
    assert code == 0
    assert f"{stop.name}: readiness is 503; draining 1 unanswered request(s)" in runtime.log()

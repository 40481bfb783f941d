"""Slow and failing predictions, oversized payloads and auth never hang a request or take the
runtime down (overload: test_runtime_pressure.py). One runtime with one worker, a 2 s timeout,
a 4 KiB payload limit and bearer-token auth, serving the test Switchboard model."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from runtime.auth import token_sha256
from tests.runtime_models import Switchboard, save, switchboard_body
from tests.runtime_support import RunningProcess, start_runtime

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    tmp = tmp_path_factory.mktemp("failures")
    model = save(Switchboard(), tmp / "switchboard", example_action="ok")
    process = start_runtime(tmp, "runtime", KILN_MODEL_URI=str(model), KILN_WORKERS="1", KILN_REQUEST_TIMEOUT_SECONDS="2", KILN_MAX_PAYLOAD_BYTES="4096",
                            KILN_AUTH_TOKEN_SHA256=token_sha256(TOKEN))
    try:
        assert process.wait_for_ping()[-1:] == [200], process.log()
        yield process
    finally:
        process.stop()


def _invoke(runtime: RunningProcess, *actions: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{runtime.url}/invocations", content=switchboard_body(*actions),
                      headers={"content-type": "application/json", **(AUTH if headers is None else headers)}, timeout=30)


def _wait_until_ready(runtime: RunningProcess) -> None:
    assert runtime.wait_for_ping(timeout=60)[-1:] == [200], runtime.log()


def test_exception_in_predict_is_500_saying_so_and_the_worker_survives(runtime) -> None:
    failed = _invoke(runtime, "raise")
    after = _invoke(runtime, "ok")

    assert failed.status_code == 500
    assert failed.json()["message"].startswith("the model's predict failed (error id ")
    assert after.status_code == 200
    assert after.json() == {"predictions": [{"done": "ok"}]}


def test_payload_over_the_limit_gets_413(runtime) -> None:
    response = _invoke(runtime, "x" * 5000)

    assert response.status_code == 413
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


def test_invocation_without_a_valid_token_gets_401(runtime) -> None:
    missing = _invoke(runtime, "ok", headers={})
    wrong = _invoke(runtime, "ok", headers={"authorization": "Bearer guess"})
    right = _invoke(runtime, "ok")

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.headers["www-authenticate"] == "Bearer"


def test_ping_and_health_stay_open_without_a_token(runtime) -> None:
    assert httpx.get(f"{runtime.url}/ping").status_code == 200
    assert httpx.get(f"{runtime.url}/health").status_code == 200
    assert httpx.get(f"{runtime.url}/metrics").status_code == 401


def test_request_over_the_timeout_gets_504_and_a_replaced_worker_serves_the_next(runtime) -> None:
    slow = _invoke(runtime, "sleep:60")
    _wait_until_ready(runtime)
    after = _invoke(runtime, "ok")

    assert slow.status_code == 504
    assert slow.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert after.status_code == 200

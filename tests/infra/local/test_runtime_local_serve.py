"""`kiln serve STACK` starts the stack's served models as local runtimes and splits an
endpoint's traffic by the stack's weights, so clients can be tested before a deploy."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import stack_config, write_stack
from tests.runtime_support import RunningProcess, free_port, start

REQUESTS = 100
BODY = json.dumps({"dataframe_split": {"columns": ["amount", "merchant_risk", "hour", "card_age_days"],
                                       "data": [[100.0, 0.7, 5.0, 970.0]]}})


@pytest.fixture(scope="module")
def served_stack(tmp_path_factory: pytest.TempPathFactory, example_store) -> Iterator[RunningProcess]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("serve")
    config = stack_config("staging", example_store)
    endpoint = config["kiln:endpoints"][0]
    endpoint["trafficConfig"]["routes"] = [
        {"servedModelName": "champion", "trafficPercentage": 75},
        {"servedModelName": "challenger", "trafficPercentage": 25},
    ]
    path = write_stack(tmp, config, "localtest")
    port = free_port()
    process = start([sys.executable, "-m", "infra.commands.cli", "serve", str(path), "--port", str(port),
                     "--endpoint", endpoint["name"], "--mlflow-tracking-uri", example_store.tracking_uri],
                    {}, tmp / "serve.log", port)
    try:
        assert process.wait_for_ping(timeout=180)[-1:] == [200], process.log()
        yield process
    finally:
        process.stop()


def test_endpoint_traffic_is_split_by_the_stack_weights(served_stack: RunningProcess) -> None:
    counts: Counter[str] = Counter()
    with httpx.Client(base_url=served_stack.url, timeout=30) as client:
        for _ in range(REQUESTS):
            response = client.post("/serving-endpoints/fraud-scorer/invocations", content=BODY,
                                   headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            counts[response.headers["x-kiln-served-model"]] += 1

    assert abs(counts["champion"] - 75) <= 5
    assert abs(counts["challenger"] - 25) <= 5


def test_one_served_model_can_be_called_directly(served_stack: RunningProcess) -> None:
    response = httpx.post(f"{served_stack.url}/serving-endpoints/fraud-scorer/served-models/challenger/invocations",
                          content=BODY, headers={"content-type": "application/json"}, timeout=30)

    assert response.status_code == 200
    assert response.headers["x-kiln-served-model"] == "challenger"
    # The runtime's own timings reach the client through the router.
    assert "predict;dur=" in response.headers["server-timing"]
    assert "POST /serving-endpoints/fraud-scorer/served-models/challenger/invocations → challenger 200" in served_stack.log()


def test_runtime_and_worker_log_lines_name_their_served_model_not_only_a_digest(served_stack: RunningProcess) -> None:
    lines = served_stack.log().splitlines()

    for served in ("champion", "challenger"):
        label = f"[fraud-scorer/{served} (fraud-scorer v"
        assert any(" kiln-runtime " + label in line and " ready on port " in line for line in lines), served_stack.log()
        assert any(" worker[" in line and label in line for line in lines), served_stack.log()


def test_every_request_through_the_router_is_in_the_access_log(served_stack: RunningProcess) -> None:
    response = httpx.post(f"{served_stack.url}/serving-endpoints/fraud-scorer/invocations", content=BODY,
                          headers={"content-type": "application/json"}, timeout=30)
    missing = httpx.post(f"{served_stack.url}/serving-endpoints/nope/invocations", content=BODY,
                         headers={"content-type": "application/json"}, timeout=30)

    served = response.headers["x-kiln-served-model"]
    assert re.search(rf"POST /serving-endpoints/fraud-scorer/invocations → {served} 200 \d+ ms", served_stack.log())
    assert missing.status_code == 404 and "POST /serving-endpoints/nope/invocations → 404" in served_stack.log()


def test_unknown_endpoint_is_not_found(served_stack: RunningProcess) -> None:
    response = httpx.post(f"{served_stack.url}/serving-endpoints/nope/invocations", content=BODY,
                          headers={"content-type": "application/json"})

    assert response.status_code == 404


def test_a_gpu_served_model_serves_on_the_cpu_locally_and_says_so(tmp_path, example_store) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: locally nothing requires a GPU (only the instance's user data does), but `kiln serve`
    names the device, so a GPU model answering from the CPU is never mistaken for one on its GPU."""
    from infra.local.stack import start_stack

    config = stack_config("dev", example_store)
    endpoint = config["kiln:endpoints"][0]
    endpoint["servedModels"][0]["computeType"] = "GPU_MEDIUM"
    path = write_stack(tmp_path, config, "localgpu")

    local = start_stack(str(path), example_store.tracking_uri, endpoint["name"])
    try:
        [runtime] = [r for r in local.runtimes if r.served_model == endpoint["servedModels"][0]["name"]]
        answer = httpx.post(f"{runtime.url}/invocations", content=BODY, headers={"content-type": "application/json"})
    finally:
        local.stop()

    assert answer.status_code == 200
    assert runtime.device["device"] == "cpu"
    assert runtime.cpu_fallback_note() == (
        f"{endpoint['name']}/{runtime.served_model} is served on a GPU compute type but runs on the CPU here (no GPU "
        "framework in this environment (torch is not installed)); on its instance the runtime refuses to become "
        "ready without a usable GPU")

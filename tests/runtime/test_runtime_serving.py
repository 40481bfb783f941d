"""The runtime answers like MLflow's scoring server, and bad input never costs a worker.

One runtime (fetched from moto's S3 by digest, two workers) and one `mlflow models serve`
on the same example model, both real processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime_support import (
    RunningProcess,
    fraud_model_dir,
    free_port,
    moto_s3,
    server_timing,
    start,
    start_runtime,
    upload_model,
)

__all__ = ["fraud_model_dir", "moto_s3"]

ROWS = [[100.0, 0.73, 5.0, 970.0], [80.2, 0.04, 19.0, 691.9], [12.5, 0.99, 3.0, 10.0]]
COLUMNS = ["amount", "merchant_risk", "hour", "card_age_days"]
RECORDS = [dict(zip(COLUMNS, row)) for row in ROWS]
JSON = "application/json"

FORMATS = {
    "dataframe_split": (JSON, json.dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}})),
    "dataframe_records": (JSON, json.dumps({"dataframe_records": RECORDS})),
    "instances": (JSON, json.dumps({"instances": RECORDS})),
    "inputs": (JSON, json.dumps({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}})),
    "params": (JSON, json.dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}, "params": {}})),
    "csv": ("text/csv", ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n"),
    "csv_with_charset": ("text/csv; charset=utf-8", ",".join(COLUMNS) + "\n" + ",".join(map(str, ROWS[0])) + "\n"),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, fraud_model_dir: Path,
            moto_s3: dict[str, str]) -> Iterator[tuple[RunningProcess, RunningProcess]]:
    """(kiln runtime, mlflow models serve), started together to share the load time."""
    tmp = tmp_path_factory.mktemp("serving")
    uri = upload_model(moto_s3, fraud_model_dir)
    kiln = start_runtime(tmp, "kiln", KILN_MODEL_URI=uri, KILN_MODEL_DIGEST=uri.rstrip("/").rsplit("/", 1)[1],
                         KILN_WORKERS="2", KILN_ENDPOINT="fraud-scorer", KILN_SERVED_MODEL="champion",
                         KILN_CACHE_DIR=str(tmp / "cache"), **moto_s3)
    port = free_port()
    mlflow = start([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(fraud_model_dir),
                    "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                   # mlflow runs `uvicorn` from PATH: the one in this virtualenv.
                   {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}, tmp / "mlflow.log", port)
    try:
        assert kiln.wait_for_ping()[-1:] == [200], kiln.log()
        assert mlflow.wait_for_ping()[-1:] == [200], mlflow.log()
        yield kiln, mlflow
    finally:
        kiln.stop()
        mlflow.stop()


def _post(url: str, body: str | bytes, content_type: str | None = JSON, **headers: str) -> httpx.Response:
    if content_type:
        headers["content-type"] = content_type
    return httpx.post(url, content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("name", FORMATS)
def test_predictions_are_identical_to_mlflow_scoring_server(servers, name: str) -> None:
    kiln, mlflow = servers
    content_type, body = FORMATS[name]

    ours = _post(f"{kiln.url}/invocations", body, content_type)
    theirs = _post(f"{mlflow.url}/invocations", body, content_type)

    assert (ours.status_code, theirs.status_code) == (200, 200), ours.text
    assert ours.content == theirs.content
    assert ours.headers["content-type"] == theirs.headers["content-type"]


def test_alb_path_of_the_endpoint_predicts_and_names_the_served_model(servers) -> None:
    kiln, _ = servers
    response = _post(f"{kiln.url}/serving-endpoints/fraud-scorer/invocations", FORMATS["dataframe_split"][1])

    assert response.status_code == 200
    assert response.headers["x-kiln-served-model"] == "champion"


def test_path_of_another_endpoint_is_not_found(servers) -> None:
    kiln, _ = servers
    response = _post(f"{kiln.url}/serving-endpoints/other/invocations", FORMATS["dataframe_split"][1])

    assert response.status_code == 404


def test_version_names_model_digest_and_runtime(servers) -> None:
    kiln, _ = servers
    version = httpx.get(f"{kiln.url}/version").json()

    assert version["served_model"] == "champion"
    assert len(version["model_digest"]) == 64
    assert version["runtime_version"]
    assert version["mlflow_version"]


BAD_INPUTS = {
    "malformed_json": (JSON, '{"dataframe_split": {'),
    "json_list": (JSON, "[1, 2, 3]"),
    "no_format_key": (JSON, json.dumps({"rows": ROWS})),
    "wrong_columns": (JSON, json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}})),
    "wrong_types": (JSON, json.dumps({"dataframe_records": [{**RECORDS[0], "amount": "a lot"}]})),
    "wrong_content_type": ("application/xml", "<rows/>"),
    "missing_content_type": (None, FORMATS["dataframe_split"][1]),
    "other_charset": ("application/json; charset=latin-1", FORMATS["dataframe_split"][1]),
    "empty_body": (JSON, ""),
    "invalid_csv": ("text/csv", "amount,merchant_risk\n\"unterminated"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gets_400_naming_the_problem_and_the_next_request_succeeds(servers, name: str) -> None:
    kiln, _ = servers
    content_type, body = BAD_INPUTS[name]

    bad = _post(f"{kiln.url}/invocations", body, content_type)
    good = _post(f"{kiln.url}/invocations", FORMATS["dataframe_split"][1])

    assert bad.status_code == 400, bad.text
    assert bad.json()["error_code"] and bad.json()["message"]
    assert good.status_code == 200


def test_metrics_expose_in_flight_counts_by_status_and_latency(servers) -> None:
    kiln, _ = servers
    _post(f"{kiln.url}/invocations", FORMATS["dataframe_split"][1])
    _post(f"{kiln.url}/invocations", "", JSON)

    text = httpx.get(f"{kiln.url}/metrics").text

    assert "kiln_requests_in_flight 0" in text
    assert 'kiln_requests_total{status="200"}' in text
    assert 'kiln_requests_total{status="400"}' in text
    assert 'kiln_request_duration_seconds_bucket{le="+Inf"}' in text


def test_an_answer_says_where_its_time_went_inserver_timing(servers) -> None:
    kiln, _ = servers
    response = _post(f"{kiln.url}/invocations", FORMATS["dataframe_split"][1])

    timing = server_timing(response)

    assert list(timing) == ["body", "queue", "worker", "parse", "predict", "serialize", "total"]
    assert all(ms > 0 for ms in timing.values()), timing
    # The worker's stages happen within its call, which happens within the request.
    assert timing["parse"] + timing["predict"] + timing["serialize"] <= timing["worker"], timing
    assert timing["body"] + timing["queue"] + timing["worker"] <= timing["total"], timing


def test_a_request_refused_before_any_worker_has_noserver_timing(servers) -> None:
    kiln, _ = servers
    response = _post(f"{kiln.url}/serving-endpoints/other/invocations", FORMATS["dataframe_split"][1])

    assert response.status_code == 404
    assert "server-timing" not in response.headers

"""Inference tables: a runtime with KILN_CAPTURE_URI writes one row per sampled request to S3
(moto on loopback) under date=YYYY-MM-DD/, in the schema the stack's Glue table declares;
a dead S3 never delays or fails a request, and drain uploads what is left."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from infra.local.stack import free_port
from runtime.capture import COLUMNS, PARTITION_COLUMN, Exchange, InferenceCapture, arrow_schema
from runtime.settings import RuntimeSettings, SettingsError, settings_from_env
from tests.runtime_models import Switchboard, save, switchboard_body
from tests.runtime_support import RunningProcess, moto_s3, start_runtime

__all__ = ["moto_s3"]

BUCKET = "kiln-capture-test"
JSON_HEADERS = {"content-type": "application/json"}


# --- the buffer, without a server ----------------------------------------------------------

def _settings(**values: object) -> RuntimeSettings:
    return RuntimeSettings(model_uri="/m", endpoint="fraud-scorer", served_model="champion", model_name="fraud-scorer",
                           model_version="3", capture_uri="s3://bucket/inference-tables/fraud-scorer/", **values)


def _exchange(request: bytes = b'{"inputs": [1]}', response: bytes = b'{"predictions": [0]}') -> Exchange:
    return Exchange(str(uuid.uuid4()), None, 1_764_200_000.0, 0.012, 200, request, response)


def test_only_the_sampled_share_of_requests_is_captured() -> None:
    draws = iter([0.05, 0.3, 0.24, 0.9, 0.1, 0.25, 0.5, 0.0])
    capture = InferenceCapture(_settings(capture_sampling_fraction=0.25), put=lambda *_: None,
                               sample=lambda: next(draws))

    assert [capture.sampled() for _ in range(8)] == [True, False, True, False, True, False, False, True]


def test_memory_stays_within_the_buffer_cap_and_rows_over_it_are_dropped_and_counted() -> None:
    capture = InferenceCapture(_settings(capture_max_buffered_bytes=4000), put=lambda *_: None)

    for _ in range(20):
        capture.offer(_exchange(b"x" * 300, b"y" * 300))

    assert capture.pending == 3  # 3 × (512 + 600) fits 4000, a 4th does not
    assert capture.dropped["buffer_full"] == 17
    assert 'kiln_capture_records_dropped_total{reason="buffer_full"} 17' in capture.metric_lines()


def test_the_buffer_cap_counts_a_non_ascii_body_in_bytes_not_characters() -> None:
    capture = InferenceCapture(_settings(capture_max_buffered_bytes=4000), put=lambda *_: None)

    for _ in range(5):
        capture.offer(_exchange("é".encode() * 300, "ü".encode() * 300))

    assert capture.pending == 2  # 2 × (512 + 1200 bytes) fits 4000; counted in characters, 3 would
    assert capture.dropped["buffer_full"] == 3


def test_a_body_over_the_size_cap_is_stored_as_null_with_its_size_kept() -> None:
    rows: list[bytes] = []
    capture = InferenceCapture(_settings(capture_max_body_bytes=10, capture_format="jsonl"),
                               put=lambda bucket, key, body: rows.append(body))
    capture.offer(_exchange(b'{"inputs": [1, 2, 3]}', b"[0]"))

    asyncio.run(capture.flush())

    row = json.loads(rows[0])
    assert row["request"] is None
    assert row["response"] == "[0]"
    assert row["request_metadata"]["request_bytes"] == "21"


def test_a_failed_upload_drops_its_batch_counts_it_and_frees_its_memory() -> None:
    def unreachable(bucket: str, key: str, body: bytes) -> None:
        raise ConnectionError("S3 is unreachable")

    capture = InferenceCapture(_settings(), put=unreachable)
    for _ in range(5):
        capture.offer(_exchange())

    asyncio.run(capture.flush())

    assert capture.dropped["upload_failed"] == 5
    assert capture.written == 0
    assert "kiln_capture_buffered_bytes 0" in capture.metric_lines()


@pytest.mark.parametrize("variable, value", [
    ("KILN_CAPTURE_URI", "bucket/prefix/"),
    ("KILN_CAPTURE_SAMPLING_FRACTION", "0"),
    ("KILN_CAPTURE_SAMPLING_FRACTION", "1.5"),
    ("KILN_CAPTURE_FORMAT", "csv"),
])
def test_capture_settings_that_cannot_work_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        settings_from_env({"KILN_MODEL_URI": "/m", variable: value})


def test_the_capture_settings_the_plan_writes_are_the_ones_the_runtime_reads() -> None:
    settings = _settings(capture_sampling_fraction=0.1, capture_format="jsonl", capture_flush_seconds=5.0)

    assert settings_from_env(settings.as_env()) == settings


# --- a real runtime writing to moto's S3 ----------------------------------------------------

@pytest.fixture(scope="module")
def switchboard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(Switchboard(), tmp_path_factory.mktemp("capture") / "switchboard", example_action="ok")


@pytest.fixture(scope="module")
def s3(moto_s3: dict[str, str]):  # type: ignore[no-untyped-def]
    client = boto3.client("s3", endpoint_url=moto_s3["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def capturing(tmp_path: Path, switchboard: Path, moto_s3: dict[str, str],
              request: pytest.FixtureRequest) -> Iterator[tuple[RunningProcess, str]]:
    """A runtime capturing to its own prefix; parametrized with extra KILN_* env."""
    prefix = f"inference-tables/{uuid.uuid4().hex[:8]}/"
    env = {**moto_s3, "AWS_REGION": "us-east-1", **getattr(request, "param", {})}
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(switchboard), KILN_WORKERS="1",
                            KILN_ENDPOINT="fraud-scorer", KILN_SERVED_MODEL="champion", KILN_MODEL_NAME="switchboard",
                            KILN_MODEL_VERSION="7", KILN_CAPTURE_URI=f"s3://{BUCKET}/{prefix}", **env)
    try:
        assert runtime.wait_for_ping()[-1] == 200, runtime.log()
        yield runtime, prefix
    finally:
        runtime.stop()


def _invoke(runtime: RunningProcess, *actions: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{runtime.url}/invocations", content=switchboard_body(*actions),
                      headers={**JSON_HEADERS, **(headers or {})}, timeout=30)


def _stop(runtime: RunningProcess) -> None:
    runtime.stop()
    assert runtime.process.returncode == 0, runtime.log()


def _objects(s3, prefix: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listed}


def _download(objects: dict[str, bytes], prefix: str, directory: Path) -> Path:
    for key, body in objects.items():
        target = directory / key.removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    return directory


def test_sampled_rows_read_back_with_the_declared_schema_under_a_date_partition(capturing, s3, tmp_path) -> None:
    runtime, prefix = capturing
    answers = [_invoke(runtime, "ok", headers={"x-client-request-id": f"order-{n}"}) for n in range(3)]
    failed = _invoke(runtime, "raise")

    _stop(runtime)  # drain uploads the rows still in memory

    objects = _objects(s3, prefix)
    assert objects and all(re.fullmatch(rf"{prefix}date=\d{{4}}-\d{{2}}-\d{{2}}/champion-.+\.parquet", k) for k in objects)
    table = ds.dataset(_download(objects, prefix, tmp_path / "table"), format="parquet", partitioning="hive").to_table()
    assert table.schema.remove(table.schema.get_field_index("date")) == arrow_schema()
    assert table.column_names == [c.name for c in COLUMNS] + [PARTITION_COLUMN.name]
    rows = table.to_pandas().sort_values("timestamp_ms")
    assert list(rows["databricks_request_id"]) == [a.headers["x-request-id"] for a in [*answers, failed]]
    assert list(rows["client_request_id"])[:3] == ["order-0", "order-1", "order-2"]
    assert list(rows["status_code"]) == [200, 200, 200, failed.status_code]
    assert json.loads(rows["response"].iloc[0]) == answers[0].json()
    assert json.loads(rows["request"].iloc[3]) == json.loads(switchboard_body("raise"))
    assert set(rows["sampling_fraction"]) == {1.0}
    assert (rows["execution_time_ms"] >= 0).all()
    metadata = dict(rows["request_metadata"].iloc[0])
    assert {k: metadata[k] for k in ("endpoint_name", "served_model_name", "model_name", "model_version")} == {
        "endpoint_name": "fraud-scorer", "served_model_name": "champion", "model_name": "switchboard",
        "model_version": "7"}


@pytest.mark.parametrize("capturing", [{"KILN_CAPTURE_SAMPLING_FRACTION": "0.5", "KILN_CAPTURE_FORMAT": "jsonl",
                                        "KILN_CAPTURE_FLUSH_SECONDS": "0.5"}], indirect=True)
def test_a_sampling_fraction_captures_that_share_and_says_so_in_each_row(capturing, s3) -> None:
    runtime, prefix = capturing
    answers = [_invoke(runtime, "ok") for _ in range(40)]

    _stop(runtime)

    rows = pd.concat(pd.read_json(io.BytesIO(body), lines=True) for body in _objects(s3, prefix).values())
    assert all(a.status_code == 200 for a in answers)
    assert 0 < len(rows) < 40  # each request has a 1 in 2 chance; all or none is 2 in 2^40
    assert set(rows["sampling_fraction"]) == {0.5}
    assert set(rows["databricks_request_id"]) <= {a.headers["x-request-id"] for a in answers}


@pytest.mark.parametrize("capturing", [{"KILN_CAPTURE_FLUSH_SECONDS": "600", "KILN_CAPTURE_FLUSH_RECORDS": "1000"}],
                         indirect=True)
def test_drain_uploads_the_rows_still_in_memory(capturing, s3) -> None:
    runtime, prefix = capturing
    for _ in range(5):
        _invoke(runtime, "ok")
    assert "kiln_capture_records_pending 5" in httpx.get(f"{runtime.url}/metrics").text
    assert _objects(s3, prefix) == {}

    _stop(runtime)

    rows = sum(pq.read_table(io.BytesIO(body)).num_rows for body in _objects(s3, prefix).values())
    assert rows == 5
    assert "flushed 5 row(s) on drain" in runtime.log()


def test_every_response_carries_a_request_id_and_every_answer_is_logged_with_it(capturing) -> None:
    runtime, _ = capturing

    ping = httpx.get(f"{runtime.url}/ping")
    failed = _invoke(runtime, "raise")
    missing = httpx.get(f"{runtime.url}/no-such-path")
    answered = _invoke(runtime, "ok", headers={"x-client-request-id": "order-42"})
    refused = httpx.post(f"{runtime.url}/invocations", content=b"{not json", headers=JSON_HEADERS)

    ids = [r.headers.get("x-request-id") for r in (ping, failed, missing, answered, refused)]
    assert all(ids) and len(set(ids)) == 5
    # Each invocation's log line carries the id the caller was given: a 500 as an error, a 200
    # and a 400 as the access log, with the caller's own id when it sent one.
    assert failed.status_code == 500 and answered.status_code == 200 and refused.status_code == 400
    log = runtime.log()
    assert re.search(rf"WARNING request {ids[1]} answered 500 after \d+\.\d{{3}} s", log)
    assert re.search(rf"INFO request {ids[3]} answered 200 after \d+\.\d{{3}} s \(client request id order-42\)", log)
    assert re.search(rf"INFO request {ids[4]} answered 400 after", log)


@pytest.fixture
def s3_unreachable(tmp_path: Path, switchboard: Path) -> Iterator[RunningProcess]:
    """A runtime whose S3 endpoint is a closed port, with a small buffer and frequent flushes."""
    dead = f"http://127.0.0.1:{free_port()}"
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(switchboard), KILN_WORKERS="1",
                            KILN_CAPTURE_URI=f"s3://{BUCKET}/inference-tables/dead/", KILN_CAPTURE_FLUSH_SECONDS="0.2",
                            KILN_CAPTURE_MAX_BUFFERED_BYTES="4096", AWS_ENDPOINT_URL=dead, AWS_REGION="us-east-1",
                            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    try:
        assert runtime.wait_for_ping()[-1] == 200, runtime.log()
        yield runtime
    finally:
        runtime.stop()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


def test_with_s3_unreachable_requests_succeed_and_rows_are_dropped_counted_and_bounded(s3_unreachable) -> None:
    runtime = s3_unreachable
    with httpx.Client(timeout=30) as client:
        answers = [client.post(f"{runtime.url}/invocations", content=switchboard_body("ok"), headers=JSON_HEADERS)
                   for _ in range(60)]
        buffered = [_metric(client.get(f"{runtime.url}/metrics").text, "kiln_capture_buffered_bytes") for _ in range(5)]
        deadline = time.monotonic() + 20
        while not _metric(metrics := client.get(f"{runtime.url}/metrics").text,
                          'kiln_capture_records_dropped_total{reason="upload_failed"}'):
            assert time.monotonic() < deadline, f"no failed upload counted; log:\n{runtime.log()}"
            time.sleep(0.1)

    assert [a.status_code for a in answers] == [200] * 60
    assert _metric(metrics, "kiln_capture_records_written_total") == 0
    assert _metric(metrics, 'kiln_capture_records_dropped_total{reason="buffer_full"}') > 0
    assert max(buffered) <= 4096
    assert "cannot write inference records" in runtime.log()

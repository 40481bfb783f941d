"""The in-flight metric the high-resolution scaling policy tracks: the runtime publishes each
period's peak of requests in flight to CloudWatch (moto on loopback), one datum per period,
from READY on, and publishing can never take serving down."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import httpx
import pytest

from infra.local.stack import free_port
from infra.plan.scaling import ScalingPlan
from runtime.aws import FailureLog
from runtime.cloudwatch import InFlightPublisher, in_flight_datum, next_period_end
from runtime.contract import IN_FLIGHT_METRIC, METRIC_NAMESPACE
from runtime.gauge import PeakGauge
from runtime.lifecycle import STATE_PATH, TOKEN_PATH, headed_for_warm_pool, target_lifecycle_state
from runtime.settings import RuntimeSettings, SettingsError, settings_from_env
from tests.runtime_models import Switchboard, save
from tests.runtime_support import PROJECT_ROOT, RunningProcess, moto_s3, start_runtime

__all__ = ["moto_s3"]

PERIOD_SECONDS = 1
HELD_REQUESTS = 3  # one predicting on the only worker, two queued
DIMENSIONS = (("Stack", "test"), ("Endpoint", "metrics"), ("ServedModel", f"champion-{uuid.uuid4().hex[:8]}"))


# --- the peak, the datum and the failure policy, without a server ---------------------------

def test_the_peak_counts_a_burst_that_is_gone_before_the_period_ends() -> None:
    gauge = PeakGauge()
    for _ in range(3):
        gauge.increment()
    for _ in range(3):
        gauge.decrement()

    assert gauge.value == 0
    assert gauge.take_peak() == 3
    assert gauge.take_peak() == 0


def test_requests_still_in_flight_at_a_boundary_count_in_the_next_period() -> None:
    gauge = PeakGauge()
    gauge.increment()
    gauge.increment()
    assert gauge.take_peak() == 2

    gauge.decrement()

    assert gauge.take_peak() == 2
    assert gauge.take_peak() == 1


def test_the_datum_is_high_resolution_count_stamped_with_its_period_start() -> None:
    datum = in_flight_datum(DIMENSIONS, 4, 1_700_000_010.0)

    assert datum["MetricName"] == "InFlightRequests"
    assert datum["StorageResolution"] == 1
    assert datum["Unit"] == "Count"
    assert datum["Value"] == 4.0
    assert datum["Timestamp"] == datetime.fromtimestamp(1_700_000_010, UTC)
    assert [d["Name"] for d in datum["Dimensions"]] == ["Stack", "Endpoint", "ServedModel"]


def test_periods_end_on_wall_clock_multiples_of_the_period() -> None:
    assert next_period_end(1_700_000_012.3, 10) == 1_700_000_020
    assert next_period_end(1_700_000_020.0, 10) == 1_700_000_030


def test_a_failed_put_is_skipped_and_the_next_period_publishes_fresh_data() -> None:
    sent: list[float] = []
    attempts = iter([RuntimeError("throttled"), None])

    def put(datum: dict) -> None:
        if error := next(attempts):
            raise error
        sent.append(datum["Value"])

    gauge = PeakGauge()
    publisher = InFlightPublisher(DIMENSIONS, 10, gauge.take_peak, put=put, warm_pool_bound=lambda: False)
    gauge.increment()

    asyncio.run(publisher.publish(0))
    gauge.increment()
    asyncio.run(publisher.publish(10))

    assert sent == [2.0]
    assert publisher.failures.failures == 0


def test_repeated_failures_are_reported_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    failures = FailureLog("publish InFlightRequests", "period", 60, clock=lambda: now[0])

    with caplog.at_level(logging.WARNING, logger="kiln.runtime"):
        for second in (0, 10, 20, 30, 61):
            now[0] = second
            failures.failed(RuntimeError("no region"))

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "(4 failed period(s) since the last report)" in warnings[1]


# --- settings: the contract's format, and what is refused ------------------------------------

def test_the_dimensions_the_plan_writes_are_the_ones_the_runtime_reads() -> None:
    plan = ScalingPlan(
        stack="prod", endpoint="fraud-scorer", served_model="champion", min_instances=1, max_instances=2,
        workers_per_instance=2, in_flight_per_worker=1, target_utilization=0.7, alb_target_requests_per_minute=100.0,
        high_resolution_metric=True, scale_in_cooldown_seconds=300, scale_to_zero=False,
        idle_minutes_before_zero=30, warm_pool=None, instance_warmup_seconds=60,
        launch_hook_timeout_seconds=300, deregistration_delay_seconds=60,
    )

    settings = settings_from_env(RuntimeSettings("/m", metric_dimensions=plan.published_metric_dimensions).as_env())

    assert settings.metric_dimensions == (("Stack", "prod"), ("Endpoint", "fraud-scorer"), ("ServedModel", "champion"))
    assert settings.metric_period_seconds == 10


@pytest.mark.parametrize("value", ["Stack=dev,Endpoint=x", "Stack=dev,Endpoint=x,ServedModel=", "Stack",
                                   "Stack=a,Endpoint=x,ServedModel=y,Region=z", "Stack=a,Stack=b,Endpoint=x"])
def test_unusable_metric_dimensions_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="KILN_METRIC_DIMENSIONS"):
        settings_from_env({"KILN_MODEL_URI": "/m", "KILN_METRIC_DIMENSIONS": value})


def test_the_runtime_exits_2_on_bad_metric_settings() -> None:
    env = {"PYTHONPATH": str(PROJECT_ROOT), "KILN_MODEL_URI": "/m", "KILN_METRIC_PERIOD_SECONDS": "0",
           "PATH": "/usr/bin:/bin"}

    result = subprocess.run([sys.executable, "-m", "runtime"], check=False, env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert "KILN_METRIC_PERIOD_SECONDS" in result.stderr


# --- a real runtime publishing to moto's CloudWatch -------------------------------------------

def _cloudwatch(aws: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client("cloudwatch", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_DEFAULT_REGION"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _series(cloudwatch, stat: str) -> list[tuple[datetime, float]]:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {
            "Metric": {"Namespace": METRIC_NAMESPACE, "MetricName": IN_FLIGHT_METRIC,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in DIMENSIONS]},
            "Period": PERIOD_SECONDS, "Stat": stat}}],
        StartTime=now - timedelta(minutes=5), EndTime=now + timedelta(minutes=1),
    )["MetricDataResults"][0]
    return sorted(zip(result["Timestamps"], result["Values"], strict=True))


def _poll(condition, what: str, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.1)
    return value


def _in_flight(runtime: RunningProcess) -> int:
    text = httpx.get(f"{runtime.url}/metrics").text
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("kiln_requests_in_flight ")))


class InstanceMetadata:
    """A stand-in for the instance metadata service on 127.0.0.1: IMDSv2 tokens, and the
    target lifecycle state EC2 Auto Scaling gives the instance (settable)."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.token = uuid.uuid4().hex
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's name
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._answer(200 if self.path == TOKEN_PATH and ttl else 400, metadata.token)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.headers.get("X-aws-ec2-metadata-token") != metadata.token:
                    self._answer(401, "")
                else:
                    self._answer(200 if self.path == STATE_PATH else 404, metadata.state)

            def _answer(self, status: int, body: str) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata() -> Iterator[InstanceMetadata]:
    service = InstanceMetadata("Warmed:Stopped")
    yield service
    service.close()


def test_the_lifecycle_state_is_read_with_an_imdsv2_token(metadata: InstanceMetadata) -> None:
    assert target_lifecycle_state(metadata.endpoint) == "Warmed:Stopped"
    assert headed_for_warm_pool(metadata.endpoint) is True
    metadata.state = "InService"
    assert headed_for_warm_pool(metadata.endpoint) is False


def test_without_instance_metadata_there_is_no_warm_pool_and_the_metric_is_published() -> None:
    assert target_lifecycle_state(f"http://127.0.0.1:{free_port()}") is None
    assert headed_for_warm_pool(f"http://127.0.0.1:{free_port()}") is False


def test_an_instance_booting_into_the_warm_pool_publishes_no_in_flight_zeros(metadata: InstanceMetadata) -> None:
    """Its runtime is READY during the first boot (the launch hook waits for it), but its zeros
    would be averaged with the serving instances' load by target tracking."""
    sent: list[float] = []
    gauge = PeakGauge()
    publisher = InFlightPublisher(DIMENSIONS, 10, gauge.take_peak, put=lambda datum: sent.append(datum["Value"]),
                                  warm_pool_bound=lambda: headed_for_warm_pool(metadata.endpoint))

    for state in ("Warmed:Stopped", "Warmed:Running", "InService"):
        metadata.state = state
        asyncio.run(publisher.publish(0))

    assert sent == [0.0]  # only once it is InService


@pytest.fixture(scope="module")
def publishing(tmp_path_factory: pytest.TempPathFactory, moto_s3: dict[str, str]) -> Iterator[tuple[RunningProcess, float]]:
    """A runtime with one worker, publishing every second; also returns the
    last moment /ping was seen 503 (still loading), to check nothing was published before."""
    tmp = tmp_path_factory.mktemp("metrics")
    model = save(Switchboard(), tmp / "switchboard", example_action="ok")
    in_service = InstanceMetadata("InService")  # the runtime asks before each datum
    runtime = start_runtime(tmp, "runtime", KILN_MODEL_URI=str(model), KILN_WORKERS="1",
                            KILN_METRIC_DIMENSIONS=",".join(f"{k}={v}" for k, v in DIMENSIONS),
                            KILN_METRIC_PERIOD_SECONDS=str(PERIOD_SECONDS), AWS_REGION=moto_s3["AWS_DEFAULT_REGION"],
                            AWS_EC2_METADATA_SERVICE_ENDPOINT=in_service.endpoint, **moto_s3)
    try:
        last_loading = time.time()
        deadline = time.monotonic() + 90
        while (status := _ping(runtime)) != 200:
            assert runtime.process.poll() is None and time.monotonic() < deadline, runtime.log()
            if status == 503:
                last_loading = time.time()
            time.sleep(0.05)
        yield runtime, last_loading
    finally:
        runtime.stop()
        in_service.close()


def _ping(runtime: RunningProcess) -> int | None:
    try:
        return httpx.get(f"{runtime.url}/ping", timeout=2).status_code
    except httpx.TransportError:
        return None


def test_the_metric_carries_the_contract_namespace_name_and_dimensions(publishing, moto_s3) -> None:
    cloudwatch = _cloudwatch(moto_s3)

    metrics = _poll(lambda: cloudwatch.list_metrics(
        Namespace=METRIC_NAMESPACE, MetricName=IN_FLIGHT_METRIC,
        Dimensions=[{"Name": "ServedModel", "Value": DIMENSIONS[2][1]}])["Metrics"], "the metric is listed")

    assert len(metrics) == 1
    assert {(d["Name"], d["Value"]) for d in metrics[0]["Dimensions"]} == set(DIMENSIONS)


def test_the_published_value_is_the_peak_in_flight_and_publishing_starts_once_ready(publishing, moto_s3) -> None:
    runtime, last_loading = publishing
    cloudwatch = _cloudwatch(moto_s3)
    _poll(lambda: _series(cloudwatch, "Maximum"), "a first (idle) datum")
    body = json.dumps({"dataframe_split": {"columns": ["action"], "data": [["sleep:1.5"]]}})
    replies: list[int] = []

    def invoke() -> None:
        replies.append(httpx.post(f"{runtime.url}/invocations", content=body,
                                  headers={"content-type": "application/json"}, timeout=30).status_code)

    held = [threading.Thread(target=invoke) for _ in range(HELD_REQUESTS)]
    for thread in held:
        thread.start()
    _poll(lambda: _in_flight(runtime) == HELD_REQUESTS, "all requests in flight")
    for thread in held:
        thread.join(30)
    peak_published = _poll(lambda: any(v == HELD_REQUESTS for _, v in _series(cloudwatch, "Maximum")),
                           "a datum with the held requests")
    idle_again = _poll(lambda: _series(cloudwatch, "Maximum")[-1][1] == 0, "a datum back at 0 once they finished")

    series = _series(cloudwatch, "Maximum")
    assert replies == [200] * HELD_REQUESTS
    assert peak_published and idle_again
    assert series[0][1] == 0  # published while ready and idle, before any request
    assert max(v for _, v in series) == HELD_REQUESTS
    assert series[0][0].timestamp() >= last_loading - PERIOD_SECONDS - 0.5  # nothing while loading
    assert {v for _, v in _series(cloudwatch, "SampleCount")} == {1.0}  # one datum per period
    assert "cannot publish" not in runtime.log()

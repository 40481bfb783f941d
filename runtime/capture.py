"""Inference tables: sampled requests and responses, written to S3 in batches.

Databricks' inference tables (auto_capture_config) log each request of an endpoint as one
row: its request id, the caller's id, when it came, the status, how long it took, both
bodies, the sampling fraction and the served model
(https://docs.databricks.com/aws/en/machine-learning/model-serving/inference-tables).
The runtime keeps those column names and writes the rows as Parquet or JSON Lines objects
under `<capture prefix>date=YYYY-MM-DD/`, the Hive layout the stack's Glue table reads, so
Athena queries them with SQL.

Capture must never hurt serving. A request only appends its row to a buffer (no I/O, no
await); a background task uploads the buffer every KILN_CAPTURE_FLUSH_SECONDS, or sooner
once KILN_CAPTURE_FLUSH_RECORDS are waiting, through a fail-fast client in a thread. Memory
is bounded twice: a body over KILN_CAPTURE_MAX_BODY_BYTES is stored as null (its size stays
in request_metadata), and rows that would take the buffer, the batch being uploaded
included, past KILN_CAPTURE_MAX_BUFFERED_BYTES are dropped and counted. A failed upload
drops its batch and counts it too: /metrics shows both, the log says why (rate limited).
Drain uploads what is left before the process exits.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from runtime.aws import FailureLog, fail_fast_client
from runtime.settings import RuntimeSettings

log = logging.getLogger("kiln.runtime")

# Every response carries the request's id (the inference table's databricks_request_id); a
# caller may send its own in CLIENT_REQUEST_ID_HEADER, stored as client_request_id.
REQUEST_ID_HEADER = b"x-request-id"
CLIENT_REQUEST_ID_HEADER = b"x-client-request-id"
# A row's fixed cost besides its bodies (ids, numbers, metadata), for the memory bound.
RECORD_OVERHEAD_BYTES = 512
# Drain waits this long for the rows still in memory to upload (the instance's stop timeout
# adds it to the drain window, infra/components/user_data.py).
CAPTURE_FLUSH_ON_DRAIN_SECONDS = 15
# Each upload gets this long; a slower S3 costs the batch, never a request.
UPLOAD_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Column:
    """One column of the inference table: the runtime writes it, the Glue table declares it."""

    name: str
    glue_type: str
    comment: str


COLUMNS: tuple[Column, ...] = (
    Column("databricks_request_id", "string", "the runtime's id of the request, also its x-request-id response header"),
    Column("client_request_id", "string", "the caller's own id, from its x-client-request-id header; null without one"),
    Column("timestamp_ms", "bigint", "when the request arrived, in milliseconds since the epoch (UTC)"),
    Column("status_code", "int", "the HTTP status the runtime answered"),
    Column("execution_time_ms", "bigint", "milliseconds from the request's arrival to its answer"),
    Column("sampling_fraction", "double", "the share of requests captured when this one was (1 = every request)"),
    Column("request", "string", "the request body; null when over the capture's body size cap"),
    Column("response", "string", "the response body; null when over the capture's body size cap"),
    Column("request_metadata", "map<string,string>",
           "endpoint_name, served_model_name, model_name, model_version, request_bytes, response_bytes"),
)
# Not in the objects: the Hive partition `date=YYYY-MM-DD/` of the key carries it.
PARTITION_COLUMN = Column("date", "string", "the UTC date the request arrived (yyyy-MM-dd), the object's partition")

Record = dict[str, Any]


def arrow_schema() -> Any:
    """The Parquet schema of COLUMNS."""
    import pyarrow as pa

    types = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64(),
             "map<string,string>": pa.map_(pa.string(), pa.string())}
    return pa.schema([pa.field(column.name, types[column.glue_type]) for column in COLUMNS])


def encode(records: Sequence[Record], format: str) -> bytes:
    """One object's content: a Parquet file or JSON Lines."""
    if format == "jsonl":
        return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**record, "request_metadata": list(record["request_metadata"].items())} for record in records]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), buffer, compression="snappy")
    return buffer.getvalue()


def _body(body: bytes, limit: int) -> str | None:
    return body.decode("utf-8", errors="replace") if len(body) <= limit else None


@dataclass(frozen=True)
class Exchange:
    """What one invocation was: the id it was answered with, and its two bodies."""

    request_id: str
    client_request_id: str | None
    arrived: float
    seconds: float
    status: int
    request: bytes
    response: bytes


class S3Put:
    """PutObject through a fail-fast client, made on first use in the uploading thread."""

    def __init__(self) -> None:
        self._client: Any = None

    def __call__(self, bucket: str, key: str, body: bytes) -> None:
        if self._client is None:
            self._client = fail_fast_client("s3", read_timeout_seconds=UPLOAD_TIMEOUT_SECONDS)
        self._client.put_object(Bucket=bucket, Key=key, Body=body)


class InferenceCapture:
    """The buffer of sampled rows and the task that uploads it."""

    def __init__(self, settings: RuntimeSettings, put: Callable[[str, str, bytes], None] | None = None,
                 sample: Callable[[], float] = random.random) -> None:
        assert settings.capture_uri, "InferenceCapture needs KILN_CAPTURE_URI"
        destination = urlparse(settings.capture_uri)
        self.bucket = destination.netloc
        self.prefix = destination.path.lstrip("/")
        self.settings = settings
        self.put = put or S3Put()
        self.sample = sample
        self.metadata = {"endpoint_name": settings.endpoint, "served_model_name": settings.served_model,
                         "model_name": settings.model_name, "model_version": settings.model_version}
        self.written = 0
        self.dropped: Counter[str] = Counter({"buffer_full": 0, "upload_failed": 0})
        # Each row with the bytes it counts against the memory bound.
        self._pending: list[tuple[Record, int]] = []
        # The pending rows plus the batch being uploaded: what capture holds in memory.
        self._buffered_bytes = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.failures = FailureLog(f"write inference records to s3://{self.bucket}/{self.prefix}", "batch")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def sampled(self) -> bool:
        """Whether this request is captured: decided once, before its row is built."""
        return self.sample() < self.settings.capture_sampling_fraction

    def offer(self, exchange: Exchange) -> None:
        """Buffer the row of one sampled invocation, or drop and count it when the buffer is full.
        Never blocks and never raises into the request."""
        limit = self.settings.capture_max_body_bytes
        # What the row will hold in memory, counted in the bodies' bytes (a non-ASCII body takes
        # more than its length in characters), and judged before any body is decoded.
        size = RECORD_OVERHEAD_BYTES + sum(len(body) for body in (exchange.request, exchange.response) if len(body) <= limit)
        if self._buffered_bytes + size > self.settings.capture_max_buffered_bytes:
            self.dropped["buffer_full"] += 1
            return
        record: Record = {
            "databricks_request_id": exchange.request_id,
            "client_request_id": exchange.client_request_id,
            "timestamp_ms": int(exchange.arrived * 1000),
            "status_code": exchange.status,
            "execution_time_ms": round(exchange.seconds * 1000),
            "sampling_fraction": self.settings.capture_sampling_fraction,
            "request": _body(exchange.request, limit),
            "response": _body(exchange.response, limit),
            "request_metadata": {**{k: v for k, v in self.metadata.items() if v},
                                 "request_bytes": str(len(exchange.request)),
                                 "response_bytes": str(len(exchange.response))},
        }
        self._pending.append((record, size))
        self._buffered_bytes += size
        if len(self._pending) >= self.settings.capture_flush_records:
            self._wake.set()

    async def run(self) -> None:
        """Until cancelled: upload every flush interval, or as soon as a batch is full."""
        log.info("capturing %g%% of requests to s3://%s/%s as %s", self.settings.capture_sampling_fraction * 100,
                 self.bucket, self.prefix, self.settings.capture_format)
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.capture_flush_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Upload every pending row now, one object per UTC date; a failed upload drops its rows."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                for date, rows in _by_date([record for record, _ in batch]).items():
                    await self._upload(date, rows)
            finally:
                self._buffered_bytes -= sum(size for _, size in batch)

    async def _upload(self, date: str, rows: list[Record]) -> None:
        key = (f"{self.prefix}{PARTITION_COLUMN.name}={date}/{self.settings.served_model or 'model'}-"
               f"{datetime.now(UTC):%H%M%S}-{uuid.uuid4().hex[:12]}.{self.settings.capture_format}")
        try:
            body = await asyncio.to_thread(encode, rows, self.settings.capture_format)
            await asyncio.to_thread(self.put, self.bucket, key, body)
        except Exception as error:  # noqa: BLE001 - any failure to write must leave serving alone
            self.dropped["upload_failed"] += len(rows)
            self.failures.failed(error)
        else:
            self.written += len(rows)
            self.failures.succeeded()

    def metric_lines(self) -> list[str]:
        """The capture's counters for /metrics (Prometheus text format)."""
        return [
            "# HELP kiln_capture_records_written_total Inference table rows uploaded to S3.",
            "# TYPE kiln_capture_records_written_total counter",
            f"kiln_capture_records_written_total {self.written}",
            "# HELP kiln_capture_records_dropped_total Sampled rows never written: the buffer was full, or their upload failed.",
            "# TYPE kiln_capture_records_dropped_total counter",
            *(f'kiln_capture_records_dropped_total{{reason="{reason}"}} {count}'
              for reason, count in sorted(self.dropped.items())),
            "# HELP kiln_capture_records_pending Sampled rows waiting for the next upload.",
            "# TYPE kiln_capture_records_pending gauge",
            f"kiln_capture_records_pending {self.pending}",
            "# HELP kiln_capture_buffered_bytes Memory the capture holds: pending rows and the batch being uploaded.",
            "# TYPE kiln_capture_buffered_bytes gauge",
            f"kiln_capture_buffered_bytes {self._buffered_bytes}",
        ]


def _by_date(records: list[Record]) -> dict[str, list[Record]]:
    """Rows by the UTC date they arrived: a batch that spans midnight goes to two partitions."""
    dates: dict[str, list[Record]] = {}
    for record in records:
        day = datetime.fromtimestamp(record["timestamp_ms"] / 1000, UTC).strftime("%Y-%m-%d")
        dates.setdefault(day, []).append(record)
    return dates


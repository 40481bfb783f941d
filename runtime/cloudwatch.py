"""Publish the in-flight metric that the high-resolution scaling policy tracks.

One datum per period (10 s): the peak number of requests in flight (running plus queued)
during that period, in Kiln/Serving/InFlightRequests with StorageResolution 1 and the
plan's dimensions (contract.py; docs/scaling.md). Target tracking averages the data points
of all instances in a period, so each instance sends exactly one per period: the datum's
timestamp is the start of the wall-clock-aligned period it covers, so a late or slow call
still lands in its own period and never doubles up another.

Publishing must never hurt serving. boto3 runs in a thread (asyncio.to_thread), one call at
a time with short timeouts and no botocore retries; a failed period is logged (rate
limited) and skipped, and the next period sends fresh data: a stale in-flight count is worth
nothing to a scaling decision. The server starts the publisher once the model is ready and
cancels it on drain (see server.py for why).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from runtime.aws import FailureLog, fail_fast_client
from runtime.contract import IN_FLIGHT_METRIC, METRIC_NAMESPACE, STORAGE_RESOLUTION_SECONDS
from runtime.lifecycle import headed_for_warm_pool

log = logging.getLogger("kiln.runtime")

Datum = dict[str, Any]


def in_flight_datum(dimensions: tuple[tuple[str, str], ...], peak: float, period_start: float) -> Datum:
    """The PutMetricData entry for one period."""
    return {
        "MetricName": IN_FLIGHT_METRIC,
        "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions],
        "Timestamp": datetime.fromtimestamp(period_start, UTC),
        "Value": float(peak),
        "Unit": "Count",
        "StorageResolution": STORAGE_RESOLUTION_SECONDS,
    }


def next_period_end(now: float, period_seconds: float) -> float:
    """The next wall-clock boundary that is a whole multiple of the period (CloudWatch's buckets)."""
    return (math.floor(now / period_seconds) + 1) * period_seconds


class CloudWatchPut:
    """PutMetricData through a fail-fast client (runtime/aws.py): well inside one period, and
    no retries, since the next period is the retry."""

    def __init__(self) -> None:
        self._client: Any = None

    def __call__(self, datum: Datum) -> None:
        if self._client is None:
            self._client = fail_fast_client("cloudwatch")
        self._client.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[datum])


class InFlightPublisher:
    """Every period: take the in-flight peak and put it, off the event loop."""

    def __init__(self, dimensions: tuple[tuple[str, str], ...], period_seconds: float, take_peak: Callable[[], float],
                 put: Callable[[Datum], None] | None = None, clock: Callable[[], float] = time.time,
                 warm_pool_bound: Callable[[], bool] = headed_for_warm_pool) -> None:
        self.dimensions = dimensions
        self.period_seconds = period_seconds
        self.take_peak = take_peak
        self.put = put or CloudWatchPut()
        # Asked each period: an instance booting into a warm pool publishes nothing (lifecycle.py).
        self.warm_pool_bound = warm_pool_bound
        self.clock = clock
        self.failures = FailureLog(f"publish {IN_FLIGHT_METRIC}", "period")

    async def run(self) -> None:
        """Until cancelled. A call that overruns a period delays the next one instead of
        overlapping it; the peak then covers the longer span, so no burst is lost."""
        log.info("publishing %s/%s every %g s with %s", METRIC_NAMESPACE, IN_FLIGHT_METRIC, self.period_seconds,
                 ",".join(f"{k}={v}" for k, v in self.dimensions))
        while True:
            end = next_period_end(self.clock(), self.period_seconds)
            await asyncio.sleep(max(0.0, end - self.clock()))
            await self.publish(end - self.period_seconds)

    async def publish(self, period_start: float) -> None:
        peak = self.take_peak()
        if await asyncio.to_thread(self.warm_pool_bound):
            return  # its zeros would drag the serving instances' average down
        datum = in_flight_datum(self.dimensions, peak, period_start)
        try:
            await asyncio.to_thread(self.put, datum)
        except Exception as error:  # noqa: BLE001 - any failure to publish must leave serving alone
            self.failures.failed(error)
        else:
            self.failures.succeeded()

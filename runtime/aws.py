"""boto3 clients for the runtime's side jobs (the in-flight metric, the inference table).

Those jobs must never hurt serving, so their clients fail fast and never retry: a call that
cannot finish quickly is dropped, and the job's next round is the retry. Credentials and
region come from boto3's default chain (the instance role, AWS_REGION; AWS_ENDPOINT_URL in
tests), and a client is made on first use, in the worker thread that calls it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("kiln.runtime")

# Seconds between repeated failure reports; the first failure is always logged at once.
FAILURE_LOG_INTERVAL_SECONDS = 60.0


def fail_fast_client(service: str, read_timeout_seconds: float = 3) -> Any:
    """A client with short timeouts and one attempt per call."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=read_timeout_seconds,
                    retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.client(service, config=config)


class FailureLog:
    """Log the first failure at once, then at most one summary per interval, and the recovery:
    a side job failing every round must not flood the instance's log."""

    def __init__(self, what: str, unit: str, interval_seconds: float = FAILURE_LOG_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.unit = unit
        self.interval_seconds = interval_seconds
        self.clock = clock
        self.failures = 0
        self._unreported = 0
        self._last_report: float | None = None

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        self._unreported += 1
        now = self.clock()
        if self._last_report is None or now - self._last_report >= self.interval_seconds:
            log.warning("cannot %s (%d failed %s(s) since the last report): %s",
                        self.what, self._unreported, self.unit, error)
            self._last_report = now
            self._unreported = 0

    def succeeded(self) -> None:
        if self.failures:
            log.info("%s: working again after %d failed %s(s)", self.what, self.failures, self.unit)
        self.failures = 0
        self._unreported = 0
        self._last_report = None

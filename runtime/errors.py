"""Every error the runtime answers, in one table: exception → HTTP status, error code, headers.

The body is always Databricks' shape, {"error_code": ..., "message": ...}. The app answers
every ServingError the same way; the workers build their model-side replies (a request the
model cannot take, a model that fails) with the same `error_body`, so a status, its code and
the body's shape are spelled once.
"""

from __future__ import annotations

import json

Headers = tuple[tuple[bytes, bytes], ...]
# Clients (and the activator) retry after a second: loading and draining are brief.
RETRY_AFTER: Headers = ((b"retry-after", b"1"),)
# The connection cannot carry another request (unread body) or should move to another target.
CLOSE: Headers = ((b"connection", b"close"),)


def error_body(error_code: str, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}).encode()


class ServingError(Exception):
    """A request the runtime answers with an error; the message is the body's `message`."""

    status = 500
    error_code = "INTERNAL_ERROR"
    headers: Headers = ()

    def body(self) -> bytes:
        return error_body(self.error_code, str(self))


class Unauthenticated(ServingError):
    status, error_code, headers = 401, "UNAUTHENTICATED", ((b"www-authenticate", b"Bearer"),)


class NotFound(ServingError):
    status, error_code = 404, "ENDPOINT_NOT_FOUND"


class MethodNotAllowed(ServingError):
    status, error_code, headers = 405, "METHOD_NOT_ALLOWED", ((b"allow", b"POST"),)


class PayloadTooLarge(ServingError):
    status, error_code, headers = 413, "REQUEST_LIMIT_EXCEEDED", CLOSE


class NotReady(ServingError):
    """Still loading: the ALB sends nothing here yet, a direct client retries."""

    status, error_code, headers = 503, "TEMPORARILY_UNAVAILABLE", RETRY_AFTER


class ShuttingDown(NotReady):
    """Draining after SIGTERM, or still unanswered when the drain window ended: close the
    connection so the client reconnects elsewhere."""

    headers = RETRY_AFTER + CLOSE


class BodyTimeout(ServingError):
    """The client did not send its whole body in time; it never held an admission slot.
    The connection closes: the rest of its body may still be on the way."""

    status, error_code, headers = 408, "DEADLINE_EXCEEDED", CLOSE


class Overloaded(ServingError):
    """The request's expected wait for a worker is over the admission budget: refused at once,
    never left to hang. 429, as Databricks answers an endpoint over its provisioned concurrency
    (an ALB does not retry a 503 elsewhere, so a 503 would only look like an outage)."""

    status, error_code = 429, "REQUEST_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.headers = ((b"retry-after", str(retry_after_seconds).encode()),)


class DeadlineExceeded(ServingError):
    status, error_code = 504, "DEADLINE_EXCEEDED"


class WorkerDied(ServingError):
    """A worker exited while answering (the model crashed the process); a replacement starts."""

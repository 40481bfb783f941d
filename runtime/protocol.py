"""Length-prefixed frames between the HTTP process and its worker processes (over pipes).

A request is (content type, body bytes) and a reply is (status, content type, body bytes,
and the seconds the worker spent parsing, predicting and serializing it: the runtime's
Server-Timing header);
requests flagged "more" belong to one batch with the next, and the worker answers a batch
with one reply per request, in order (runtime.scoring.score_batch):
the HTTP process never parses a payload, so the event loop stays free while workers use
their own cores for parsing, predicting and serializing.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

_REQUEST = struct.Struct("!IHB")  # body length, content-type length, more of this batch follow (0 or 1)
_REPLY = struct.Struct("!IHHIII")  # body length, status, content-type length, parse/predict/serialize µs
_MAX_MICROSECONDS = 2**32 - 1


@dataclass(frozen=True)
class Stages:
    """Seconds a worker spent on one request's parse, predict and serialize (0: not reached)."""

    parse: float = 0.0
    predict: float = 0.0
    serialize: float = 0.0


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    # When, not what: two replies with the same status and body are the same answer.
    stages: Stages = field(default=Stages(), compare=False)


def encode_request(content_type: str, body: bytes, more: bool = False) -> bytes:
    ctype = content_type.encode("latin-1", "replace")[:65535]
    return _REQUEST.pack(len(body), len(ctype), more) + ctype + body


def _microseconds(seconds: float) -> int:
    return min(max(round(seconds * 1e6), 0), _MAX_MICROSECONDS)


def encode_reply(reply: Reply) -> bytes:
    ctype = reply.content_type.encode("latin-1")
    stages = reply.stages
    return _REPLY.pack(len(reply.body), reply.status, len(ctype), _microseconds(stages.parse),
                       _microseconds(stages.predict), _microseconds(stages.serialize)) + ctype + reply.body


REQUEST_HEADER_SIZE = _REQUEST.size
REPLY_HEADER_SIZE = _REPLY.size


def request_sizes(header: bytes) -> tuple[int, int, int]:
    """(body length, content-type length, more of this batch follow) from a request header."""
    return _REQUEST.unpack(header)


def decode_reply_header(header: bytes) -> tuple[int, int, int, Stages]:
    """(body length, status, content-type length, the worker's stages) from a reply header."""
    body_size, status, ctype_size, parse, predict, serialize = _REPLY.unpack(header)
    return body_size, status, ctype_size, Stages(parse / 1e6, predict / 1e6, serialize / 1e6)


def write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked on a pipe; loop until all is out."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exactly(fd: int, size: int) -> bytes | None:
    """Read `size` bytes from a blocking fd; None when the other side closed the pipe."""
    chunks = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)

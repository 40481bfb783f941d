"""Length-prefixed frames between the HTTP process and its worker processes (over pipes).

A request is (content type, body bytes) and a reply is (status, content type, body bytes);
requests flagged "more" belong to one batch with the next, and the worker answers a batch
with one reply per request, in order (runtime.scoring.score_batch):
the HTTP process never parses a payload, so the event loop stays free while workers use
their own cores for parsing, predicting and serializing.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

_REQUEST = struct.Struct("!IHB")  # body length, content-type length, more of this batch follow (0 or 1)
_REPLY = struct.Struct("!IHH")  # body length, status, content-type length


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


def encode_request(content_type: str, body: bytes, more: bool = False) -> bytes:
    ctype = content_type.encode("latin-1", "replace")[:65535]
    return _REQUEST.pack(len(body), len(ctype), more) + ctype + body


def encode_reply(reply: Reply) -> bytes:
    ctype = reply.content_type.encode("latin-1")
    return _REPLY.pack(len(reply.body), reply.status, len(ctype)) + ctype + reply.body


REQUEST_HEADER_SIZE = _REQUEST.size
REPLY_HEADER_SIZE = _REPLY.size


def request_sizes(header: bytes) -> tuple[int, int, int]:
    """(body length, content-type length, more of this batch follow) from a request header."""
    return _REQUEST.unpack(header)


def reply_sizes(header: bytes) -> tuple[int, int, int]:
    """(body length, status, content-type length) from a reply header."""
    return _REPLY.unpack(header)


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

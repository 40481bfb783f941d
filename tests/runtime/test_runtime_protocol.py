"""The frames between the HTTP process and a worker: requests with their content type and batch
flag, replies with the worker's stage timings, whole however the pipe splits them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from runtime import protocol
from runtime.protocol import Reply, Stages

T = TypeVar("T")


def _through_a_pipe(frame: bytes, read_frame: Callable[[int], T]) -> T:
    """`read_frame` applied to the read end of a pipe a thread writes `frame` into (a frame may
    be larger than the pipe's buffer)."""
    read, write = os.pipe()
    writer = threading.Thread(target=protocol.write_all, args=(write, frame))
    writer.start()
    try:
        return read_frame(read)
    finally:
        writer.join(10)
        os.close(read)
        os.close(write)


def _read_reply(fd: int) -> Reply:
    header = protocol.read_exactly(fd, protocol.REPLY_HEADER_SIZE)
    assert header is not None
    body_size, status, ctype_size, stages = protocol.decode_reply_header(header)
    payload = protocol.read_exactly(fd, ctype_size + body_size)
    assert payload is not None
    return Reply(status, payload[:ctype_size].decode("latin-1"), payload[ctype_size:], stages)


def _read_request(fd: int) -> tuple[str, bytes, int]:
    header = protocol.read_exactly(fd, protocol.REQUEST_HEADER_SIZE)
    assert header is not None
    body_size, ctype_size, more = protocol.request_sizes(header)
    payload = protocol.read_exactly(fd, ctype_size + body_size)
    assert payload is not None
    return payload[:ctype_size].decode("latin-1"), payload[ctype_size:], more


def _round_trip(reply: Reply) -> Reply:
    return _through_a_pipe(protocol.encode_reply(reply), _read_reply)


def _request_round_trip(frame: bytes) -> tuple[str, bytes, int]:
    return _through_a_pipe(frame, _read_request)


def test_a_reply_arrives_with_its_body_and_its_stage_timings_to_the_microsecond() -> None:
    sent = Reply(200, "application/json", b'{"predictions": [1]}', Stages(0.001234, 2.5, 0.000017))

    received = _round_trip(sent)

    assert (received.status, received.content_type, received.body) == (sent.status, sent.content_type, sent.body)
    assert vars(received.stages) == vars(sent.stages)
    # Finer than a microsecond is rounded to the nearest one.
    assert _round_trip(Reply(200, "text/plain", b"", Stages(parse=0.0000014))).stages.parse == 0.000001


def test_a_request_arrives_with_its_content_type_and_whether_more_of_its_batch_follow() -> None:
    alone = _request_round_trip(protocol.encode_request("text/csv; charset=utf-8", b"a,b\n1,2\n"))
    batched = _request_round_trip(protocol.encode_request("application/json", b"{}", more=True))

    assert alone == ("text/csv; charset=utf-8", b"a,b\n1,2\n", False)
    assert batched == ("application/json", b"{}", True)


def test_a_content_type_the_frame_cannot_carry_is_replaced_or_cut_not_an_error() -> None:
    # A header value outside latin-1 reaches the worker with '?' for what latin-1 lacks (the worker
    # then answers 400 naming it), and one longer than the frame's 16-bit length is cut to fit.
    assert _request_round_trip(protocol.encode_request("application/json✓", b"{}"))[0] == "application/json?"
    assert _request_round_trip(protocol.encode_request("x" * 70_000, b"{}"))[0] == "x" * 65_535


def test_frames_arrive_whole_when_the_pipe_writes_and_reads_them_a_few_bytes_at_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    write, read = os.write, os.read
    monkeypatch.setattr(protocol.os, "write", lambda fd, data: write(fd, bytes(data[:7])))
    monkeypatch.setattr(protocol.os, "read", lambda fd, size: read(fd, min(size, 5)))
    sent = Reply(200, "application/json", b'{"predictions": [0.25, 0.75]}', Stages(0.001, 0.002, 0.003))

    assert _round_trip(sent) == sent


@pytest.mark.parametrize(("seconds", "read_back"), [(-0.5, 0.0), (10**6, (2**32 - 1) / 1e6)])
def test_timings_outside_what_the_frame_holds_are_clamped_not_an_error(seconds: float, read_back: float) -> None:
    received = _round_trip(Reply(500, "text/plain", b"", Stages(predict=seconds)))

    assert received.stages.predict == pytest.approx(read_back)


def test_replies_with_the_same_answer_are_equal_whatever_their_timings() -> None:
    assert Reply(200, "text/plain", b"x", Stages(1, 2, 3)) == Reply(200, "text/plain", b"x")

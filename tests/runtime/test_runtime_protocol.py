"""The frames between the HTTP process and a worker: a reply carries the worker's stage timings."""

from __future__ import annotations

import os

import pytest

from runtime import protocol
from runtime.protocol import Reply, Stages


def _round_trip(reply: Reply) -> Reply:
    read, write = os.pipe()
    try:
        protocol.write_all(write, protocol.encode_reply(reply))
        header = protocol.read_exactly(read, protocol.REPLY_HEADER_SIZE)
        assert header is not None
        body_size, status, ctype_size, stages = protocol.decode_reply_header(header)
        payload = protocol.read_exactly(read, ctype_size + body_size)
        assert payload is not None
        return Reply(status, payload[:ctype_size].decode("latin-1"), payload[ctype_size:], stages)
    finally:
        os.close(read)
        os.close(write)


def test_a_reply_arrives_with_its_body_and_its_stage_timings_to_the_microsecond() -> None:
    sent = Reply(200, "application/json", b'{"predictions": [1]}', Stages(0.0012345, 2.5, 0.000017))

    received = _round_trip(sent)

    assert (received.status, received.content_type, received.body) == (sent.status, sent.content_type, sent.body)
    for got, want in zip(vars(received.stages).values(), vars(sent.stages).values()):
        assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize(("seconds", "read_back"), [(-0.5, 0.0), (10**6, (2**32 - 1) / 1e6)])
def test_timings_outside_what_the_frame_holds_are_clamped_not_an_error(seconds: float, read_back: float) -> None:
    received = _round_trip(Reply(500, "text/plain", b"", Stages(predict=seconds)))

    assert received.stages.predict == pytest.approx(read_back)


def test_replies_with_the_same_answer_are_equal_whatever_their_timings() -> None:
    assert Reply(200, "text/plain", b"x", Stages(1, 2, 3)) == Reply(200, "text/plain", b"x")

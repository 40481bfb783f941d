"""One worker process: load the model once, then score requests from the pipe until EOF.

Started by runtime.workers as `python -m runtime.worker MODEL_DIR [--require-gpu]`. The
first frame it writes says whether the model loaded and passed warm-up (status 200 and a
JSON description, with the device it runs on) or why not (status 500); after that, one
reply frame per request (a batch of requests gets one each, in order). With --require-gpu
(a GPU compute type) a worker that finds no
usable GPU says so in that first frame before loading anything, instead of serving on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from runtime import logs, protocol
from runtime.protocol import Reply


def _claim_protocol_fds() -> tuple[int, int]:
    """Keep the real stdout for frames and point fd 1 at stderr, so a model that prints
    cannot corrupt the frame stream (its output still reaches the logs)."""
    out = os.dup(1)
    os.dup2(2, 1)
    return 0, out


def main(argv: list[str]) -> int:
    logs.configure(f"worker[{os.getpid()}]", logs.worker_label(), os.environ.get("KILN_LOG_LEVEL", "INFO"))
    # The HTTP process owns shutdown: Ctrl-C or SIGTERM must not kill a prediction mid-way;
    # the worker exits when its request pipe closes (or is killed after the drain window).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd_in, fd_out = _claim_protocol_fds()
    model_dir = Path(argv[0])
    log = logging.getLogger("kiln.runtime.worker")

    from runtime.device import CUDA, detect
    from runtime.scoring import load, score, score_batch, warm_up

    if "--require-gpu" in argv[1:] and (found := detect()).device != CUDA:
        message = (f"no usable GPU, and this compute type requires one (KILN_REQUIRE_GPU): {found.describe()}; "
                   "the model would run on the CPU of a GPU instance")
        log.error("%s", message)
        protocol.write_all(fd_out, protocol.encode_reply(Reply(500, "text/plain", message.encode())))
        return 4
    try:
        loaded = load(model_dir)
        warm = warm_up(loaded, model_dir)
    except Exception as error:  # any load or warm-up failure is reported, not raised
        log.exception("model failed to load or warm up")
        message = f"{type(error).__name__}: {error}"
        protocol.write_all(fd_out, protocol.encode_reply(Reply(500, "text/plain", message.encode())))
        return 3
    device = detect()  # after warm-up: the GPU memory the loaded model holds
    log.info("%s", device.describe())
    info = {**loaded.info, "warm_up_seconds": None if warm is None else round(warm, 4), "device": device.as_dict()}
    protocol.write_all(fd_out, protocol.encode_reply(Reply(200, "application/json", json.dumps(info).encode())))

    while True:
        batch: list[tuple[bytes, str | None]] = []
        more = True
        while more:
            header = protocol.read_exactly(fd_in, protocol.REQUEST_HEADER_SIZE)
            if header is None:
                return 0
            body_size, ctype_size, more = protocol.request_sizes(header)
            payload = protocol.read_exactly(fd_in, ctype_size + body_size)
            if payload is None:
                return 0
            batch.append((payload[ctype_size:], payload[:ctype_size].decode("latin-1")))
        replies = [score(loaded, *batch[0])] if len(batch) == 1 else score_batch(loaded, batch)
        protocol.write_all(fd_out, b"".join(protocol.encode_reply(reply) for reply in replies))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

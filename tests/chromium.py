"""Headless Chromium for layout tests, driven over the Chrome DevTools Protocol.

`--remote-debugging-pipe` speaks CDP over file descriptors 3 (commands in) and 4 (replies and
events out), one JSON message per NUL-terminated record, so no WebSocket client or Playwright
is needed: the test measures real geometry (getBoundingClientRect) in the browser the Makefile
installs (`make test` runs `apt-get install chromium` when /usr/bin/chromium is missing).
Protocol: https://chromedevtools.github.io/devtools-protocol/ (Target, Page, Runtime domains).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Flags that let it run as root in a container with no display, GPU, network or profile.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe",
)
# Every wait is bounded: a page this size loads in well under a second.
TIMEOUT_SECONDS = 60


class ChromiumError(RuntimeError):
    """Chromium answered a command with an error, exited, or did not answer in time."""


def chromium_path() -> str | None:
    """Where Chromium is installed (the Makefile's `chromium` prerequisite), or None."""
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


class Page:
    """One tab, attached in flat mode: commands carry its session id on the shared pipe."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    def evaluate(self, expression: str) -> Any:
        """The expression's value, by value (JSON-serialisable), awaiting a promise if it returns one."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session_id)
        if "exceptionDetails" in result:
            raise ChromiumError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


class Browser:
    def __init__(self, process: subprocess.Popen[bytes], commands: int, replies: int) -> None:
        self.process = process
        self.commands = commands
        self.replies = replies
        self.buffer = b""
        self.next_id = 0

    def send(self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise ChromiumError("Chromium stopped answering over its DevTools pipe")
            if not select.select([self.replies], [], [], min(remaining, 1.0))[0]:
                continue
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:
                raise ChromiumError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        record, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(record)

    def open(self, path: Path, width: int, height: int) -> Page:
        """A tab of `width` × `height` CSS pixels showing `path` once its load event has fired."""
        uri = path.resolve().as_uri()
        target = self.send("Target.createTarget", {"url": uri})
        session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        page = Page(self, session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        loaded = f"document.readyState === 'complete' && location.href === {json.dumps(uri)}"
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while not page.evaluate(loaded):
            if time.monotonic() > deadline:
                raise ChromiumError(f"{uri} did not finish loading in {TIMEOUT_SECONDS} s")
            time.sleep(0.05)
        return page


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A Chromium with an empty profile, stopped (and its profile removed) on exit."""
    executable = chromium_path()
    if executable is None:
        raise ChromiumError(f"no Chromium at {CHROMIUM}; `make test` installs it (apt-get install chromium)")
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def child_fds() -> None:
        # Chromium reads commands on fd 3 and writes replies on fd 4; move both above 4 first
        # so that placing one cannot overwrite the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, replies_write)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)

    with tempfile.TemporaryDirectory(prefix="kiln-chromium-") as profile:
        process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4),
        )
        os.close(commands_read)
        os.close(replies_write)
        browser = Browser(process, commands_write, replies_read)
        try:
            yield browser
        finally:
            try:
                browser.send("Browser.close")
            except ChromiumError:
                pass
            try:
                process.wait(timeout=TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=TIMEOUT_SECONDS)
            os.close(commands_write)
            os.close(replies_read)

"""One log line format for the runtime and its workers: every line names what is served.

A stack runs many runtimes side by side (`kiln serve`, or several served models' logs in one
CloudWatch group); a line that names only a digest cannot be traced to its model. The HTTP
process knows the served model from its settings and hands the label to its workers.
"""

from __future__ import annotations

import logging
import os
import sys

# How a worker process learns its runtime's label (set by runtime/workers.py when it spawns one).
LABEL_VARIABLE = "KILN_LOG_LABEL"


def configure(process: str, label: str, level: str | int = logging.INFO) -> None:
    """Log to stderr as `<time> <process> [<label>] <LEVEL> <message>`."""
    shown = f" [{label}]" if label else ""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=f"%(asctime)s {process}{shown.replace('%', '%%')} %(levelname)s %(message)s")


def worker_label() -> str:
    """The label the runtime handed this worker process (empty when run on its own)."""
    return os.environ.get(LABEL_VARIABLE, "")

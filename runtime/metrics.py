"""Request metrics in the Prometheus text exposition format (served on /metrics).

In-flight requests is the number target tracking scales on (DESIGN decision 5); counts by
status and a latency histogram say whether the endpoint is healthy. Kept in the HTTP
process only, so there is nothing to aggregate across workers. Each worker's device, and the
GPU memory in use once it warmed up, come from its report at start (runtime.device): a
dashboard can tell a GPU model that fell back to the CPU from one on its GPU.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

# Seconds; fine below 10 ms where a fast model lives, coarse up to the 597 s timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.requests_by_status: Counter[int] = Counter()
        self._bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0

    def observe(self, status: int, seconds: float) -> None:
        self.requests_by_status[status] += 1
        self._bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds
        self._latency_count += 1

    def render(self, in_flight: int, busy_workers: int, workers: int, ready: bool,
               devices: Sequence[dict[str, Any]] = ()) -> str:
        lines = [
            "# HELP kiln_requests_in_flight Invocation requests admitted and not yet answered (queued or predicting).",
            "# TYPE kiln_requests_in_flight gauge",
            f"kiln_requests_in_flight {in_flight}",
            "# HELP kiln_workers_busy Worker processes predicting right now.",
            "# TYPE kiln_workers_busy gauge",
            f"kiln_workers_busy {busy_workers}",
            "# HELP kiln_workers Worker processes (one per unit of provisioned concurrency) on this instance.",
            "# TYPE kiln_workers gauge",
            f"kiln_workers {workers}",
            "# HELP kiln_ready 1 when /ping answers 200.",
            "# TYPE kiln_ready gauge",
            f"kiln_ready {int(ready)}",
            *_device_lines(devices),
            "# HELP kiln_requests_total Invocation requests answered, by HTTP status.",
            "# TYPE kiln_requests_total counter",
        ]
        lines += [f'kiln_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests_by_status.items())]
        lines += [
            "# HELP kiln_request_duration_seconds Invocation latency inside the runtime.",
            "# TYPE kiln_request_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, self._bucket_counts):
            cumulative += count
            lines.append(f'kiln_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'kiln_request_duration_seconds_bucket{{le="+Inf"}} {self._latency_count}')
        lines.append(f"kiln_request_duration_seconds_sum {self._latency_sum:.6f}")
        lines.append(f"kiln_request_duration_seconds_count {self._latency_count}")
        return "\n".join(lines) + "\n"


def _label(value: object) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _device_lines(devices: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "# HELP kiln_worker_device_info The device each worker runs its model on (cuda or cpu), always 1.",
        "# TYPE kiln_worker_device_info gauge",
    ]
    lines += [
        f'kiln_worker_device_info{{worker="{d["worker"]}",device="{_label(d.get("device"))}",'
        f'gpu="{_label(", ".join(g["name"] for g in d.get("gpus", ())))}"}} 1'
        for d in devices
    ]
    gpus = [(d["worker"], g) for d in devices for g in d.get("gpus", ())]
    if gpus:
        lines += ["# HELP kiln_worker_gpu_memory_total_bytes Memory of each GPU a worker sees.",
                  "# TYPE kiln_worker_gpu_memory_total_bytes gauge"]
        lines += [f'kiln_worker_gpu_memory_total_bytes{{worker="{w}",gpu_index="{g["index"]}"}} {g["memory_total_bytes"]}'
                  for w, g in gpus]
        lines += ["# HELP kiln_worker_gpu_memory_used_bytes GPU memory in use once the worker had loaded and warmed up.",
                  "# TYPE kiln_worker_gpu_memory_used_bytes gauge"]
        lines += [f'kiln_worker_gpu_memory_used_bytes{{worker="{w}",gpu_index="{g["index"]}"}} {g["memory_used_bytes"]}'
                  for w, g in gpus]
    return lines

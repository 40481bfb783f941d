"""How `kiln plan` time grows with the number of endpoints (1, 10, 100).

Runs the real program under mocks, in update mode, on generated stacks whose endpoints all
serve the example fraud scorer from a temporary MLflow store. Prints seconds per run and
the ratio to the 1-endpoint baseline measured in the same run, so machines compare fairly.

    .venv/bin/python benchmarks/plan_scale.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KILN_CACHE_DIR", tempfile.mkdtemp(prefix="kiln-bench-cache-"))

from infra.plan.config import NAMESPACE, read_stack_file, resolve_stack_path  # noqa: E402
from infra.preview.program import run_program  # noqa: E402
from models.examples.seed import LocalStore, seed  # noqa: E402

SIZES = (1, 10, 100)


def stack_with(endpoints: int, tracking_uri: str) -> dict[str, Any]:
    config = read_stack_file(resolve_stack_path("prod"))
    template = config[f"{NAMESPACE}:endpoints"][0]
    config[f"{NAMESPACE}:endpoints"] = [{**template, "name": f"endpoint-{index:03d}"} for index in range(endpoints)]
    config[f"{NAMESPACE}:mlflowTrackingUri"] = tracking_uri
    return config


def time_plan(config: dict[str, Any], repeat: int) -> tuple[float, int]:
    samples, resources = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        run = run_program("prod", config, preview=False)
        samples.append(time.perf_counter() - started)
        resources = len(run.registrations)
    return statistics.median(samples), resources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the median is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(Path(folder))
        seed(store)
        run_program("prod", stack_with(1, store.tracking_uri), preview=False)  # warm imports and the model cache
        results = {size: time_plan(stack_with(size, store.tracking_uri), args.repeat) for size in SIZES}
    baseline = results[SIZES[0]][0]
    print(f"{'endpoints':>9} {'resources':>9} {'seconds':>8} {'vs 1':>6} {'per endpoint':>13}")
    for size, (seconds, resources) in results.items():
        print(f"{size:>9} {resources:>9} {seconds:>8.2f} {seconds / baseline:>5.1f}x {seconds / size:>12.3f}s")


if __name__ == "__main__":
    main()

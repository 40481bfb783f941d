"""Load a model and predict its input example, inside the model's own virtualenv.

This file is run as a script by models/reload.py with the virtualenv's interpreter, so it
imports only the standard library and what the model itself declared (MLflow, pandas,
numpy): never Kiln. It prints one JSON line, prefixed with RESULT_PREFIX, as its last line.

What it does is what the runtime does at container start (docs/decisions.md, decision 4): load
with mlflow.pyfunc, predict the logged input example, check the output against the
signature. A model that imports a package it did not declare fails here, at "load".

With `--device cuda` (a GPU compute type) it loads the way a GPU instance does: MLflow picks
the device from MLFLOW_DEFAULT_PREDICTION_DEVICE before it looks for CUDA, so setting it
makes MLflow run the device checks a GPU instance would, also on a machine without one.
A PyTorch model saved as pt2 (torch.export, MLflow 3's default outside Databricks) on the
CPU fails that check ("weights / buffers on 'cpu' device, it can't be loaded on 'cuda'
device") and never becomes ready on the instance. What only a GPU can do, moving the
weights onto it, fails here inside torch.cuda; the probe then loads on the CPU to check the
rest and says the device was emulated.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

RESULT_PREFIX = "KILN_RELOAD_RESULT "
# Predictions timed per input for the latency percentiles, within a time budget so a slow
# model costs seconds, not the probe's whole limit; p99 of 20 runs is their maximum, which
# is the honest reading of so few.
LATENCY_RUNS = 20
LATENCY_BUDGET_SECONDS = 5.0
# The batch a client sends when it groups rows into one request: the input example's rows
# repeated up to this many.
BATCH_ROWS = 32


def _missing_module(error: BaseException) -> str | None:
    """The module a ModuleNotFoundError names, looking through MLflow's re-raised wrappers."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current.name.split(".")[0]
        current = current.__cause__ or current.__context__
    match = re.search(r"No module named '([\w.]+)'", "".join(traceback.format_exception(error)))
    return match.group(1).split(".")[0] if match else None


def _raised_by_cuda_init(error: BaseException) -> bool:
    """The failure came from inside torch.cuda (no driver, a CPU-only build): this machine has
    no GPU, which is not the model's fault."""
    marker = f"{os.sep}torch{os.sep}cuda{os.sep}"
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(marker in frame.filename for frame in traceback.extract_tb(current.__traceback__)):
            return True
        current = current.__cause__ or current.__context__
    return False


def _load(model_dir: str, device: str) -> Any:
    """mlflow.pyfunc.load_model with MLflow's device selection pinned to `device`."""
    import mlflow.pyfunc

    os.environ["MLFLOW_DEFAULT_PREDICTION_DEVICE"] = device
    return mlflow.pyfunc.load_model(model_dir)


def _load_on_target(model_dir: str, device: str, result: dict[str, Any]) -> Any:
    """Load as the target does; on a failure that only the target's device causes, say so."""
    try:
        model = _load(model_dir, device)
    except Exception as error:  # noqa: BLE001 (sorted out below)
        if device == "cpu":
            raise
        on_target = error
    else:
        result["device"] = device
        return model
    if _raised_by_cuda_init(on_target):
        result["emulated"] = (f"no {device} here ({type(on_target).__name__}: {on_target}): MLflow's device checks "
                              "passed; moving the weights to the GPU only a GPU can show")
        result["device"] = "cpu"
        return _load(model_dir, "cpu")
    try:
        _load(model_dir, "cpu")
    except Exception:  # noqa: BLE001 (fails anywhere: not a device problem, report the target's error)
        raise on_target from None
    result["device_failure"] = True
    raise on_target


def _dtype_matches(expected_kind: str, actual_kind: str) -> bool:
    # numpy kinds: i/u integers, f floats, b bool, O/U/S strings, M datetimes.
    groups = {"i": "iu", "u": "iu", "f": "fiu", "b": "b", "O": "OUS", "U": "OUS", "S": "OUS", "M": "M"}
    return actual_kind in groups.get(expected_kind, expected_kind)


def output_problems(prediction: Any, schema: Any) -> list[str]:
    """Differences between a prediction and the signature's output schema (empty if none)."""
    import numpy as np
    import pandas as pd

    if schema is None:
        return []
    if schema.is_tensor_spec():
        spec = schema.inputs[0]
        array = np.asarray(prediction)
        problems = []
        if array.dtype != spec.type:
            problems.append(f"output dtype {array.dtype}, signature says {spec.type}")
        expected = tuple(spec.shape[1:])
        if len(array.shape) != len(spec.shape) or any(e not in (-1, a) for e, a in zip(expected, array.shape[1:])):
            problems.append(f"output shape {array.shape}, signature says {tuple(spec.shape)}")
        return problems
    if isinstance(prediction, pd.DataFrame):
        frame = prediction
    elif isinstance(prediction, pd.Series):
        frame = prediction.to_frame()
    else:
        array = np.asarray(prediction)
        frame = pd.DataFrame(array if array.ndim > 1 else array.reshape(-1, 1))
    specs = list(schema.inputs)
    if frame.shape[1] != len(specs):
        return [f"{frame.shape[1]} output columns, signature declares {len(specs)}"]
    problems = []
    for position, spec in enumerate(specs):
        name = getattr(spec, "name", None)
        if name is not None and len(specs) > 1 and name not in frame.columns:
            problems.append(f"output column {name!r} missing (got {list(frame.columns)})")
            continue
        column = frame[name] if name is not None and name in frame.columns else frame.iloc[:, position]
        try:
            expected_kind = np.dtype(spec.type.to_numpy()).kind
        except (AttributeError, TypeError):
            continue
        if not _dtype_matches(expected_kind, column.dtype.kind):
            problems.append(
                f"output {name or position} has dtype {column.dtype}, signature says {getattr(spec.type, 'name', spec.type)}"
            )
    return problems


def peak_rss_mib() -> float:
    """This process's peak resident memory so far: what one serving worker holds at most.
    ru_maxrss is in KiB on Linux and in bytes on macOS (getrusage(2) on each)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def latency(predict: Callable[[Any], Any], data: Any, rows: int) -> dict[str, Any]:
    """Percentiles (nearest rank, in ms) of up to LATENCY_RUNS timed predictions of `data`."""
    seconds: list[float] = []
    deadline = time.perf_counter() + LATENCY_BUDGET_SECONDS
    while len(seconds) < LATENCY_RUNS and (not seconds or time.perf_counter() < deadline):
        started = time.perf_counter()
        predict(data)
        seconds.append(time.perf_counter() - started)
    ordered = sorted(seconds)

    def rank(share: float) -> float:
        return round(ordered[max(math.ceil(share * len(ordered)), 1) - 1] * 1000, 3)

    return {"rows": rows, "runs": len(ordered), "p50_ms": rank(0.5), "p90_ms": rank(0.9), "p99_ms": rank(0.99)}


def batch_of(example: Any, rows: int) -> Any | None:
    """The input example's rows repeated up to `rows` (a DataFrame, an array or a list);
    None for an input that has no rows to repeat (a dict of tensors, a scalar)."""
    import numpy as np
    import pandas as pd

    if isinstance(example, pd.DataFrame) and len(example):
        return pd.concat([example] * math.ceil(rows / len(example)), ignore_index=True).head(rows)
    if isinstance(example, np.ndarray) and example.ndim and len(example):
        return np.concatenate([example] * math.ceil(rows / len(example)))[:rows]
    if isinstance(example, list) and example:
        return (example * math.ceil(rows / len(example)))[:rows]
    return None


def _rows(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 1


def measure(model: Any, example: Any, load_seconds: float, baseline_rss_mib: float) -> dict[str, Any]:
    """What the planner sizes workers from: load time, a worker's peak memory once the model
    answered (whole process, as the runtime's worker holds it), and predict latency on the
    example and on a batch of it (no latency without an example)."""
    on_example = latency(model.predict, example, _rows(example)) if example is not None else None
    batch = batch_of(example, BATCH_ROWS)
    on_batch = latency(model.predict, batch, BATCH_ROWS) if batch is not None else None
    return {"load_seconds": load_seconds, "baseline_rss_mib": baseline_rss_mib, "peak_rss_mib": peak_rss_mib(),
            "example": on_example, "batch": on_batch, "cpus": os.cpu_count() or 1}


def probe(model_dir: str, device: str = "cpu") -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "stage": "import", "message": "", "missing_module": None,
                              "target_device": device, "device": None, "emulated": None, "device_failure": False}
    try:
        import mlflow.pyfunc  # noqa: F401 (the import is the check)
        from mlflow.models import Model
    except ImportError as error:
        result.update(message=f"cannot import MLflow: {error}", missing_module=_missing_module(error))
        return result
    result["stage"] = "load"
    # Interpreter + MLflow + pandas before the model: the part of a worker no model changes.
    baseline_rss_mib = peak_rss_mib()
    started = time.perf_counter()
    try:
        model = _load_on_target(model_dir, device, result)
    except Exception as error:  # noqa: BLE001 (any loader failure is the finding)
        result.update(message=f"{type(error).__name__}: {error}", missing_module=_missing_module(error))
        return result
    result["load_seconds"] = round(time.perf_counter() - started, 3)
    metadata = Model.load(model_dir)
    example = metadata.load_input_example(model_dir)
    if example is None:
        result["measurements"] = measure(model, None, result["load_seconds"], baseline_rss_mib)
        result.update(ok=True, stage="done", message="loaded; no input example to predict")
        return result
    result["stage"] = "predict"
    started = time.perf_counter()
    try:
        prediction = model.predict(example)
    except Exception as error:  # noqa: BLE001
        result.update(message=f"{type(error).__name__}: {error}", missing_module=_missing_module(error))
        return result
    result["predict_seconds"] = round(time.perf_counter() - started, 3)
    result["stage"] = "output"
    signature = metadata.signature
    problems = output_problems(prediction, signature.outputs if signature else None)
    if problems:
        result["message"] = "; ".join(problems)
        return result
    result["measurements"] = measure(model, example, result["load_seconds"], baseline_rss_mib)
    result.update(ok=True, stage="done", message="loaded, predicted the input example, output matches the signature")
    return result


if __name__ == "__main__":
    outcome = probe(sys.argv[1], *sys.argv[2:3])
    print(RESULT_PREFIX + json.dumps(outcome), flush=True)

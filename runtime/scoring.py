"""Load a model, warm it up, and score one request: MLflow's formats with Kiln's status codes.

Parsing and serialization are MLflow's own scoring-server functions (mlflow.pyfunc.
scoring_server), so a response is byte-for-byte what `mlflow models serve` returns for
the same input. What differs is the error mapping, because the ALB and clients need it:

- anything wrong with the request (empty body, content type, malformed JSON or CSV, JSON
  nested deeper than MAX_JSON_NESTING, wrong columns or types against the signature) → 400
  with {"error_code", "message"};
- an MlflowException raised by predict keeps its own HTTP status (Databricks maps model
  MlflowExceptions to 4xx, e.g. schema enforcement → 400);
- NaN, Infinity (and null) reach the model as MLflow passes them; if predict then fails,
  400 naming the fields that held them: the input, not the model, was the problem;
- any other exception in the model's predict → 500 (MLflow answers 400 here, which blames
  the client for a model bug).

A 500 says only what failed and an error id: exception messages can carry secrets (a
connection string, a path, a token), so the exception and its traceback go to the log under
that id, never into a response. Predictions with NaN or Infinity are written as null: MLflow
writes bare NaN tokens, which strict JSON parsers (JavaScript, Go, Java) refuse whole.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import secrets
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runtime.errors import error_body
from runtime.protocol import Reply, Stages

log = logging.getLogger("kiln.runtime.worker")

JSON = "application/json"
# Far deeper than any MLflow input (a batch of images is 5 levels) and far shallower than the
# recursion limit: a 2 KB body of nested brackets raised RecursionError in the JSON parser and
# killed the worker (issue 13).
MAX_JSON_NESTING = 64
# A JSON string, or an unterminated one up to the end: every match from a quote succeeds, so
# the scan is linear. A pattern that must find the closing quote is quadratic on a body of
# escaped quotes without one (40 KB took 12 s), which would hold a worker until the timeout.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)


def error_reply(status: int, error_code: str, message: str) -> Reply:
    return Reply(status, JSON, error_body(error_code, message))


def internal_error(what: str, status: int = 500, error_code: str = "INTERNAL_ERROR") -> Reply:
    """A 5xx that says what failed and an error id; the exception being handled goes to the log under that id."""
    error_id = secrets.token_hex(6)
    log.error("error %s: %s:\n%s", error_id, what, traceback.format_exc())
    return error_reply(status, error_code, f"{what} (error id {error_id}; the runtime's log has the details)")


class WarmUpError(Exception):
    """The model loaded but could not predict its own input example."""


@dataclass
class LoadedModel:
    """A pyfunc model plus what every request needs from its metadata, computed once."""

    model: Any
    input_schema: Any
    takes_params: bool
    info: dict[str, Any]


def load(model_dir: Path) -> LoadedModel:
    """Load with MLflow exactly as its scoring server does (SERVING_MODEL_CONFIG honoured)."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.pyfunc import scoring_server

    # Models may behave differently when served (MLflow sets this in its own server).
    os.environ[_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name] = "true"
    started = time.perf_counter()
    model = scoring_server.load_model_with_mlflow_config(str(model_dir))
    metadata = model.metadata
    info = {
        "mlflow_version": metadata.mlflow_version,
        "run_id": metadata.run_id,
        "model_uuid": metadata.model_uuid,
        "flavors": sorted(metadata.flavors),
        "load_seconds": round(time.perf_counter() - started, 3),
    }
    return LoadedModel(
        model=model,
        input_schema=metadata.get_input_schema(),
        takes_params="params" in inspect.signature(model.predict).parameters,
        info=info,
    )


def warm_up(loaded: LoadedModel, model_dir: Path) -> float | None:
    """Predict the model's saved serving input through the request path; seconds taken, or
    None when the model has no input example (the packaging checks flag that separately).

    Readiness (DESIGN decision 4) means the same code that answers requests has answered
    once: parsing, schema enforcement, predict and serialization all ran.
    """
    example_info = loaded.model.metadata.saved_input_example_info or {}
    started = time.perf_counter()
    serving_path = example_info.get("serving_input_path")
    if serving_path and (model_dir / serving_path).is_file():
        reply = score(loaded, (model_dir / serving_path).read_bytes(), JSON)
        if reply.status != 200:
            raise WarmUpError(f"predicting the input example answered {reply.status}: {reply.body.decode(errors='replace')}")
        return time.perf_counter() - started
    if example_info.get("artifact_path") and (model_dir / example_info["artifact_path"]).is_file():
        example = loaded.model.metadata.load_input_example(str(model_dir))
        try:
            loaded.model.predict(example)
        except Exception as error:
            raise WarmUpError(f"predicting the input example raised {type(error).__name__}: {error}") from error
        return time.perf_counter() - started
    return None


def _content_type(content_type: str | None) -> tuple[str | None, Reply | None]:
    """The media type, or a 400 reply saying which types are accepted (MLflow answers 415)."""
    from mlflow.pyfunc.scoring_server import CONTENT_TYPES

    if not content_type:
        return None, error_reply(400, "BAD_REQUEST", f"missing Content-Type header; use one of {CONTENT_TYPES}")
    parts = [part.strip() for part in content_type.split(";")]
    parameters = {key.strip().lower(): value.strip().strip('"') for key, _, value in (p.partition("=") for p in parts[1:] if p)}
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        return None, error_reply(400, "BAD_REQUEST", f"only UTF-8 is supported, got charset={parameters['charset']}")
    if unexpected := sorted(set(parameters) - {"charset"}):
        return None, error_reply(400, "BAD_REQUEST", f"unrecognized content type parameters: {', '.join(unexpected)}")
    mime = parts[0].lower()
    if mime not in CONTENT_TYPES:
        return None, error_reply(400, "BAD_REQUEST", f"unsupported Content-Type {content_type!r}; use one of {CONTENT_TYPES}")
    return mime, None


def _nesting(body: bytes) -> int:
    """How deep arrays and objects nest in a JSON body, brackets inside strings not counted.
    A body with fewer brackets than the limit cannot nest deeper, so most never pay the scan."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_NESTING:
        return 0
    import numpy as np

    codes = np.frombuffer(_JSON_STRING.sub(b'""', body), dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max())


def _non_finite_fields(data: Any) -> list[str]:
    """The columns (or input names) whose numbers include NaN or Infinity (null reads as NaN)."""
    import numpy as np
    import pandas as pd

    def non_finite(values: Any) -> bool:
        try:
            array = np.asarray(values)
        except ValueError:  # ragged lists: nothing a float check can say
            return False
        if array.dtype.kind in "fc":
            return not np.isfinite(array).all()
        # Mixed values: only real numbers count, so text such as "nan" or "inf" is never blamed.
        return array.dtype.kind == "O" and any(isinstance(v, float) and not math.isfinite(v) for v in array.ravel())

    if isinstance(data, pd.DataFrame):
        return [str(column) for column in data.columns if non_finite(data[column].to_numpy())]
    if isinstance(data, dict):
        return [str(name) for name, values in data.items() if non_finite(values)]
    return ["inputs"] if non_finite(data) else []


def _strict_json(text: str) -> str:
    """`text` with bare NaN / Infinity tokens written as null; unchanged (same bytes) without them."""
    if "NaN" not in text and "Infinity" not in text:
        return text
    replaced: list[str] = []

    def to_null(token: str) -> None:
        replaced.append(token)

    value = json.loads(text, parse_constant=to_null)
    return json.dumps(value) if replaced else text


def _parse(loaded: LoadedModel, body: bytes, mime: str) -> tuple[Any, Any, bool]:
    """(data, params, unified LLM input?) using MLflow's scoring-server parsers."""
    from io import BytesIO, StringIO

    from mlflow.pyfunc import scoring_server as ss

    if mime == ss.CONTENT_TYPE_JSON:
        if (depth := _nesting(body)) > MAX_JSON_NESTING:
            raise ValueError(f"the JSON nests {depth} levels deep; at most {MAX_JSON_NESTING} are accepted")
        parsed = ss._parse_json_data(body, loaded.model.metadata, loaded.input_schema)
        return parsed.data, parsed.params, parsed.is_unified_llm_input
    if mime == ss.CONTENT_TYPE_CSV:
        return ss.parse_csv_input(StringIO(body.decode("utf-8")), schema=loaded.input_schema), None, False
    return ss.parse_parquet_input(BytesIO(body)), None, False


@dataclass
class Parsed:
    """A request's input as MLflow parsed it, ready for predict."""

    data: Any
    params: Any
    unified: bool  # the unified LLM input format, serialized unwrapped
    parse_seconds: float = 0.0


def _prepare(loaded: LoadedModel, body: bytes, content_type: str | None) -> Parsed | Reply:
    """The parsed input, or the 400 reply that says what is wrong with the request."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server as ss

    if not body:
        return error_reply(400, "BAD_REQUEST", "empty request body; send a JSON object with one of "
                           f"{sorted(ss.SUPPORTED_FORMATS)}, or CSV")
    mime, problem = _content_type(content_type)
    if problem:
        return problem
    started = time.perf_counter()
    try:
        return Parsed(*_parse(loaded, body, mime), parse_seconds=time.perf_counter() - started)
    except MlflowException as error:
        return error_reply(400, error.error_code if error.get_http_status_code() == 400 else "BAD_REQUEST", error.message)
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, RecursionError) as error:
        return error_reply(400, "BAD_REQUEST", f"cannot parse the request body as {mime}: {type(error).__name__}: {error}")


def _call_predict(loaded: LoadedModel, data: Any, params: Any) -> Any:
    if loaded.takes_params:
        return loaded.model.predict(data, params=params)
    return loaded.model.predict(data)


def _serialize(predictions: Any, unified: bool) -> Reply:
    from io import StringIO

    from mlflow.pyfunc import scoring_server as ss

    output = StringIO()
    try:
        if unified:
            ss.unwrapped_predictions_to_json(predictions, output)
        else:
            ss.predictions_to_json(predictions, output)
        text = _strict_json(output.getvalue())
    except Exception:  # noqa: BLE001 - whatever predict returned must not kill the worker
        return internal_error("the model's predictions cannot be serialized as JSON")
    return Reply(200, JSON, text.encode())


def _predict_one(loaded: LoadedModel, parsed: Parsed) -> Reply:
    from mlflow.exceptions import MlflowException

    started = time.perf_counter()
    try:
        predictions = _call_predict(loaded, parsed.data, parsed.params)
    except MlflowException as error:
        status = error.get_http_status_code()
        if status >= 500:
            return internal_error("the model's predict failed", status, error.error_code)
        return error_reply(status, error.error_code, error.message)
    except Exception:  # noqa: BLE001 - model code may raise anything; the worker must survive
        if fields := _non_finite_fields(parsed.data):
            log.warning("predict failed on NaN/Infinity/null in %s:\n%s", fields, traceback.format_exc())
            return error_reply(400, "BAD_REQUEST", f"the model cannot predict with NaN, Infinity or null in "
                               f"{', '.join(fields)}; send finite numbers there")
        return internal_error("the model's predict failed")
    return _serialize_timed(predictions, parsed, time.perf_counter() - started)


def _serialize_timed(predictions: Any, parsed: Parsed, predict_seconds: float) -> Reply:
    """The serialized reply, carrying the seconds this request's parse, predict and serialize took."""
    started = time.perf_counter()
    reply = _serialize(predictions, parsed.unified)
    return replace(reply, stages=Stages(parsed.parse_seconds, predict_seconds, time.perf_counter() - started))


def score(loaded: LoadedModel, body: bytes, content_type: str | None) -> Reply:
    """One request in, one reply out; never raises for anything a request or model can do."""
    prepared = _prepare(loaded, body, content_type)
    return prepared if isinstance(prepared, Reply) else _predict_one(loaded, prepared)


def _rows(data: Any) -> int | None:
    """How many rows an input has, if it is one merging understands: a DataFrame, or named
    arrays of equal length (what `instances` and `inputs` parse to against a column signature)."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return len(data)
    if isinstance(data, dict) and data and all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in data.values()):
        lengths = {len(v) for v in data.values()}
        return lengths.pop() if len(lengths) == 1 else None
    return None


def _merge_key(parsed: Parsed | Reply) -> tuple[Any, ...] | None:
    """What requests must share to be predicted as one input: the same kind, names, types and
    row shapes, and no params (params apply to a whole call); None: the request runs alone."""
    import pandas as pd

    if not isinstance(parsed, Parsed) or parsed.unified or parsed.params or _rows(parsed.data) is None:
        return None
    data = parsed.data
    if isinstance(data, pd.DataFrame):
        return "frame", tuple(data.columns), tuple(str(dtype) for dtype in data.dtypes)
    return "arrays", tuple((name, str(v.dtype), v.shape[1:]) for name, v in data.items())


def _concat(inputs: list[Any]) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(inputs[0], pd.DataFrame):
        return pd.concat(inputs, ignore_index=True)
    return {name: np.concatenate([data[name] for data in inputs]) for name in inputs[0]}


def _split(predictions: Any, sizes: list[int]) -> list[Any] | None:
    """The merged predictions cut back into each request's rows, or None when they do not
    have one row per input row (then the requests are predicted alone)."""
    import numpy as np
    import pandas as pd

    if isinstance(predictions, str) or not hasattr(predictions, "__len__") or len(predictions) != sum(sizes):
        return None
    bounds = np.cumsum([0, *sizes]).tolist()
    if isinstance(predictions, (pd.DataFrame, pd.Series)):
        return [predictions.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds, bounds[1:])]
    if isinstance(predictions, (np.ndarray, list)):
        return [predictions[a:b] for a, b in zip(bounds, bounds[1:])]
    return None


def _predict_merged(loaded: LoadedModel, group: list[Parsed]) -> list[Reply] | None:
    """One predict for the group's rows, split back; None when that cannot give each request
    what it would get alone (predict failed, or the output is not one row per input row).
    Each reply's predict time is the merged call's: every request of the group waited for all of it."""
    started = time.perf_counter()
    try:
        predictions = _call_predict(loaded, _concat([p.data for p in group]), None)
    except Exception:  # noqa: BLE001 - whose request it was is found by predicting them alone
        return None
    predict_seconds = time.perf_counter() - started
    parts = _split(predictions, [_rows(p.data) or 0 for p in group])
    return None if parts is None else [_serialize_timed(part, parsed, predict_seconds)
                                       for part, parsed in zip(parts, group)]


def score_batch(loaded: LoadedModel, requests: list[tuple[bytes, str | None]]) -> list[Reply]:
    """Several requests in, one reply each, in order, each what `score` would answer alone.

    Requests whose input merges (runtime.settings max_batch_size) are predicted in one call,
    which costs a model with a high per-call cost (a GPU kernel launch, a framework's
    overhead) once instead of once per request; the rest, and a merged call that fails or
    does not give one output row per input row, are predicted alone. Merging assumes each
    row's prediction depends on that row only, which is why batching is opt-in."""
    prepared = [_prepare(loaded, body, content_type) for body, content_type in requests]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, parsed in enumerate(prepared):
        if (key := _merge_key(parsed)) is not None:
            groups.setdefault(key, []).append(index)
    replies: dict[int, Reply] = {}
    for indexes in groups.values():
        if len(indexes) > 1:
            merged = _predict_merged(loaded, [prepared[i] for i in indexes])  # type: ignore[misc]
            if merged is not None:
                replies.update(zip(indexes, merged))
    return [replies[i] if i in replies else (p if isinstance(p, Reply) else _predict_one(loaded, p))
            for i, p in enumerate(prepared)]

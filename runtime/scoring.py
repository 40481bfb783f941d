"""Load a model, warm it up, and score one request: MLflow's formats with Kiln's status codes.

Parsing and serialization are MLflow's own scoring-server functions (mlflow.pyfunc.
scoring_server), so a response is byte-for-byte what `mlflow models serve` returns for
the same input. What differs is the error mapping, because the ALB and clients need it:

- anything wrong with the request (empty body, content type, malformed JSON or CSV, wrong
  columns or types against the signature) → 400 with {"error_code", "message"};
- an MlflowException raised by predict keeps its own HTTP status (Databricks maps model
  MlflowExceptions to 4xx, e.g. schema enforcement → 400);
- any other exception in the model's predict → 500 naming the exception (MLflow answers
  400 here, which blames the client for a model bug).

Tracebacks go to the log, never into a response.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import error_body
from runtime.protocol import Reply

log = logging.getLogger("kiln.runtime.worker")

JSON = "application/json"


def error_reply(status: int, error_code: str, message: str) -> Reply:
    return Reply(status, JSON, error_body(error_code, message))


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
    parameters = {key.strip().lower(): value.strip() for key, _, value in (p.partition("=") for p in parts[1:] if p)}
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        return None, error_reply(400, "BAD_REQUEST", f"only UTF-8 is supported, got charset={parameters['charset']}")
    if unexpected := sorted(set(parameters) - {"charset"}):
        return None, error_reply(400, "BAD_REQUEST", f"unrecognized content type parameters: {', '.join(unexpected)}")
    mime = parts[0].lower()
    if mime not in CONTENT_TYPES:
        return None, error_reply(400, "BAD_REQUEST", f"unsupported Content-Type {content_type!r}; use one of {CONTENT_TYPES}")
    return mime, None


def _parse(loaded: LoadedModel, body: bytes, mime: str) -> tuple[Any, Any, bool]:
    """(data, params, unified LLM input?) using MLflow's scoring-server parsers."""
    from io import BytesIO, StringIO

    from mlflow.pyfunc import scoring_server as ss

    if mime == ss.CONTENT_TYPE_JSON:
        parsed = ss._parse_json_data(body, loaded.model.metadata, loaded.input_schema)
        return parsed.data, parsed.params, parsed.is_unified_llm_input
    if mime == ss.CONTENT_TYPE_CSV:
        return ss.parse_csv_input(StringIO(body.decode("utf-8")), schema=loaded.input_schema), None, False
    return ss.parse_parquet_input(BytesIO(body)), None, False


def score(loaded: LoadedModel, body: bytes, content_type: str | None) -> Reply:
    """One request in, one reply out; never raises for anything a request or model can do."""
    from io import StringIO

    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server as ss

    if not body:
        return error_reply(400, "BAD_REQUEST", "empty request body; send a JSON object with one of "
                           f"{sorted(ss.SUPPORTED_FORMATS)}, or CSV")
    mime, problem = _content_type(content_type)
    if problem:
        return problem
    try:
        data, params, unified = _parse(loaded, body, mime)
    except MlflowException as error:
        return error_reply(400, error.error_code if error.get_http_status_code() == 400 else "BAD_REQUEST", error.message)
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        return error_reply(400, "BAD_REQUEST", f"cannot parse the request body as {mime}: {type(error).__name__}: {error}")
    try:
        if loaded.takes_params:
            predictions = loaded.model.predict(data, params=params)
        else:
            predictions = loaded.model.predict(data)
    except MlflowException as error:
        status = error.get_http_status_code()
        if status >= 500:
            log.error("predict raised MlflowException:\n%s", traceback.format_exc())
        return error_reply(status, error.error_code, error.message)
    except Exception as error:  # noqa: BLE001 - model code may raise anything; the worker must survive
        log.error("the model's predict raised:\n%s", traceback.format_exc())
        return error_reply(500, "INTERNAL_ERROR", f"the model's predict raised {type(error).__name__}: {error}")
    output = StringIO()
    try:
        if unified:
            ss.unwrapped_predictions_to_json(predictions, output)
        else:
            ss.predictions_to_json(predictions, output)
    except Exception as error:  # noqa: BLE001 - whatever predict returned must not kill the worker
        log.error("cannot serialize predictions:\n%s", traceback.format_exc())
        return error_reply(500, "INTERNAL_ERROR",
                           f"the model's predictions cannot be serialized as JSON: {type(error).__name__}: {error}")
    return Reply(200, JSON, output.getvalue().encode())

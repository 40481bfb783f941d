"""One request in, one reply out, in-process on really loaded MLflow models: every accepted
Content-Type spelling, every input format, and the exact status and error_code of every
error path (what a client and the ALB see)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import threading
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from runtime import scoring
from runtime.protocol import Reply
from tests.example_model import COLUMNS, EXAMPLE_PREDICTIONS, EXAMPLE_ROWS, fraud_scorer_dir

__all__ = ["fraud_scorer_dir"]

JSON = "application/json"
ACCEPTED = "['text/csv', 'application/json', 'application/vnd.apache.parquet']"
FORMATS = "['dataframe_records', 'dataframe_split', 'inputs', 'instances']"
RECORDS = [dict(zip(COLUMNS, row)) for row in EXAMPLE_ROWS]
CSV = ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(repr, row)) for row in EXAMPLE_ROWS) + "\n"
PREDICTED = {"predictions": EXAMPLE_PREDICTIONS}


class Misbehaves(mlflow.pyfunc.PythonModel):
    """Does what the first row's `action` says; "ok" echoes the actions."""

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ANN001
        action = model_input["action"][0]
        if action == "raise":
            raise RuntimeError("told to fail")
        if action == "unavailable":
            raise MlflowException("the feature store is down", error_code=TEMPORARILY_UNAVAILABLE)
        if action == "internal":
            raise MlflowException("lost the weights", error_code=INTERNAL_ERROR)
        if action == "unserializable":
            return object()
        return model_input["action"]


class Scales(mlflow.pyfunc.PythonModel):
    """x times the `scale` request parameter (default 1)."""

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ANN001
        return model_input["x"] * params["scale"]


class Echo(mlflow.pyfunc.PythonModel):
    """No signature: returns whatever it is given (an LLM-style dict stays a dict)."""

    def predict(self, context, model_input, params=None):  # noqa: ANN001
        return model_input


class Typed(mlflow.pyfunc.PythonModel):
    """A signature from type hints: MLflow then only accepts {"inputs": [...]}."""

    def predict(self, model_input: list[str], params=None) -> list[str]:  # noqa: ANN001
        return [text.upper() for text in model_input]


def _save(model: mlflow.pyfunc.PythonModel, directory: Path, **kwargs: object) -> Path:
    mlflow.pyfunc.save_model(str(directory), python_model=model, pip_requirements=["mlflow"], **kwargs)
    return directory


def _action_model(directory: Path, example_action: str) -> Path:
    signature = ModelSignature(inputs=Schema([ColSpec("string", "action")]))
    return _save(Misbehaves(), directory, signature=signature, input_example=pd.DataFrame({"action": [example_action]}))


@pytest.fixture(scope="module")
def fraud(fraud_scorer_dir: Path) -> scoring.LoadedModel:
    return scoring.load(fraud_scorer_dir)


@pytest.fixture(scope="module")
def misbehaves(tmp_path_factory: pytest.TempPathFactory) -> scoring.LoadedModel:
    return scoring.load(_action_model(tmp_path_factory.mktemp("misbehaves") / "model", "ok"))


@pytest.fixture(scope="module")
def scales(tmp_path_factory: pytest.TempPathFactory) -> scoring.LoadedModel:
    signature = ModelSignature(inputs=Schema([ColSpec("double", "x")]),
                               params=ParamSchema([ParamSpec("scale", "double", 1.0)]))
    return scoring.load(_save(Scales(), tmp_path_factory.mktemp("scales") / "model", signature=signature))


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> scoring.LoadedModel:
    return scoring.load(_save(Echo(), tmp_path_factory.mktemp("echo") / "model"))


def body(reply: Reply) -> dict[str, object]:
    assert reply.content_type == JSON
    return json.loads(reply.body)


def error(status: int, code: str, message: str) -> tuple[int, dict[str, str]]:
    return status, {"error_code": code, "message": message}


def answered(reply: Reply) -> tuple[int, dict[str, object]]:
    return reply.status, body(reply)


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The start of each error logged by the worker: what it says, then the traceback."""
    return [record.getMessage()[:record.getMessage().index("Traceback") + len("Traceback")]
            for record in caplog.records if record.name == "kiln.runtime.worker"]


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


# --- Content-Type -------------------------------------------------------------------------------

@pytest.mark.parametrize(("content_type", "mime"), [
    ("application/json", "application/json"),
    ("application/json; charset=utf-8", "application/json"),
    ("application/json;charset=UTF-8", "application/json"),
    ("Application/JSON; Charset=utf-8", "application/json"),
    ("application/json ; charset = utf-8 ;", "application/json"),
    ("text/csv", "text/csv"),
    ("text/csv; charset=utf-8", "text/csv"),
    ('application/json; charset="utf-8"', "application/json"),  # quoted, as RFC 9110 allows
    ('text/csv; charset="UTF-8"', "text/csv"),
    ("application/vnd.apache.parquet", "application/vnd.apache.parquet"),
])
def test_every_spelling_of_a_supported_content_type_is_accepted(content_type: str, mime: str) -> None:
    assert scoring._content_type(content_type) == (mime, None)


@pytest.mark.parametrize(("content_type", "message"), [
    (None, f"missing Content-Type header; use one of {ACCEPTED}"),
    ("", f"missing Content-Type header; use one of {ACCEPTED}"),
    ("application/json; charset=latin-1", "only UTF-8 is supported, got charset=latin-1"),
    ("text/csv; charset=UTF-16", "only UTF-8 is supported, got charset=UTF-16"),
    ('text/csv; charset="UTF-16"', "only UTF-8 is supported, got charset=UTF-16"),
    ("application/json; format=pandas-split; Boundary=x", "unrecognized content type parameters: boundary, format"),
    ("application/json; charset=utf-8; q=1", "unrecognized content type parameters: q"),
    ("application/json; boundary=a=b", "unrecognized content type parameters: boundary"),
    ("application/json; charset=utf-8=x", "only UTF-8 is supported, got charset=utf-8=x"),
    ("text/plain", f"unsupported Content-Type 'text/plain'; use one of {ACCEPTED}"),
    ("application/x-www-form-urlencoded", f"unsupported Content-Type 'application/x-www-form-urlencoded'; use one of {ACCEPTED}"),
])
def test_unusable_content_type_is_a_400_saying_what_is_accepted(content_type: str | None, message: str) -> None:
    mime, problem = scoring._content_type(content_type)

    assert mime is None
    assert answered(problem) == error(400, "BAD_REQUEST", message)


# --- Input formats ------------------------------------------------------------------------------

@pytest.mark.parametrize(("content_type", "payload"), [
    (JSON, {"dataframe_split": {"columns": COLUMNS, "data": EXAMPLE_ROWS}}),
    (JSON, {"dataframe_records": RECORDS}),
    (JSON, {"instances": RECORDS}),
    (JSON, {"inputs": {column: [row[i] for row in EXAMPLE_ROWS] for i, column in enumerate(COLUMNS)}}),
    (JSON, {"dataframe_split": {"columns": COLUMNS, "data": EXAMPLE_ROWS}, "params": {}}),
    ("application/json; charset=utf-8", {"dataframe_records": RECORDS}),
    ("text/csv", CSV),
    ("text/csv; charset=utf-8", CSV),
], ids=["dataframe_split", "dataframe_records", "instances", "inputs", "params", "json-charset", "csv", "csv-charset"])
def test_every_input_format_scores_the_same_rows_alike(fraud: scoring.LoadedModel, content_type: str,
                                                       payload: dict[str, object] | str) -> None:
    raw = payload if isinstance(payload, str) else json.dumps(payload)

    reply = scoring.score(fraud, raw.encode(), content_type)

    assert answered(reply) == (200, PREDICTED)


def test_parquet_scores_the_same_rows_alike(fraud: scoring.LoadedModel) -> None:
    frame = pd.DataFrame(EXAMPLE_ROWS, columns=COLUMNS)

    assert answered(scoring.score(fraud, _parquet(frame), "application/vnd.apache.parquet")) == (200, PREDICTED)


def test_json_is_parsed_against_the_signature_and_csv_by_its_dtypes(fraud: scoring.LoadedModel) -> None:
    data, params, unified = scoring._parse(fraud, b'{"dataframe_split": {"columns": ["amount"], "data": [[1]]}, '
                                                  b'"params": {"k": 2}}', JSON)
    frame, csv_params, csv_unified = scoring._parse(fraud, b"amount,hour\n1,5\n", "text/csv")

    assert (data.to_dict("list"), params, unified) == ({"amount": [1.0]}, {"k": 2}, False)
    # the signature types the CSV columns as doubles, not the ints pandas would infer
    assert (frame.dtypes.astype(str).to_dict(), csv_params, csv_unified) == (
        {"amount": "float64", "hour": "float64"}, None, False)


def test_request_params_reach_a_model_that_declares_them(scales: scoring.LoadedModel) -> None:
    split = {"columns": ["x"], "data": [[2.0], [0.5]]}

    with_params = scoring.score(scales, json.dumps({"dataframe_split": split, "params": {"scale": 3}}).encode(), JSON)
    without = scoring.score(scales, json.dumps({"dataframe_split": split}).encode(), JSON)

    # a returned Series comes back as records of its column
    assert answered(with_params) == (200, {"predictions": [{"x": 6.0}, {"x": 1.5}]})  # 2 * 3, 0.5 * 3
    assert answered(without) == (200, {"predictions": [{"x": 2.0}, {"x": 0.5}]})  # the declared default scale of 1


@pytest.mark.parametrize("payload", [{"prompt": "hi"}, {"messages": [{"role": "user", "content": "hi"}]}])
def test_unified_llm_input_is_answered_unwrapped(echo: scoring.LoadedModel, payload: dict[str, object]) -> None:
    reply = scoring.score(echo, json.dumps(payload).encode(), JSON)

    assert answered(reply) == (200, payload)


# --- Request errors: 400 ------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [JSON, None])
def test_empty_body_is_a_400_naming_the_formats(fraud: scoring.LoadedModel, content_type: str | None) -> None:
    reply = scoring.score(fraud, b"", content_type)

    assert answered(reply) == error(400, "BAD_REQUEST", f"empty request body; send a JSON object with one of {FORMATS}, "
                                                        "or CSV")


def test_body_without_content_type_is_a_400(fraud: scoring.LoadedModel) -> None:
    reply = scoring.score(fraud, json.dumps({"dataframe_records": RECORDS}).encode(), None)

    assert answered(reply) == error(400, "BAD_REQUEST", f"missing Content-Type header; use one of {ACCEPTED}")


def test_unsupported_content_type_is_a_400_not_mlflows_415(fraud: scoring.LoadedModel) -> None:
    reply = scoring.score(fraud, CSV.encode(), "text/plain; charset=utf-8")

    assert answered(reply) == error(400, "BAD_REQUEST", f"unsupported Content-Type 'text/plain; charset=utf-8'; "
                                                        f"use one of {ACCEPTED}")


@pytest.mark.parametrize(("raw", "code", "starts"), [
    (b'{"dataframe_split": ', "BAD_REQUEST", "Invalid input. Ensure that input is a valid JSON formatted string."),
    (b"[1, 2]", "BAD_REQUEST", "Invalid input. The input must be a JSON dictionary with exactly one of the input fields"),
    (b'{"rows": []}', "BAD_REQUEST", "The input must be a JSON dictionary with exactly one of the input fields"),
    (b'{"instances": [], "inputs": []}', "BAD_REQUEST", "The input must be a JSON dictionary"),
    (b'{"dataframe_records": 5}', "BAD_REQUEST", "Invalid input. Dataframe records format must be a list of records."),
    (b"\xff\xfe", "BAD_REQUEST", "Invalid input. Ensure that input is a valid JSON formatted string."),
], ids=["truncated", "list", "no-format", "two-formats", "records-not-a-list", "not-utf8"])
def test_malformed_json_is_a_400_with_mlflows_error_code(fraud: scoring.LoadedModel, raw: bytes, code: str,
                                                         starts: str) -> None:
    status, answer = answered(scoring.score(fraud, raw, JSON))

    assert (status, answer["error_code"]) == (400, code)
    assert answer["message"].startswith(starts)


def test_wrong_columns_are_a_400_from_schema_enforcement(fraud: scoring.LoadedModel) -> None:
    status, answer = answered(scoring.score(fraud, b'{"dataframe_records": [{"amount": 1.0}]}', JSON))

    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert answer["message"].endswith("Error: Model is missing inputs ['merchant_risk', 'hour', 'card_age_days'].")


def test_wrong_types_are_a_400(fraud: scoring.LoadedModel) -> None:
    record = {**RECORDS[0], "amount": "a lot"}

    status, answer = answered(scoring.score(fraud, json.dumps({"dataframe_records": [record]}).encode(), JSON))

    assert (status, answer["error_code"]) == (400, "BAD_REQUEST")
    assert "Failed to convert column amount to type 'float64'" in answer["message"]


def test_request_for_a_type_hinted_model_keeps_mlflows_invalid_parameter_code(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    typed = scoring.load(_save(Typed(), tmp_path_factory.mktemp("typed") / "model"))

    status, answer = answered(scoring.score(typed, b'{"dataframe_records": [{"text": "hi"}]}', JSON))
    ok = scoring.score(typed, b'{"inputs": ["hi"]}', JSON)

    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert answer["message"].startswith("Request payload must be a dictionary with 'inputs' key")
    assert answered(ok) == (200, {"predictions": ["HI"]})


def test_unparseable_csv_is_a_400(fraud: scoring.LoadedModel) -> None:
    status, answer = answered(scoring.score(fraud, b'amount,hour\n"1,2\n', "text/csv"))

    assert (status, answer["error_code"]) == (400, "BAD_REQUEST")
    assert answer["message"].startswith("Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
                                        "CSV-formatted Pandas DataFrame")


def test_csv_that_is_not_utf8_is_a_400_naming_the_decode_error(fraud: scoring.LoadedModel) -> None:
    reply = scoring.score(fraud, b"amount\n\xff\n", "text/csv")

    assert answered(reply) == error(400, "BAD_REQUEST", "cannot parse the request body as text/csv: UnicodeDecodeError: "
                                                        "'utf-8' codec can't decode byte 0xff in position 7: invalid "
                                                        "start byte")


def test_unparseable_parquet_is_a_400(fraud: scoring.LoadedModel) -> None:
    status, answer = answered(scoring.score(fraud, b"PAR1 not really", "application/vnd.apache.parquet"))

    assert (status, answer["error_code"]) == (400, "BAD_REQUEST")
    assert answer["message"].startswith("Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
                                        "Parquet Pandas DataFrame")


# --- Model errors: the model's own status, or 500 -----------------------------------------------

def _actions(*actions: str) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["action"], "data": [[a] for a in actions]}}).encode()


def test_model_that_answers_is_a_200(misbehaves: scoring.LoadedModel) -> None:
    assert answered(scoring.score(misbehaves, _actions("ok", "fine"), JSON)) == (
        200, {"predictions": [{"action": "ok"}, {"action": "fine"}]})


ERROR_ID = r"\(error id ([0-9a-f]{12}); the runtime's log has the details\)"


def _error_id(message: str, what: str) -> str:
    """The error id of a generic 5xx message that says `what` failed; fails on any other message."""
    match = re.fullmatch(re.escape(what) + " " + ERROR_ID, message)
    assert match, message
    return match.group(1)


def test_exception_in_predict_is_a_500_with_an_error_id_and_the_exception_only_in_the_log(
        misbehaves: scoring.LoadedModel, caplog: pytest.LogCaptureFixture) -> None:
    # exception messages can carry secrets (issue 13): the body says what failed, the log says why
    with caplog.at_level(logging.ERROR, logger="kiln.runtime.worker"):
        status, answer = answered(scoring.score(misbehaves, _actions("raise"), JSON))

    error_id = _error_id(answer["message"], "the model's predict failed")
    assert (status, answer["error_code"]) == (500, "INTERNAL_ERROR")
    assert "told to fail" not in answer["message"]
    assert logged(caplog) == [f"error {error_id}: the model's predict failed:\nTraceback"]
    assert "RuntimeError: told to fail" in caplog.text


def test_each_500_has_its_own_error_id(misbehaves: scoring.LoadedModel) -> None:
    first, second = (body(scoring.score(misbehaves, _actions("raise"), JSON))["message"] for _ in range(2))

    assert first != second


@pytest.mark.parametrize(("action", "status", "code"), [("unavailable", 503, "TEMPORARILY_UNAVAILABLE"),
                                                        ("internal", 500, "INTERNAL_ERROR")])
def test_mlflow_exception_of_5xx_in_predict_keeps_its_status_and_code_and_logs_its_message(
        misbehaves: scoring.LoadedModel, caplog: pytest.LogCaptureFixture, action: str, status: int, code: str) -> None:
    with caplog.at_level(logging.ERROR, logger="kiln.runtime.worker"):
        reply_status, answer = answered(scoring.score(misbehaves, _actions(action), JSON))

    error_id = _error_id(answer["message"], "the model's predict failed")
    assert (reply_status, answer["error_code"]) == (status, code)
    assert logged(caplog) == [f"error {error_id}: the model's predict failed:\nTraceback"]


def test_mlflow_exception_below_500_is_not_logged_as_an_error(misbehaves: scoring.LoadedModel,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="kiln.runtime.worker"):
        reply = scoring.score(misbehaves, b'{"dataframe_records": [{"other": "x"}]}', JSON)

    assert reply.status == 400
    assert caplog.records == []


def test_predictions_that_cannot_be_json_are_a_500(misbehaves: scoring.LoadedModel,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="kiln.runtime.worker"):
        status, answer = answered(scoring.score(misbehaves, _actions("unserializable"), JSON))

    error_id = _error_id(answer["message"], "the model's predictions cannot be serialized as JSON")
    assert (status, answer["error_code"]) == (500, "INTERNAL_ERROR")
    assert logged(caplog) == [f"error {error_id}: the model's predictions cannot be serialized as JSON:\nTraceback"]


# --- Hostile and non-finite input (issue 13) ----------------------------------------------------

def test_json_nested_deeper_than_the_limit_is_a_400_not_a_dead_worker(echo: scoring.LoadedModel) -> None:
    # 2 KB of brackets raised RecursionError in the JSON parser, which killed the worker
    deep = b'{"inputs": ' + b"[" * 1000 + b"]" * 1000 + b"}"

    status, answer = answered(scoring.score(echo, deep, JSON))

    assert (status, answer) == error(400, "BAD_REQUEST", "cannot parse the request body as application/json: "
                                     "ValueError: the JSON nests 1001 levels deep; at most 64 are accepted")


def test_json_at_the_nesting_limit_and_brackets_inside_strings_are_parsed(echo: scoring.LoadedModel) -> None:
    nested = b'{"inputs": {"x": ' + b"[" * 62 + b"1" + b"]" * 62 + b', "y": ["' + b"[{" * 100 + b'"]}}'

    reply = scoring.score(echo, nested, JSON)

    assert reply.status == 200


def test_an_unterminated_string_of_escaped_quotes_is_a_400_without_holding_the_worker(
        echo: scoring.LoadedModel) -> None:
    # deep enough to be scanned, then 400 KB that a closing-quote search rescans from every quote
    # (hours of one worker's CPU); the bound only catches that hang, it says nothing of speed
    hostile = b"[" * 100 + b'"' + b'\\"' * 200_000 + b"\\"
    replies: list[Reply] = []
    scorer = threading.Thread(target=lambda: replies.append(scoring.score(echo, hostile, JSON)), daemon=True)

    scorer.start()
    scorer.join(60)

    assert [reply.status for reply in replies] == [400]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_input_the_model_cannot_take_is_a_400_naming_the_column(fraud: scoring.LoadedModel,
                                                                          value: str) -> None:
    # json.dumps writes float("NaN") as the bare token NaN, as such clients send it
    request = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[float(value), *EXAMPLE_ROWS[0][1:]]]}})
    assert value in request

    assert answered(scoring.score(fraud, request.encode(), JSON)) == error(
        400, "BAD_REQUEST", "the model cannot predict with NaN, Infinity or null in amount; send finite numbers there")


class FailsOnAnything(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        raise ValueError("cannot")


@pytest.mark.parametrize("request_body", [b'{"inputs": {"words": ["nan", "inf"]}}', b'{"inputs": {"x": [1, 2.5]}}'])
def test_a_failing_model_without_non_finite_numbers_is_a_500_even_with_nan_as_text(tmp_path: Path,
                                                                                  request_body: bytes) -> None:
    fails = scoring.load(_save(FailsOnAnything(), tmp_path / "model"))

    status, answer = answered(scoring.score(fails, request_body, JSON))

    assert (status, answer["error_code"]) == (500, "INTERNAL_ERROR")


def test_non_finite_input_reaches_a_model_that_takes_it_as_in_mlflow(echo: scoring.LoadedModel) -> None:
    reply = scoring.score(echo, b'{"dataframe_records": [{"x": NaN, "y": 1.5}]}', JSON)

    assert answered(reply) == (200, {"predictions": [{"x": None, "y": 1.5}]})


@pytest.mark.parametrize("request_body", [b'{"inputs": [1.0, NaN, Infinity, -Infinity]}',
                                          b'{"inputs": {"a": [NaN], "b": ["NaN and Infinity as text"]}}'])
def test_non_finite_predictions_are_valid_json_with_null(echo: scoring.LoadedModel, request_body: bytes) -> None:
    reply = scoring.score(echo, request_body, JSON)

    expected = json.loads(request_body, parse_constant=lambda _: None)["inputs"]
    assert reply.status == 200
    assert json.loads(reply.body, parse_constant=pytest.fail) == {"predictions": expected}


def test_predictions_without_non_finite_numbers_are_mlflows_bytes(echo: scoring.LoadedModel) -> None:
    # "NaN" inside a string is no number: the answer stays exactly what MLflow writes
    reply = scoring.score(echo, b'{"inputs": {"a": ["NaN", "Infinity"]}}', JSON)

    assert reply.body == b'{"predictions": {"a": ["NaN", "Infinity"]}}'


# --- Load and warm-up ---------------------------------------------------------------------------

def test_load_describes_the_model_from_its_mlmodel(fraud_scorer_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", raising=False)
    mlmodel = yaml.safe_load((fraud_scorer_dir / "MLmodel").read_text())

    loaded = scoring.load(fraud_scorer_dir)

    seconds = loaded.info.pop("load_seconds")
    assert loaded.info == {"mlflow_version": mlflow.__version__, "run_id": None, "model_uuid": mlmodel["model_uuid"],
                           "flavors": ["python_function", "sklearn"]}
    # milliseconds, for the "ready: load 0.04 s" log line
    assert isinstance(seconds, float) and 0 <= seconds < 60 and round(seconds, 3) == seconds
    assert loaded.input_schema.input_names() == COLUMNS
    assert loaded.takes_params is True
    # models may check this to behave as they do under MLflow's own server
    assert os.environ["_MLFLOW_IS_IN_SERVING_ENVIRONMENT"] == "true"


def test_warm_up_scores_the_serving_input_example(fraud: scoring.LoadedModel, fraud_scorer_dir: Path) -> None:
    seconds = scoring.warm_up(fraud, fraud_scorer_dir)

    assert seconds is not None and 0 <= seconds < 60


def test_warm_up_fails_when_the_serving_example_is_refused(tmp_path: Path) -> None:
    directory = _action_model(tmp_path / "model", "raise")

    with pytest.raises(scoring.WarmUpError) as failed:
        scoring.warm_up(scoring.load(directory), directory)

    assert str(failed.value).startswith('predicting the input example answered 500: {"error_code": "INTERNAL_ERROR", '
                                        '"message": "the model\'s predict failed (error id ')


def test_warm_up_predicts_the_raw_example_when_there_is_no_serving_example(fraud_scorer_dir: Path,
                                                                         tmp_path: Path) -> None:
    directory = shutil.copytree(fraud_scorer_dir, tmp_path / "model")
    (directory / "serving_input_example.json").unlink()

    seconds = scoring.warm_up(scoring.load(directory), directory)

    assert seconds is not None and 0 <= seconds < 60


def test_warm_up_fails_when_the_raw_example_raises(tmp_path: Path) -> None:
    directory = _action_model(tmp_path / "model", "raise")
    (directory / "serving_input_example.json").unlink()

    with pytest.raises(scoring.WarmUpError) as failed:
        scoring.warm_up(scoring.load(directory), directory)

    assert str(failed.value) == "predicting the input example raised RuntimeError: told to fail"


def test_warm_up_without_an_input_example_is_skipped(echo: scoring.LoadedModel, tmp_path: Path) -> None:
    assert scoring.warm_up(echo, tmp_path) is None


def test_warm_up_with_the_example_files_gone_is_skipped(fraud_scorer_dir: Path, tmp_path: Path) -> None:
    directory = shutil.copytree(fraud_scorer_dir, tmp_path / "model")
    loaded = scoring.load(directory)
    (directory / "serving_input_example.json").unlink()
    (directory / "input_example.json").unlink()

    assert scoring.warm_up(loaded, directory) is None


# --- Batches (KILN_MAX_BATCH_SIZE) --------------------------------------------------------------

def _each_format(rows: list[list[float]]) -> dict[str, tuple[bytes, str]]:
    """The same rows as a request in each MLflow input format."""
    records = [dict(zip(COLUMNS, row)) for row in rows]
    csv = ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(repr, row)) for row in rows) + "\n"
    return {
        "dataframe_split": (json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows}}).encode(), JSON),
        "dataframe_records": (json.dumps({"dataframe_records": records}).encode(), JSON),
        "instances": (json.dumps({"instances": records}).encode(), JSON),
        "inputs": (json.dumps({"inputs": {c: [row[i] for row in rows] for i, c in enumerate(COLUMNS)}}).encode(), JSON),
        "csv": (csv.encode(), "text/csv"),
        "parquet": (_parquet(pd.DataFrame(rows, columns=COLUMNS)), "application/vnd.apache.parquet"),
    }


@pytest.mark.parametrize("input_format", ["dataframe_split", "dataframe_records", "instances", "inputs", "csv",
                                          "parquet"])
def test_a_batch_answers_each_request_exactly_as_alone(fraud: scoring.LoadedModel, input_format: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    requests = [_each_format(rows)[input_format] for rows in (EXAMPLE_ROWS[:1], EXAMPLE_ROWS[1:], EXAMPLE_ROWS[:2])]
    calls: list[int] = []
    predict = fraud.model.predict
    monkeypatch.setattr(fraud.model, "predict",
                        lambda data, **kwargs: calls.append(len(pd.DataFrame(data))) or predict(data, **kwargs))

    batched = scoring.score_batch(fraud, requests)

    assert calls == [5]  # one call for the 1 + 2 + 2 rows
    monkeypatch.undo()
    assert batched == [scoring.score(fraud, body, content_type) for body, content_type in requests]
    assert [body(reply) for reply in batched] == [{"predictions": EXAMPLE_PREDICTIONS[:1]},
                                                  {"predictions": EXAMPLE_PREDICTIONS[1:]},
                                                  {"predictions": EXAMPLE_PREDICTIONS[:2]}]


class RowsPerCall(mlflow.pyfunc.PythonModel):
    """Answers each row with how many rows its predict call had: shows which requests merged."""

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ANN001
        return [len(model_input)] * len(model_input)


class OneAnswerPerCall(mlflow.pyfunc.PythonModel):
    """One prediction however many rows: its output cannot be split back into requests."""

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ANN001
        return [len(model_input)]


def _x(*values: object) -> tuple[bytes, str]:
    return json.dumps({"dataframe_split": {"columns": ["x"], "data": [[v] for v in values]}}).encode(), JSON


def test_requests_with_the_same_columns_and_types_are_predicted_in_one_call(tmp_path: Path) -> None:
    model = scoring.load(_save(RowsPerCall(), tmp_path / "model"))

    replies = scoring.score_batch(model, [_x(1), _x(2, 3), _x(1.5), _x(4), (b"{", JSON)])

    # ints merge (4 rows in one call); the float column goes alone; the malformed one gets its own 400
    assert [reply.status for reply in replies] == [200, 200, 200, 200, 400]
    assert [body(reply)["predictions"] for reply in replies[:4]] == [[4], [4, 4], [1], [4]]


def test_requests_with_params_are_predicted_alone(scales: scoring.LoadedModel) -> None:
    split = {"columns": ["x"], "data": [[2.0]]}
    requests = [(json.dumps({"dataframe_split": split, "params": {"scale": 3}}).encode(), JSON),
                (json.dumps({"dataframe_split": split}).encode(), JSON)]

    assert scoring.score_batch(scales, requests) == [scoring.score(scales, *request) for request in requests]


def test_a_merged_output_that_is_not_one_row_per_input_row_is_predicted_alone(tmp_path: Path) -> None:
    model = scoring.load(_save(OneAnswerPerCall(), tmp_path / "model"))

    replies = scoring.score_batch(model, [_x(1), _x(2, 3)])

    assert [body(reply)["predictions"] for reply in replies] == [[1], [2]]


def test_a_merged_call_that_fails_finds_the_failing_request_by_predicting_alone(
        misbehaves: scoring.LoadedModel) -> None:
    replies = scoring.score_batch(misbehaves, [(_actions("raise"), JSON), (_actions("ok"), JSON)])

    assert [reply.status for reply in replies] == [500, 200]
    assert body(replies[1]) == {"predictions": [{"action": "ok"}]}


# --- Stage timings (the runtime's Server-Timing header) -------------------------------------------

PREDICT_SLEEP_SECONDS = 0.05


class SlowPredict(mlflow.pyfunc.PythonModel):
    """Takes a known time per predict call, so the stage it is counted in shows."""

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ANN001
        import time

        time.sleep(PREDICT_SLEEP_SECONDS)
        return list(model_input["x"])


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> scoring.LoadedModel:
    return scoring.load(_save(SlowPredict(), tmp_path_factory.mktemp("slow") / "model"))


def test_a_reply_says_how_long_its_parse_predict_and_serialize_took(slow: scoring.LoadedModel) -> None:
    stages = scoring.score(slow, *_x(1, 2)).stages

    assert PREDICT_SLEEP_SECONDS <= stages.predict < PREDICT_SLEEP_SECONDS + 1
    assert 0 < stages.parse < PREDICT_SLEEP_SECONDS
    assert 0 < stages.serialize < PREDICT_SLEEP_SECONDS


def test_a_request_refused_before_predict_has_no_predict_or_serialize_time(slow: scoring.LoadedModel) -> None:
    reply = scoring.score(slow, b"{", JSON)

    assert reply.status == 400
    assert (reply.stages.predict, reply.stages.serialize) == (0, 0)


def test_each_request_of_a_merged_batch_waited_for_the_whole_merged_predict(slow: scoring.LoadedModel) -> None:
    replies = scoring.score_batch(slow, [_x(1), _x(2, 3), _x(4)])

    assert [body(reply) for reply in replies] == [{"predictions": [1]}, {"predictions": [2, 3]}, {"predictions": [4]}]
    # One predict call (one sleep) for all three: each reply counts that call, not a third of it.
    assert {reply.stages.predict for reply in replies} == {replies[0].stages.predict}
    assert PREDICT_SLEEP_SECONDS <= replies[0].stages.predict < 2 * PREDICT_SLEEP_SECONDS

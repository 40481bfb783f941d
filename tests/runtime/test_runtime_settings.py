"""KILN_* variables → runtime settings: every default when unset, every limit at its boundary,
and the exact message a person sees for a value that cannot be used (pure, in-process)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from runtime.settings import RuntimeSettings, SettingsError, settings_from_env, variable

URI = "s3://kiln-artifacts/models/abc/"
DIGEST = hashlib.sha256(b"model tree").hexdigest()
TOKEN_A = hashlib.sha256(b"token-a").hexdigest()
TOKEN_B = hashlib.sha256(b"token-b").hexdigest()
TOKEN_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/prod/fraud-scorer/tokens-AbCdEf"
PARAMETER = "arn:aws:ssm:us-east-1:123456789012:parameter/fraud/api-key"
DIMENSIONS = "Stack=dev,Endpoint=fraud-scorer,ServedModel=champion"

# Every documented default, written out (not read from the code): the container and
# `kiln runtime` start with exactly these when the user-data sets nothing.
DEFAULTS = {
    "model_uri": URI,
    "model_digest": None,
    "endpoint": None,
    "served_model": None,
    "model_name": None,
    "model_version": None,
    "host": "0.0.0.0",
    "port": 8080,
    "workers": 1,
    "queue_budget_seconds": None,  # 1 s, or half the request timeout when shorter
    "request_timeout_seconds": 597,  # Databricks' model execution timeout
    "body_timeout_seconds": 30,
    "max_batch_size": 1,  # batching off
    "max_batch_delay_ms": 0,
    "drain_seconds": 30,
    "max_payload_bytes": 16 * 1024 * 1024,  # Databricks' 16 MB request limit = 16777216 bytes
    "load_timeout_seconds": 1800,
    "auth_token_sha256": (),
    "auth_required": False,  # no token asked while no hash is configured
    "auth_token_sha256_secret": None,
    "auth_refresh_seconds": 60,  # a rotated token holds on every instance within a minute
    "secret_environment": (),
    "cache_dir": None,
    "metric_dimensions": (),
    "metric_period_seconds": 10,
    "load_balancer_idle_timeout_seconds": None,
    "gpus": 0,  # leave CUDA_VISIBLE_DEVICES alone
    "spread_across_gpus": False,
    "require_gpu": False,  # `kiln runtime` and `kiln serve` serve a GPU model on the CPU
    "capture_uri": None,  # no inference table
    "capture_sampling_fraction": 1.0,
    "capture_format": "parquet",
    "capture_max_body_bytes": 64 * 1024,
    "capture_max_buffered_bytes": 64 * 1024 * 1024,
    "capture_flush_seconds": 30,
    "capture_flush_records": 1000,
}

# (variable, field, minimum accepted); integers
INTEGERS = [
    ("KILN_PORT", "port", 0),
    ("KILN_WORKERS", "workers", 1),
    ("KILN_MAX_BATCH_SIZE", "max_batch_size", 1),
    ("KILN_MAX_BATCH_DELAY_MS", "max_batch_delay_ms", 0),
    ("KILN_MAX_PAYLOAD_BYTES", "max_payload_bytes", 1),
    ("KILN_GPUS", "gpus", 0),
    ("KILN_CAPTURE_MAX_BODY_BYTES", "capture_max_body_bytes", 0),
    ("KILN_CAPTURE_MAX_BUFFERED_BYTES", "capture_max_buffered_bytes", 1),
    ("KILN_CAPTURE_FLUSH_RECORDS", "capture_flush_records", 1),
]
# (variable, field); true or false
FLAGS = [("KILN_SPREAD_ACROSS_GPUS", "spread_across_gpus"), ("KILN_REQUIRE_GPU", "require_gpu")]
# (variable, field); seconds must be more than 0
SECONDS = [
    ("KILN_REQUEST_TIMEOUT_SECONDS", "request_timeout_seconds"),
    ("KILN_QUEUE_BUDGET_SECONDS", "queue_budget_seconds"),
    ("KILN_BODY_TIMEOUT_SECONDS", "body_timeout_seconds"),
    ("KILN_DRAIN_SECONDS", "drain_seconds"),
    ("KILN_LOAD_TIMEOUT_SECONDS", "load_timeout_seconds"),
    ("KILN_METRIC_PERIOD_SECONDS", "metric_period_seconds"),
    ("KILN_LOAD_BALANCER_IDLE_TIMEOUT_SECONDS", "load_balancer_idle_timeout_seconds"),
    ("KILN_CAPTURE_FLUSH_SECONDS", "capture_flush_seconds"),
]


def parsed(**env: str) -> dict[str, object]:
    return dataclasses.asdict(settings_from_env({"KILN_MODEL_URI": URI, **env}))


def test_only_the_model_uri_set_gives_every_default() -> None:
    assert parsed() == DEFAULTS


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_or_blank_variables_mean_their_defaults(value: str) -> None:
    blank = {name: value for name, _, _ in INTEGERS} | {name: value for name, _ in SECONDS + FLAGS}
    blank |= {name: value for name in ("KILN_MODEL_DIGEST", "KILN_AUTH_TOKEN_SHA256", "KILN_AUTH_TOKEN_SHA256_FILE",
                                       "KILN_METRIC_DIMENSIONS", "KILN_CACHE_DIR", "KILN_CAPTURE_URI",
                                       "KILN_CAPTURE_SAMPLING_FRACTION", "KILN_CAPTURE_FORMAT")}

    assert parsed(**blank) == DEFAULTS


def test_empty_names_and_host_mean_none_and_all_interfaces() -> None:
    names = {"KILN_ENDPOINT": "", "KILN_SERVED_MODEL": "", "KILN_MODEL_NAME": "", "KILN_MODEL_VERSION": "",
             "KILN_HOST": ""}

    assert parsed(**names) == DEFAULTS


def test_every_variable_reaches_its_field() -> None:
    settings = parsed(
        KILN_MODEL_DIGEST=DIGEST, KILN_ENDPOINT="fraud-scorer", KILN_SERVED_MODEL="champion",
        KILN_MODEL_NAME="fraud-scorer", KILN_MODEL_VERSION="3", KILN_HOST="127.0.0.1", KILN_PORT="9000",
        KILN_WORKERS="4", KILN_QUEUE_BUDGET_SECONDS="0.5", KILN_REQUEST_TIMEOUT_SECONDS="2.5",
        KILN_BODY_TIMEOUT_SECONDS="3", KILN_MAX_BATCH_SIZE="8", KILN_MAX_BATCH_DELAY_MS="5", KILN_DRAIN_SECONDS="7",
        KILN_MAX_PAYLOAD_BYTES="4096", KILN_LOAD_TIMEOUT_SECONDS="60", KILN_AUTH_TOKEN_SHA256=TOKEN_A,
        KILN_CACHE_DIR="/var/cache/kiln", KILN_METRIC_DIMENSIONS=DIMENSIONS,
        KILN_METRIC_PERIOD_SECONDS="1", KILN_LOAD_BALANCER_IDLE_TIMEOUT_SECONDS="602",
        KILN_GPUS="4", KILN_SPREAD_ACROSS_GPUS="true", KILN_REQUIRE_GPU="true",
        KILN_CAPTURE_URI="s3://kiln-artifacts/inference-tables/fraud-scorer/", KILN_CAPTURE_SAMPLING_FRACTION="0.25",
        KILN_CAPTURE_FORMAT="jsonl", KILN_CAPTURE_MAX_BODY_BYTES="1024", KILN_CAPTURE_MAX_BUFFERED_BYTES="2048",
        KILN_CAPTURE_FLUSH_SECONDS="5", KILN_CAPTURE_FLUSH_RECORDS="10",
        KILN_AUTH_REQUIRED="true", KILN_AUTH_TOKEN_SHA256_SECRET=TOKEN_SECRET, KILN_AUTH_REFRESH_SECONDS="15",
        KILN_SECRET_ENVIRONMENT=f" DB_PASSWORD={{{{secrets/fraud/db}}}} , API_KEY={PARAMETER} ",
    )

    assert settings == {
        "model_uri": URI, "model_digest": DIGEST, "endpoint": "fraud-scorer", "served_model": "champion",
        "model_name": "fraud-scorer", "model_version": "3", "host": "127.0.0.1", "port": 9000, "workers": 4,
        "queue_budget_seconds": 0.5, "request_timeout_seconds": 2.5, "body_timeout_seconds": 3.0,
        "max_batch_size": 8, "max_batch_delay_ms": 5, "drain_seconds": 7.0, "max_payload_bytes": 4096,
        "load_timeout_seconds": 60.0, "auth_token_sha256": (TOKEN_A,), "cache_dir": Path("/var/cache/kiln"),
        "metric_dimensions": (("Stack", "dev"), ("Endpoint", "fraud-scorer"), ("ServedModel", "champion")),
        "metric_period_seconds": 1.0,
        "load_balancer_idle_timeout_seconds": 602.0,
        "gpus": 4, "spread_across_gpus": True, "require_gpu": True,
        "capture_uri": "s3://kiln-artifacts/inference-tables/fraud-scorer/", "capture_sampling_fraction": 0.25,
        "capture_format": "jsonl", "capture_max_body_bytes": 1024, "capture_max_buffered_bytes": 2048,
        "capture_flush_seconds": 5.0, "capture_flush_records": 10,
        "auth_required": True, "auth_token_sha256_secret": TOKEN_SECRET, "auth_refresh_seconds": 15.0,
        "secret_environment": (("DB_PASSWORD", "{{secrets/fraud/db}}"), ("API_KEY", PARAMETER)),
    }


def test_a_secret_reference_that_is_not_one_names_the_variable_and_the_forms() -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(KILN_SECRET_ENVIRONMENT="DB_PASSWORD=hunter2")

    assert str(refused.value).startswith("KILN_SECRET_ENVIRONMENT: DB_PASSWORD: 'hunter2' is not a secret reference; "
                                         "write {{secrets/<scope>/<key>}}")


@pytest.mark.parametrize(("name", "field", "minimum"), INTEGERS)
def test_integer_at_its_minimum_is_accepted(name: str, field: str, minimum: int) -> None:
    assert parsed(**{name: str(minimum)})[field] == minimum


@pytest.mark.parametrize(("name", "field", "minimum"), INTEGERS)
def test_integer_above_its_minimum_is_accepted_with_surrounding_spaces(name: str, field: str, minimum: int) -> None:
    assert parsed(**{name: f" {minimum + 1} "})[field] == minimum + 1


@pytest.mark.parametrize(("name", "field", "minimum"), INTEGERS)
def test_integer_below_its_minimum_is_refused(name: str, field: str, minimum: int) -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(**{name: str(minimum - 1)})

    assert str(refused.value) == f"{name}={minimum - 1} must be at least {minimum}"


@pytest.mark.parametrize(("name", "field", "minimum"), INTEGERS)
@pytest.mark.parametrize("value", ["four", "2.5", "1e3"])
def test_integer_that_is_not_a_whole_number_is_refused(name: str, field: str, minimum: int, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(**{name: f" {value} "})

    assert str(refused.value) == f"{name}={value!r} is not an integer"


@pytest.mark.parametrize(("name", "field"), SECONDS)
@pytest.mark.parametrize(("value", "seconds"), [("0.001", 0.001), (" 2.5 ", 2.5), ("30", 30.0)])
def test_seconds_above_zero_are_accepted(name: str, field: str, value: str, seconds: float) -> None:
    assert parsed(**{name: value})[field] == seconds


@pytest.mark.parametrize(("name", "field"), SECONDS)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_seconds_of_zero_or_less_are_refused(name: str, field: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(**{name: value})

    assert str(refused.value) == f"{name}={value} must be more than 0 seconds"


@pytest.mark.parametrize(("name", "field"), SECONDS)
def test_seconds_that_are_not_a_number_are_refused(name: str, field: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(**{name: " 2s "})

    assert str(refused.value) == f"{name}='2s' is not a number of seconds"


@pytest.mark.parametrize("value", ["", "  "])
def test_model_uri_is_required_by_the_container(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        settings_from_env({"KILN_MODEL_URI": value})

    assert str(refused.value).startswith("KILN_MODEL_URI is not set")


def test_model_uri_is_optional_for_kiln_runtime_flags() -> None:
    assert settings_from_env({}, require_model=False).model_uri == ""


def test_model_uri_is_stripped() -> None:
    assert settings_from_env({"KILN_MODEL_URI": f"  {URI}\n"}).model_uri == URI


def test_without_a_mapping_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_MODEL_URI", URI)
    monkeypatch.setenv("KILN_WORKERS", "3")

    settings = settings_from_env()

    assert (settings.model_uri, settings.workers) == (URI, 3)


def test_model_digest_is_lowercased_and_stripped() -> None:
    assert parsed(KILN_MODEL_DIGEST=f" {DIGEST.upper()} ")["model_digest"] == DIGEST


@pytest.mark.parametrize("digest", [DIGEST[:63], DIGEST + "0", DIGEST[:63] + "g", "s3://bucket/models/" + DIGEST])
def test_model_digest_must_be_64_hex_characters(digest: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(KILN_MODEL_DIGEST=digest)

    assert str(refused.value) == f"KILN_MODEL_DIGEST={digest!r} is not a sha256 hex digest (64 hex characters)"


def test_token_hashes_are_comma_separated_trimmed_and_lowercased() -> None:
    assert parsed(KILN_AUTH_TOKEN_SHA256=f" {TOKEN_A.upper()} ,, {TOKEN_B},")["auth_token_sha256"] == (TOKEN_A, TOKEN_B)


def test_token_hashes_file_adds_one_per_line_after_the_variable_and_skips_comments(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# rotated 2026-05\n\n{TOKEN_B.upper()}  # ci # until June\n   \n#{TOKEN_A}\n")

    hashes = parsed(KILN_AUTH_TOKEN_SHA256=TOKEN_A, KILN_AUTH_TOKEN_SHA256_FILE=f" {path} ")["auth_token_sha256"]

    assert hashes == (TOKEN_A, TOKEN_B)


def test_token_hashes_file_alone_is_enough(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{TOKEN_A}\n{TOKEN_B}\n")

    assert parsed(KILN_AUTH_TOKEN_SHA256_FILE=str(path))["auth_token_sha256"] == (TOKEN_A, TOKEN_B)


def test_unreadable_token_hashes_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"

    with pytest.raises(SettingsError) as refused:
        parsed(KILN_AUTH_TOKEN_SHA256_FILE=str(missing))

    assert str(refused.value) == f"KILN_AUTH_TOKEN_SHA256_FILE={missing}: cannot read it (No such file or directory)"


@pytest.mark.parametrize("value", [
    "s3cret-token",  # a plain token instead of its hash
    TOKEN_A[:63],
    TOKEN_A + "0",
    TOKEN_A[:63] + "z",
])
def test_token_that_is_not_a_sha256_digest_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(KILN_AUTH_TOKEN_SHA256=f"{TOKEN_A},{value}")

    assert str(refused.value) == "KILN_AUTH_TOKEN_SHA256: 1 value(s) are not sha256 hex digests (64 hex characters)"


def test_bad_token_hashes_from_the_file_name_both_sources_and_count_every_one(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("plain-token\nanother-token\n")

    with pytest.raises(SettingsError) as refused:
        parsed(KILN_AUTH_TOKEN_SHA256="not-a-hash", KILN_AUTH_TOKEN_SHA256_FILE=str(path))

    assert str(refused.value) == ("KILN_AUTH_TOKEN_SHA256 / KILN_AUTH_TOKEN_SHA256_FILE: 3 value(s) are not "
                                  "sha256 hex digests (64 hex characters)")


def test_metric_dimensions_that_miss_one_name_what_to_write() -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(KILN_METRIC_DIMENSIONS=" Stack=dev,Endpoint=fraud-scorer ")

    assert str(refused.value) == (
        "KILN_METRIC_DIMENSIONS='Stack=dev,Endpoint=fraud-scorer': needs exactly the dimensions Stack, Endpoint, "
        "ServedModel; got Stack, Endpoint (e.g. Stack=dev,Endpoint=fraud-scorer,ServedModel=champion)")


@pytest.mark.parametrize(("timeout", "budget", "admission_budget"),
                         [(597, None, 1.0), (10, None, 1.0), (2, None, 1.0), (1.5, None, 0.75), (10, 0.25, 0.25),
                          (597, 30, 30)])
def test_admission_budget_defaults_to_1_s_or_half_a_shorter_request_timeout(timeout: float, budget: float | None,
                                                               admission_budget: float) -> None:
    settings = RuntimeSettings(URI, request_timeout_seconds=timeout, queue_budget_seconds=budget)

    assert settings.admission_budget_seconds == admission_budget


def test_keep_alive_outlasts_the_alb_idle_timeout_of_request_timeout_plus_5() -> None:
    # 597 s + 15 s = 612 s, above the ALB's 597 + 5 = 602 s idle timeout
    assert RuntimeSettings(URI).keep_alive_seconds == 612
    assert RuntimeSettings(URI, request_timeout_seconds=2).keep_alive_seconds == 17


def test_keep_alive_outlasts_the_shared_albs_idle_timeout_not_only_this_endpoints_timeout() -> None:
    """One ALB serves every endpoint, idle for the longest timeout + 5 s; a 60 s endpoint's
    runtime must keep connections longer than that, or the ALB reuses closed ones (502)."""
    settings = RuntimeSettings(URI, request_timeout_seconds=60, load_balancer_idle_timeout_seconds=602)

    assert settings.keep_alive_seconds == 612


def test_flags_override_the_environment_and_none_means_not_given() -> None:
    from_env = settings_from_env({"KILN_MODEL_URI": URI, "KILN_WORKERS": "4", "KILN_PORT": "9000"})

    merged = from_env.with_overrides(workers=2, port=None, model_uri="/models/local")

    assert (merged.workers, merged.port, merged.model_uri) == (2, 9000, "/models/local")


@pytest.mark.parametrize(("name", "field"), FLAGS)
@pytest.mark.parametrize(("value", "flag"), [("true", True), (" True ", True), ("1", True), ("yes", True),
                                             ("false", False), ("0", False), ("NO", False)])
def test_flags_read_true_or_false(name: str, field: str, value: str, flag: bool) -> None:
    assert parsed(**{name: value})[field] is flag


@pytest.mark.parametrize(("name", "field"), FLAGS)
def test_a_flag_that_is_neither_true_nor_false_is_refused(name: str, field: str) -> None:
    with pytest.raises(SettingsError) as refused:
        parsed(**{name: "on-gpu"})

    assert str(refused.value) == f"{name}='on-gpu' is not true or false"


# ------------------------------------------------------------------ the writer: as_env


def test_settings_written_as_env_read_back_the_same() -> None:
    """The user data and `kiln serve` write what the runtime reads: every field survives."""
    settings = RuntimeSettings(
        model_uri=URI, model_digest=DIGEST, endpoint="fraud-scorer", served_model="champion",
        model_name="fraud-scorer", model_version="3", host="127.0.0.1", port=9000, workers=4, queue_budget_seconds=0.5,
        request_timeout_seconds=2.5, body_timeout_seconds=3, max_batch_size=8, max_batch_delay_ms=5, drain_seconds=7, max_payload_bytes=4096, load_timeout_seconds=60.0,
        auth_token_sha256=(TOKEN_A, TOKEN_B), cache_dir=Path("/var/cache/kiln"),
        metric_dimensions=(("Stack", "dev"), ("Endpoint", "fraud-scorer"), ("ServedModel", "champion")),
        metric_period_seconds=1.0, load_balancer_idle_timeout_seconds=602, gpus=8, spread_across_gpus=True,
        require_gpu=True, auth_required=True, auth_token_sha256_secret=TOKEN_SECRET, auth_refresh_seconds=15,
        secret_environment=(("DB_PASSWORD", "{{secrets/fraud/db}}"), ("API_KEY", PARAMETER)),
    )

    assert settings_from_env(settings.as_env()) == settings


def test_every_field_has_its_variable_in_the_env() -> None:
    settings = RuntimeSettings(
        model_uri=URI, model_digest=DIGEST, endpoint="e", served_model="s", model_name="m", model_version="1",
        queue_budget_seconds=3, auth_token_sha256=(TOKEN_A,), cache_dir=Path("/c"),
        metric_dimensions=(("Stack", "dev"), ("Endpoint", "e"), ("ServedModel", "s")),
        load_balancer_idle_timeout_seconds=65, capture_uri="s3://b/inference-tables/e/",
        auth_token_sha256_secret=TOKEN_SECRET, secret_environment=(("DB_PASSWORD", "{{secrets/fraud/db}}"),),
    )

    assert sorted(settings.as_env()) == sorted(f"KILN_{field.name.upper()}" for field in dataclasses.fields(settings))


def test_unset_fields_are_left_out_so_the_runtime_applies_its_defaults() -> None:
    env = RuntimeSettings(model_uri=URI).as_env()
    blank = RuntimeSettings(model_uri="", endpoint="", model_name="").as_env()

    assert not {"KILN_MODEL_URI", "KILN_ENDPOINT", "KILN_MODEL_NAME"} & set(blank)

    assert "KILN_MODEL_DIGEST" not in env and "KILN_QUEUE_BUDGET_SECONDS" not in env and "KILN_METRIC_DIMENSIONS" not in env
    assert env["KILN_REQUEST_TIMEOUT_SECONDS"] == "597" and env["KILN_LOAD_TIMEOUT_SECONDS"] == "1800"
    assert dataclasses.asdict(settings_from_env(env)) == DEFAULTS


def test_a_name_that_is_no_setting_has_no_variable() -> None:
    assert variable("load_balancer_idle_timeout_seconds") == "KILN_LOAD_BALANCER_IDLE_TIMEOUT_SECONDS"
    with pytest.raises(KeyError, match="no field 'MODEL_URI'"):
        variable("MODEL_URI")


# ------------------------------------------------------------------ what log lines name


@pytest.mark.parametrize(
    ("identity", "label"),
    [
        ({"endpoint": "fraud-scorer", "served_model": "champion", "model_name": "fraud-scorer", "model_version": "3"},
         "fraud-scorer/champion (fraud-scorer v3)"),
        ({"endpoint": "fraud-scorer", "served_model": "champion"}, "fraud-scorer/champion"),
        ({"model_name": "fraud-scorer", "model_version": "3"}, "fraud-scorer v3"),
        ({}, URI),
    ],
)
def test_log_lines_name_the_served_model_in_the_stacks_and_the_registrys_words(identity: dict, label: str) -> None:
    assert RuntimeSettings(model_uri=URI, model_digest=DIGEST, **identity).served_label == label

"""The KILN_* contract: typed runtime settings and the environment variables that carry them.

One variable per field, named KILN_<FIELD>. The Pulumi program (the instance user data)
and `kiln serve` build RuntimeSettings and write them with `as_env()`; the runtime reads
them back with `settings_from_env()`; `kiln runtime` sets the same fields from flags. No
other place spells a variable name, so writer and reader cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from runtime.auth import TokenHashError, parse_token_hashes
from runtime.contract import (
    DATABRICKS_REQUEST_TIMEOUT_SECONDS,
    HIGH_RESOLUTION_PERIOD_SECONDS,
    RUNTIME_PORT,
    format_metric_dimensions,
    parse_metric_dimensions,
)
from runtime.secrets import SecretError, parse_reference

# Databricks' payload limit for custom models is 16 MB per request.
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
DEFAULT_DRAIN_SECONDS = 30
# Without a budget of its own, a request may expect to wait for a worker up to 1 s, or half
# the request timeout when that is shorter (the other half is left for its own prediction).
# Why not more: under sustained overload the queue fills up to the budget, so every admitted
# request then waits the whole budget while goodput stays the workers' capacity; a budget
# only buys absorbing bursts, and 1 s absorbs a burst of a second of the instance's capacity.
# Beyond it a 429 with Retry-After lets the client back off or go elsewhere, where a request
# queued for half of a 597 s timeout helps nobody (docs/runtime.md, "Admission by latency budget").
DEFAULT_ADMISSION_BUDGET_SECONDS = 1.0
DEFAULT_ADMISSION_BUDGET_FRACTION = 0.5
# A client has this long to send its whole body (413 bounds its size, this its pace): a slow
# sender gets 408 instead of holding a connection and a request's memory for the request timeout.
DEFAULT_BODY_TIMEOUT_SECONDS = 30
# Inference tables (runtime/capture.py): bodies up to 64 KiB are stored, larger ones as null
# (so a row's memory and the table's size stay predictable); at most 64 MiB of rows waits
# in memory; a batch goes every 30 s, or once 1,000 rows wait.
DEFAULT_CAPTURE_MAX_BODY_BYTES = 64 * 1024
DEFAULT_CAPTURE_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
DEFAULT_CAPTURE_FLUSH_SECONDS = 30
DEFAULT_CAPTURE_FLUSH_RECORDS = 1000
CAPTURE_FORMATS = ("parquet", "jsonl")
# How soon a token added to or revoked from the token-hash secret takes effect on every instance.
DEFAULT_AUTH_REFRESH_SECONDS = 60


class SettingsError(Exception):
    """A KILN_* variable that cannot be used; names the variable and what would be valid."""



def admission_budget_seconds(queue_budget_seconds: float | None, request_timeout_seconds: float) -> float:
    """The served model's queueBudgetSeconds, else 1 s or half a shorter request timeout: one
    rule for the runtime (admission) and the plan (its p99 latency alarm)."""
    if queue_budget_seconds is not None:
        return queue_budget_seconds
    return min(DEFAULT_ADMISSION_BUDGET_SECONDS, request_timeout_seconds * DEFAULT_ADMISSION_BUDGET_FRACTION)


@dataclass(frozen=True)
class RuntimeSettings:
    model_uri: str
    model_digest: str | None = None
    endpoint: str | None = None
    served_model: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    host: str = "0.0.0.0"
    port: int = RUNTIME_PORT
    workers: int = 1
    # The longest expected wait for a worker a request is admitted with (None: a fraction of the
    # request timeout); beyond it, 429 at once. See runtime/admission.py.
    queue_budget_seconds: float | None = None
    request_timeout_seconds: float = DATABRICKS_REQUEST_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    # Adaptive batching (runtime/workers.py): a free worker takes up to this many waiting
    # requests and predicts those that merge in one call. 1 is off, the default: merging
    # assumes a row's prediction depends on that row only, which the model's author must know.
    max_batch_size: int = 1
    # How long a free worker waits for more requests before a batch that is not full goes;
    # 0 takes only what is already waiting, so light load is never delayed.
    max_batch_delay_ms: int = 0
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    load_timeout_seconds: float = 1800
    auth_token_sha256: tuple[str, ...] = ()
    # Auth on even while no token hash is configured yet (then only /ping and /health answer
    # without 401): the plan sets it for every endpoint whose stack entry turns auth on.
    auth_required: bool = False
    # A secret reference (runtime/secrets.py) whose value holds token hashes, one per line;
    # read at start and every auth_refresh_seconds, so tokens rotate without a rollout.
    auth_token_sha256_secret: str | None = None
    auth_refresh_seconds: float = DEFAULT_AUTH_REFRESH_SECONDS
    # Environment variables for the model whose values are secret references: (name,
    # reference) pairs resolved at start with the instance role, never written in plain text.
    secret_environment: tuple[tuple[str, str], ...] = ()
    cache_dir: Path | None = None
    # Set (by the plan, when highResolutionMetric is on): publish the in-flight metric.
    metric_dimensions: tuple[tuple[str, str], ...] = ()
    # 10 s in production (the contract); shorter only for tests and to watch it by hand.
    metric_period_seconds: float = HIGH_RESOLUTION_PERIOD_SECONDS
    # The idle timeout of the load balancer in front (the plan sets it): one ALB is shared by
    # every endpoint of a stack, so it can be far longer than this endpoint's request timeout.
    load_balancer_idle_timeout_seconds: float | None = None
    # GPUs on this host to give the workers (the plan sets it from the instance type): with N,
    # worker i sees only GPU i mod N (CUDA_VISIBLE_DEVICES), so N workers use N GPUs instead
    # of all loading onto device 0. 0 leaves CUDA_VISIBLE_DEVICES as the process has it.
    gpus: int = 0
    # One worker spreads the model across every GPU (MLflow's Transformers device map)
    # instead of one worker per GPU: for a model larger than one device's memory.
    spread_across_gpus: bool = False
    # On a GPU compute type (the instance's user data sets it, `kiln serve` does not): a worker
    # without a usable GPU refuses to start, so /ping never turns 200 on the CPU by accident.
    require_gpu: bool = False
    # Inference table (set by the plan when the endpoint's autoCaptureConfig is enabled):
    # s3://<artifact bucket>/<capture prefix>/, the share of requests captured, and the format.
    capture_uri: str | None = None
    capture_sampling_fraction: float = 1.0
    capture_format: str = "parquet"
    capture_max_body_bytes: int = DEFAULT_CAPTURE_MAX_BODY_BYTES
    capture_max_buffered_bytes: int = DEFAULT_CAPTURE_MAX_BUFFERED_BYTES
    capture_flush_seconds: float = DEFAULT_CAPTURE_FLUSH_SECONDS
    capture_flush_records: int = DEFAULT_CAPTURE_FLUSH_RECORDS

    @property
    def served_label(self) -> str:
        """What this runtime serves, in the words of the stack and the registry, for its log lines:
        `fraud-scorer/champion (fraud-scorer v1)` on an instance or under `kiln serve`; the
        registered name and version, or the model URI, when run on its own."""
        model = f"{self.model_name} v{self.model_version}" if self.model_name and self.model_version else self.model_name
        if self.endpoint and self.served_model:
            served = f"{self.endpoint}/{self.served_model}"
            return f"{served} ({model})" if model else served
        return model or self.model_uri

    @property
    def admission_budget_seconds(self) -> float:
        """How long a request may expect to wait for a worker and still be admitted."""
        return admission_budget_seconds(self.queue_budget_seconds, self.request_timeout_seconds)

    @property
    def keep_alive_seconds(self) -> float:
        """Longer than the load balancer's idle timeout, as AWS recommends for targets, so the
        ALB never reuses a connection this side has just closed (a 502). Without one named
        (locally), as if it were the request timeout + 5 s that a one-endpoint stack gets."""
        idle = self.load_balancer_idle_timeout_seconds or self.request_timeout_seconds + 5
        return idle + 10

    def with_overrides(self, **values: object) -> RuntimeSettings:
        """Flags from `kiln runtime` on top of the env; None means 'not given'."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_env(self) -> dict[str, str]:
        """The KILN_* variables that give these settings back: settings_from_env(as_env()) == self.
        Unset fields (None, empty) are left out, so the runtime applies its own default."""
        env = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and value not in ("", ()):
                env[variable(field.name)] = _env_value(field.name, value)
        return env


FIELDS = frozenset(field.name for field in fields(RuntimeSettings))


def variable(field: str) -> str:
    """The environment variable of a RuntimeSettings field; a name that is no field is a bug."""
    if field not in FIELDS:
        raise KeyError(f"RuntimeSettings has no field {field!r}")
    return f"KILN_{field.upper()}"


def _env_value(field: str, value: object) -> str:
    if field == "metric_dimensions":
        return format_metric_dimensions(dict(value))  # type: ignore[call-overload]
    if field == "secret_environment":
        return ",".join(f"{name}={reference}" for name, reference in value)  # type: ignore[attr-defined]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _int(env: Mapping[str, str], field: str, default: int | None, minimum: int) -> int | None:
    name = variable(field)
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _seconds(env: Mapping[str, str], field: str, default: float | None) -> float | None:
    name = variable(field)
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw} must be more than 0 seconds")
    return value


FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _flag(env: Mapping[str, str], field: str) -> bool:
    name = variable(field)
    raw = env.get(name, "").strip()
    if not raw:
        return False
    try:
        return FLAG_VALUES[raw.lower()]
    except KeyError:
        raise SettingsError(f"{name}={raw!r} is not true or false") from None


def _capture_uri(env: Mapping[str, str]) -> str | None:
    name = variable("capture_uri")
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith("s3://") or not raw.removeprefix("s3://").split("/", 1)[0] or not raw.endswith("/"):
        raise SettingsError(f"{name}={raw!r} is not an S3 prefix such as s3://bucket/inference-tables/fraud-scorer/")
    return raw


def _fraction(env: Mapping[str, str], field: str) -> float:
    name = variable(field)
    raw = env.get(name, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not 0 < value <= 1:
        raise SettingsError(f"{name}={raw} must be more than 0 and at most 1 (1 captures every request)")
    return value


def _choice(env: Mapping[str, str], field: str, choices: tuple[str, ...]) -> str:
    name = variable(field)
    raw = env.get(name, "").strip() or choices[0]
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def _token_hashes(env: Mapping[str, str]) -> tuple[str, ...]:
    """Bearer-token sha256 hashes, from KILN_AUTH_TOKEN_SHA256 (comma-separated) and/or a file
    named by KILN_AUTH_TOKEN_SHA256_FILE (one per line, '#' comments). Only hashes are ever
    configured, so an env dump or a leaked user-data never reveals a usable token."""
    name = variable("auth_token_sha256")
    values = env.get(name, "").split(",")
    source = name
    if path := env.get(f"{name}_FILE", "").strip():
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as error:
            raise SettingsError(f"{name}_FILE={path}: cannot read it ({error.strerror})") from None
        values += lines
        source += f" / {name}_FILE"
    try:
        return parse_token_hashes(values, source)
    except TokenHashError as error:
        raise SettingsError(str(error)) from None


def _secret_environment(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    name = variable("secret_environment")
    pairs = []
    for item in filter(None, (part.strip() for part in env.get(name, "").split(","))):
        key, _, reference = item.partition("=")
        try:
            parse_reference(reference)
        except SecretError as error:
            raise SettingsError(f"{name}: {key}: {error}") from None
        pairs.append((key.strip(), reference.strip()))
    return tuple(pairs)


def _secret_reference(env: Mapping[str, str], field: str) -> str | None:
    name = variable(field)
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        parse_reference(raw)
    except SecretError as error:
        raise SettingsError(f"{name}: {error}") from None
    return raw


def _metric_dimensions(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    name = variable("metric_dimensions")
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    try:
        return parse_metric_dimensions(raw)
    except ValueError as error:
        raise SettingsError(f"{name}={raw!r}: {error} (e.g. Stack=dev,Endpoint=fraud-scorer,"
                            "ServedModel=champion)") from None


def settings_from_env(env: Mapping[str, str] | None = None, require_model: bool = True) -> RuntimeSettings:
    """Parse the KILN_* variables; raises SettingsError naming the first bad one."""
    env = os.environ if env is None else env

    def text(field: str) -> str | None:
        return env.get(variable(field), "").strip() or None

    model_uri = text("model_uri") or ""
    if require_model and not model_uri:
        raise SettingsError(f"{variable('model_uri')} is not set (s3://bucket/models/<digest>/ or a model directory)")
    digest = (text("model_digest") or "").lower() or None
    if digest and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise SettingsError(f"{variable('model_digest')}={digest!r} is not a sha256 hex digest (64 hex characters)")
    cache = text("cache_dir")
    return RuntimeSettings(
        model_uri=model_uri,
        model_digest=digest,
        endpoint=text("endpoint"),
        served_model=text("served_model"),
        model_name=text("model_name"),
        model_version=text("model_version"),
        host=text("host") or "0.0.0.0",
        port=_int(env, "port", RUNTIME_PORT, 0),
        workers=_int(env, "workers", 1, 1),
        queue_budget_seconds=_seconds(env, "queue_budget_seconds", None),
        request_timeout_seconds=_seconds(env, "request_timeout_seconds", DATABRICKS_REQUEST_TIMEOUT_SECONDS),
        body_timeout_seconds=_seconds(env, "body_timeout_seconds", DEFAULT_BODY_TIMEOUT_SECONDS),
        max_batch_size=_int(env, "max_batch_size", 1, 1),
        max_batch_delay_ms=_int(env, "max_batch_delay_ms", 0, 0),
        drain_seconds=_seconds(env, "drain_seconds", DEFAULT_DRAIN_SECONDS),
        max_payload_bytes=_int(env, "max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES, 1),
        load_timeout_seconds=_seconds(env, "load_timeout_seconds", 1800),
        auth_token_sha256=_token_hashes(env),
        auth_required=_flag(env, "auth_required"),
        auth_token_sha256_secret=_secret_reference(env, "auth_token_sha256_secret"),
        auth_refresh_seconds=_seconds(env, "auth_refresh_seconds", DEFAULT_AUTH_REFRESH_SECONDS),
        secret_environment=_secret_environment(env),
        cache_dir=Path(cache) if cache else None,
        metric_dimensions=_metric_dimensions(env),
        metric_period_seconds=_seconds(env, "metric_period_seconds", HIGH_RESOLUTION_PERIOD_SECONDS),
        load_balancer_idle_timeout_seconds=_seconds(env, "load_balancer_idle_timeout_seconds", None),
        gpus=_int(env, "gpus", 0, 0),
        spread_across_gpus=_flag(env, "spread_across_gpus"),
        require_gpu=_flag(env, "require_gpu"),
        capture_uri=_capture_uri(env),
        capture_sampling_fraction=_fraction(env, "capture_sampling_fraction"),
        capture_format=_choice(env, "capture_format", CAPTURE_FORMATS),
        capture_max_body_bytes=_int(env, "capture_max_body_bytes", DEFAULT_CAPTURE_MAX_BODY_BYTES, 0),
        capture_max_buffered_bytes=_int(env, "capture_max_buffered_bytes", DEFAULT_CAPTURE_MAX_BUFFERED_BYTES, 1),
        capture_flush_seconds=_seconds(env, "capture_flush_seconds", DEFAULT_CAPTURE_FLUSH_SECONDS),
        capture_flush_records=_int(env, "capture_flush_records", DEFAULT_CAPTURE_FLUSH_RECORDS, 1),
    )

"""KILN_* environment variables → typed runtime settings.

The instance user-data (infra/templates/user_data.sh.j2) writes these into the container's
env file; `kiln runtime` sets the same fields from flags. One parser, so the container and
the local command can never disagree about a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from models.runtime.contract import (
    DATABRICKS_REQUEST_TIMEOUT_SECONDS,
    HIGH_RESOLUTION_PERIOD_SECONDS,
    METRIC_DIMENSIONS_ENV,
    RUNTIME_PORT,
    parse_metric_dimensions,
)

# Databricks' payload limit for custom models is 16 MB per request.
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
DEFAULT_DRAIN_SECONDS = 30


class SettingsError(Exception):
    """A KILN_* variable that cannot be used; names the variable and what would be valid."""


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
    queue_size: int | None = None
    request_timeout_seconds: float = DATABRICKS_REQUEST_TIMEOUT_SECONDS
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    load_timeout_seconds: float = 1800
    auth_token_sha256: tuple[str, ...] = ()
    cache_dir: Path | None = None
    tracking_uri: str | None = None
    # Set (by the plan, when highResolutionMetric is on): publish the in-flight metric.
    metric_dimensions: tuple[tuple[str, str], ...] = ()
    # 10 s in production (the contract); shorter only for tests and to watch it by hand.
    metric_period_seconds: float = HIGH_RESOLUTION_PERIOD_SECONDS

    @property
    def queue_limit(self) -> int:
        """Requests allowed to wait for a worker; small, so overload is refused, not queued."""
        return self.workers if self.queue_size is None else self.queue_size

    @property
    def keep_alive_seconds(self) -> float:
        """Longer than the ALB idle timeout (request timeout + 5 s), as AWS recommends for targets,
        so the ALB never reuses a connection this side has just closed (a 502)."""
        return self.request_timeout_seconds + 15

    def with_overrides(self, **values: object) -> RuntimeSettings:
        """Flags from `kiln runtime` on top of the env; None means 'not given'."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def _int(env: Mapping[str, str], name: str, default: int | None, minimum: int) -> int | None:
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


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
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


def _token_hashes(env: Mapping[str, str]) -> tuple[str, ...]:
    """Bearer-token sha256 hashes, from KILN_AUTH_TOKEN_SHA256 (comma-separated) and/or a file
    named by KILN_AUTH_TOKEN_SHA256_FILE (one per line, '#' comments). Only hashes are ever
    configured, so an env dump or a leaked user-data never reveals a usable token."""
    values = [v for v in env.get("KILN_AUTH_TOKEN_SHA256", "").split(",")]
    source = "KILN_AUTH_TOKEN_SHA256"
    if path := env.get("KILN_AUTH_TOKEN_SHA256_FILE", "").strip():
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as error:
            raise SettingsError(f"KILN_AUTH_TOKEN_SHA256_FILE={path}: cannot read it ({error.strerror})") from None
        values += [line.split("#", 1)[0] for line in lines]
        source += " / KILN_AUTH_TOKEN_SHA256_FILE"
    hashes = tuple(v.strip().lower() for v in values if v.strip())
    bad = [h for h in hashes if len(h) != 64 or any(c not in "0123456789abcdef" for c in h)]
    if bad:
        raise SettingsError(f"{source}: {len(bad)} value(s) are not sha256 hex digests (64 hex characters)")
    return hashes


def _metric_dimensions(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    raw = env.get(METRIC_DIMENSIONS_ENV, "").strip()
    if not raw:
        return ()
    try:
        return parse_metric_dimensions(raw)
    except ValueError as error:
        raise SettingsError(f"{METRIC_DIMENSIONS_ENV}={raw!r}: {error} (e.g. Stack=dev,Endpoint=fraud-scorer,"
                            "ServedModel=champion)") from None


def settings_from_env(env: Mapping[str, str] | None = None, require_model: bool = True) -> RuntimeSettings:
    """Parse KILN_* variables; raises SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    model_uri = env.get("KILN_MODEL_URI", "").strip()
    if require_model and not model_uri:
        raise SettingsError("KILN_MODEL_URI is not set (s3://bucket/models/<digest>/, models:/name/version, a path, …)")
    digest = env.get("KILN_MODEL_DIGEST", "").strip().lower() or None
    if digest and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise SettingsError(f"KILN_MODEL_DIGEST={digest!r} is not a sha256 hex digest (64 hex characters)")
    cache = env.get("KILN_CACHE_DIR", "").strip()
    return RuntimeSettings(
        model_uri=model_uri,
        model_digest=digest,
        endpoint=env.get("KILN_ENDPOINT") or None,
        served_model=env.get("KILN_SERVED_MODEL") or None,
        model_name=env.get("KILN_MODEL_NAME") or None,
        model_version=env.get("KILN_MODEL_VERSION") or None,
        host=env.get("KILN_HOST") or "0.0.0.0",
        port=_int(env, "KILN_PORT", RUNTIME_PORT, 0),
        workers=_int(env, "KILN_WORKERS", 1, 1),
        queue_size=_int(env, "KILN_QUEUE_SIZE", None, 0),
        request_timeout_seconds=_seconds(env, "KILN_REQUEST_TIMEOUT_SECONDS", DATABRICKS_REQUEST_TIMEOUT_SECONDS),
        drain_seconds=_seconds(env, "KILN_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS),
        max_payload_bytes=_int(env, "KILN_MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES, 1),
        load_timeout_seconds=_seconds(env, "KILN_LOAD_TIMEOUT_SECONDS", 1800),
        auth_token_sha256=_token_hashes(env),
        cache_dir=Path(cache) if cache else None,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
        metric_dimensions=_metric_dimensions(env),
        metric_period_seconds=_seconds(env, "KILN_METRIC_PERIOD_SECONDS", HIGH_RESOLUTION_PERIOD_SECONDS),
    )

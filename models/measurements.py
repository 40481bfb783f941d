"""What the reload check measured about a model, and where Kiln keeps it.

Why: capacity planned from Databricks' nominal memory per concurrency turns a toy model
into instances sized for an 8 GiB worker. The reload check already loads the model in the
environment its image will have and predicts its input example, so it measures what the
planner needs on the way: load time, a worker's peak resident memory, and predict latency
on the example and on a batch. They are recorded per model digest and image tag, the pair
that fixes what was measured, so `kiln plan` can size from them (`sizing: measured`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import artifacts


@dataclass(frozen=True)
class Latency:
    """Nearest-rank percentiles of timed predictions of one input of `rows` rows."""

    rows: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @classmethod
    def from_probe(cls, data: dict[str, Any] | None) -> Latency | None:
        return None if data is None else cls(int(data["rows"]), int(data["runs"]), float(data["p50_ms"]),
                                              float(data["p90_ms"]), float(data["p99_ms"]))

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "runs": self.runs, "p50Ms": self.p50_ms, "p90Ms": self.p90_ms, "p99Ms": self.p99_ms}


@dataclass(frozen=True)
class Measurements:
    """One reload check's measurements; `cpus` of the machine that took them, since latency
    on a laptop is not latency on a c7i."""

    load_seconds: float
    # Interpreter + MLflow before the model loaded, and the whole process once it answered.
    baseline_rss_mib: float
    peak_rss_mib: float
    example: Latency | None
    batch: Latency | None
    cpus: int

    @property
    def worker_gib(self) -> float:
        """A worker's measured peak resident memory, in GiB."""
        return self.peak_rss_mib / 1024

    @classmethod
    def from_probe(cls, data: dict[str, Any]) -> Measurements:
        """The probe's `measurements` object (snake_case, see reload_probe.measure)."""
        return cls(
            load_seconds=float(data["load_seconds"]),
            baseline_rss_mib=float(data["baseline_rss_mib"]),
            peak_rss_mib=float(data["peak_rss_mib"]),
            example=Latency.from_probe(data.get("example")),
            batch=Latency.from_probe(data.get("batch")),
            cpus=int(data["cpus"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "loadSeconds": self.load_seconds,
            "baselineRssMiB": self.baseline_rss_mib,
            "peakRssMiB": self.peak_rss_mib,
            "example": self.example.as_dict() if self.example else None,
            "batch": self.batch.as_dict() if self.batch else None,
            "cpus": self.cpus,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurements:
        """Read back what as_dict wrote (the cache file)."""
        def latency(value: dict[str, Any] | None) -> Latency | None:
            return None if value is None else Latency(value["rows"], value["runs"], value["p50Ms"], value["p90Ms"],
                                                      value["p99Ms"])

        return cls(data["loadSeconds"], data["baselineRssMiB"], data["peakRssMiB"], latency(data["example"]),
                   latency(data["batch"]), data["cpus"])


def measurements_path(artifact_digest: str, image_tag: str) -> Path:
    """The cache file for one model (by content digest) in one environment (by image tag)."""
    return artifacts.CACHE_DIR / "measurements" / f"{artifact_digest}-{image_tag}.json"


def record_measurements(artifact_digest: str, image_tag: str, model_uri: str, measured: Measurements) -> Path:
    path = measurements_path(artifact_digest, image_tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "artifactDigest": artifact_digest, "imageTag": image_tag, "modelUri": model_uri,
        "measuredAt": datetime.now(UTC).isoformat(timespec="seconds"), **measured.as_dict(),
    }, indent=2))
    return path


def recorded_measurements(artifact_digest: str, image_tag: str) -> Measurements | None:
    """What a reload check of this model in this environment measured, if one ran here."""
    path = measurements_path(artifact_digest, image_tag)
    if not path.is_file():
        return None
    # Marked used, as a reused virtualenv is: `kiln cache prune` keeps what a plan still sizes from.
    path.touch()
    return Measurements.from_dict(json.loads(path.read_text()))


def installed_size_path(image_tag: str) -> Path:
    """The cache file for one environment's measured Python layer (by image tag: the same
    requirements, Python and runtime install the same wheels)."""
    return artifacts.CACHE_DIR / "measurements" / f"{image_tag}.json"


def record_installed_size(image_tag: str, installed_bytes: int) -> Path:
    """What the reload check's virtualenv for this environment occupies installed, so that
    `kiln plan`, `kiln check` and `pulumi up`, which run no reload check, size the image from
    it instead of the package table."""
    path = installed_size_path(image_tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"imageTag": image_tag, "installedBytes": installed_bytes,
                                "measuredAt": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2))
    return path


def recorded_installed_size(image_tag: str) -> int | None:
    """The installed size a reload check here measured for this environment, if one ran."""
    path = installed_size_path(image_tag)
    if not path.is_file():
        return None
    path.touch()  # marked used, as recorded_measurements does
    return int(json.loads(path.read_text())["installedBytes"])

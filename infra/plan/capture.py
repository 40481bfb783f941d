"""Where an endpoint's inference table lives: the Glue database and table, and the S3 prefix
its runtimes write under (the artifact bucket's `inference-tables/<endpoint>/`).

One prefix per endpoint, shared by its served models: Databricks' inference table is one
table per endpoint, each row naming its served model in request_metadata. The prefix is
what the instance role may write, and nothing else of the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.plan.config import AutoCaptureConfig

# Under the artifact bucket, beside models/ and build contexts.
CAPTURE_ROOT = "inference-tables"
# Databricks names the table of an endpoint `<table_name_prefix>_payload`.
TABLE_SUFFIX = "_payload"


@dataclass(frozen=True)
class CapturePlan:
    endpoint: str
    database: str
    table: str
    # The S3 key prefix, ending in '/': rows land under `<prefix>date=YYYY-MM-DD/`.
    prefix: str
    format: str
    sampling_fraction: float
    max_body_bytes: int

    @property
    def qualified_table(self) -> str:
        return f"{self.database}.{self.table}"


def stack_database(stack: str) -> str:
    """The stack's Glue database: Athena names take '_', not '-'."""
    return f"kiln_{stack.replace('-', '_')}"


def plan_capture(stack: str, endpoint: str, config: AutoCaptureConfig | None) -> CapturePlan | None:
    """The endpoint's inference table, or None when it has none (or it is disabled)."""
    if config is None or not config.enabled:
        return None
    return CapturePlan(
        endpoint=endpoint,
        database=config.schema_name or stack_database(stack),
        table=(config.table_name_prefix or endpoint.replace("-", "_")) + TABLE_SUFFIX,
        prefix=f"{CAPTURE_ROOT}/{endpoint}/",
        format=config.format,
        sampling_fraction=config.sampling_percentage / 100,
        max_body_bytes=config.max_body_bytes,
    )


# How Glue reads each format (the Hive input/output formats and SerDe Athena documents for
# Parquet and for JSON with the OpenX SerDe:
# docs.aws.amazon.com/athena/latest/ug/parquet-serde.html, .../openx-json-serde.html).
STORAGE_FORMATS: dict[str, dict[str, str]] = {
    "parquet": {
        "classification": "parquet",
        "input_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "output_format": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "serialization_library": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    },
    "jsonl": {
        "classification": "json",
        "input_format": "org.apache.hadoop.mapred.TextInputFormat",
        "output_format": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        "serialization_library": "org.openx.data.jsonserde.JsonSerDe",
    },
}
# Partition projection: Athena computes the date partitions from the table's parameters
# instead of reading them from the catalog, so no crawler or MSCK REPAIR is ever needed
# (docs.aws.amazon.com/athena/latest/ug/partition-projection-setting-up.html). The range
# looks back five years (the table then reads as far back as the rows are kept) and a day
# ahead, for an instance whose clock is past midnight UTC before Athena's is.
PROJECTION_RANGE = "NOW-5YEARS,NOW+1DAYS"


def table_location(capture: CapturePlan, bucket: str) -> str:
    return f"s3://{bucket}/{capture.prefix}"


def table_parameters(capture: CapturePlan, bucket: str, partition: str) -> dict[str, str]:
    """The Glue table's parameters: its format, and the projection of its `date=` partitions."""
    return {
        "classification": STORAGE_FORMATS[capture.format]["classification"],
        "projection.enabled": "true",
        f"projection.{partition}.type": "date",
        f"projection.{partition}.format": "yyyy-MM-dd",
        f"projection.{partition}.range": PROJECTION_RANGE,
        f"projection.{partition}.interval": "1",
        f"projection.{partition}.interval.unit": "DAYS",
        "storage.location.template": f"{table_location(capture, bucket)}{partition}=${{{partition}}}/",
    }

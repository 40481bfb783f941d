"""The Glue tables over the inference-table rows the runtimes write, so Athena queries them.

One Glue database per schema name (the stack's own by default) and one external table per
capturing endpoint, over `s3://<artifact bucket>/inference-tables/<endpoint>/`. The columns
are the runtime's (runtime/capture.py COLUMNS), so what is written and what is declared are
one list; `date` is the Hive partition of the object keys, projected (infra/plan/capture.py).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.plan.capture import STORAGE_FORMATS, CapturePlan, table_location, table_parameters
from runtime.capture import COLUMNS, PARTITION_COLUMN


class InferenceTables(pulumi.ComponentResource):
    """The stack's inference tables: a Glue database and a table per capturing endpoint."""

    def __init__(self, name: str, captures: list[CapturePlan], bucket: pulumi.Output[str], tags: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kiln:operate:InferenceTables", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.databases = {
            database: aws.glue.CatalogDatabase(
                f"{name}-{database}", name=database,
                description="Kiln inference tables: sampled requests and responses of the serving endpoints",
                tags=tags, opts=child,
            )
            for database in sorted({capture.database for capture in captures})
        }
        self.tables = {capture.endpoint: self._table(name, capture, bucket, child) for capture in captures}
        self.register_outputs({"tables": {capture.endpoint: capture.qualified_table for capture in captures}})

    def _table(self, name: str, capture: CapturePlan, bucket: pulumi.Output[str],
               opts: pulumi.ResourceOptions) -> aws.glue.CatalogTable:
        storage = STORAGE_FORMATS[capture.format]
        return aws.glue.CatalogTable(
            f"{name}-{capture.endpoint}",
            name=capture.table,
            database_name=self.databases[capture.database].name,
            description=f"Sampled requests and responses of endpoint {capture.endpoint} "
                        f"({capture.sampling_fraction * 100:g} % of requests)",
            table_type="EXTERNAL_TABLE",
            parameters=bucket.apply(lambda b: table_parameters(capture, b, PARTITION_COLUMN.name)),
            partition_keys=[{"name": PARTITION_COLUMN.name, "type": PARTITION_COLUMN.glue_type,
                             "comment": PARTITION_COLUMN.comment}],
            storage_descriptor={
                "location": bucket.apply(lambda b: table_location(capture, b)),
                "input_format": storage["input_format"],
                "output_format": storage["output_format"],
                "ser_de_info": {"serialization_library": storage["serialization_library"]},
                "columns": [{"name": c.name, "type": c.glue_type, "comment": c.comment} for c in COLUMNS],
            },
            opts=opts,
        )

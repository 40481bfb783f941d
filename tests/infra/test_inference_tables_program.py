"""The inference table in the plan of the shipped prod stack (the real program under mocks):
a Glue table over the capture prefix with projected date partitions and the runtime's own
columns, runtimes told where to write, and an instance role that may write that prefix only."""

from __future__ import annotations

import base64
import json

import pytest

from infra.preview.program import ProgramRun, Registration, run_program
from runtime.capture import CAPTURE_FLUSH_ON_DRAIN_SECONDS, COLUMNS
from tests.conftest import stack_config

TABLE = "aws:glue/catalogTable:CatalogTable"
DATABASE = "aws:glue/catalogDatabase:CatalogDatabase"


@pytest.fixture(scope="module")
def prod(example_store) -> ProgramRun:
    return run_program("prod", stack_config("prod", example_store), preview=False)


def _child(run: ProgramRun, type_: str, parent_name: str) -> Registration:
    parent = run.named(parent_name)
    return next(r for r in run.registrations if r.type == type_ and r.parent == parent.urn)


def test_the_prod_plan_declares_a_glue_table_over_the_capture_prefix(prod: ProgramRun) -> None:
    bucket = prod.outputs["artifactBucket"]
    [database] = prod.of_type(DATABASE)
    [table] = prod.of_type(TABLE)
    storage = table.inputs["storageDescriptor"]

    assert prod.outputs["inferenceTables"] == {"fraud-scorer": "kiln_prod.fraud_scorer_payload"}
    assert (database.inputs["name"], table.inputs["name"]) == ("kiln_prod", "fraud_scorer_payload")
    assert table.inputs["databaseName"] == "kiln_prod"
    assert storage["location"] == f"s3://{bucket}/inference-tables/fraud-scorer/"
    assert [(c["name"], c["type"]) for c in storage["columns"]] == [(c.name, c.glue_type) for c in COLUMNS]
    assert storage["serDeInfo"]["serializationLibrary"].endswith("ParquetHiveSerDe")
    assert [k["name"] for k in table.inputs["partitionKeys"]] == ["date"]
    assert table.inputs["description"].endswith("(10 % of requests)")


def test_athena_finds_the_date_partitions_by_projection_without_a_crawler(prod: ProgramRun) -> None:
    [table] = prod.of_type(TABLE)
    parameters = table.inputs["parameters"]

    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.date.type"] == "date"
    assert parameters["projection.date.format"] == "yyyy-MM-dd"
    assert parameters["storage.location.template"] == (
        f"s3://{prod.outputs['artifactBucket']}/inference-tables/fraud-scorer/date=${{date}}/")


def test_only_the_capturing_endpoints_runtimes_are_told_to_capture(prod: ProgramRun) -> None:
    bucket = prod.outputs["artifactBucket"]

    def env(served_model: str) -> str:
        template = _child(prod, "aws:ec2/launchTemplate:LaunchTemplate", served_model)
        return base64.b64decode(template.inputs["userData"]).decode()

    for served_model in ("fraud-scorer.champion", "fraud-scorer.challenger"):
        assert f"\nKILN_CAPTURE_URI=s3://{bucket}/inference-tables/fraud-scorer/\n" in env(served_model)
        assert "\nKILN_CAPTURE_SAMPLING_FRACTION=0.1\n" in env(served_model)
        # docker waits for the drain (the deregistration delay) and the last upload before it kills
        assert f"--stop-timeout {597 + CAPTURE_FLUSH_ON_DRAIN_SECONDS} " in env(served_model)
    assert "KILN_CAPTURE_URI" not in env("ticket-router.champion")
    assert "--stop-timeout 120 " in env("ticket-router.champion")


def _statements(run: ProgramRun, served_model: str) -> dict[str, dict]:
    policy = json.loads(_child(run, "aws:iam/rolePolicy:RolePolicy", served_model).inputs["policy"])
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def test_the_instance_role_may_only_put_objects_under_its_endpoints_capture_prefix(prod: ProgramRun) -> None:
    bucket = prod.outputs["artifactBucket"]
    statements = _statements(prod, "fraud-scorer.champion")
    writes = [s for s in statements.values() if any(a.startswith("s3:Put") for a in s["Action"])]

    assert writes == [{"Sid": "WriteInferenceTable", "Effect": "Allow", "Action": ["s3:PutObject"],
                       "Resource": f"arn:aws:s3:::{bucket}/inference-tables/fraud-scorer/*"}]
    assert "WriteInferenceTable" not in _statements(prod, "ticket-router.champion")


def test_the_dev_stacks_json_lines_rows_are_declared_with_athenas_json_serde(example_store) -> None:
    """The dev stack writes JSON Lines: its table reads text with the OpenX SerDe Athena
    documents for JSON, not Parquet."""
    dev = run_program("dev", stack_config("dev", example_store), preview=False)
    [table] = dev.of_type(TABLE)
    storage = table.inputs["storageDescriptor"]

    assert storage["serDeInfo"]["serializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert storage["inputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"
    assert table.inputs["parameters"]["classification"] == "json"
    assert table.inputs["description"].endswith("(100 % of requests)")

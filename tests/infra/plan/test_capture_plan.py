"""autoCaptureConfig: what a stack file may say about an endpoint's inference table, and the
table, prefix and runtime settings the plan derives from it."""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan.config import ConfigError, parse_stack_config
from infra.plan.stack import StackPlan, plan_stack
from runtime.capture import CAPTURE_FLUSH_ON_DRAIN_SECONDS
from tests.stack_values import valid_values

SOURCE = "stacks/Pulumi.test.yaml"


def _with_capture(capture: dict[str, Any], endpoint: int = 0) -> dict[str, Any]:
    values = valid_values()
    values["endpoints"][endpoint]["autoCaptureConfig"] = capture
    return values


def _problems(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(values, SOURCE)
    return caught.value.problems


def _plan(values: dict[str, Any], stack: str = "test") -> StackPlan:
    return plan_stack(stack, parse_stack_config(values, SOURCE))


def test_an_endpoint_captures_into_its_own_payload_table_and_prefix() -> None:
    [capture] = _plan(_with_capture({"samplingPercentage": 25}), stack="team-a").captures

    assert capture.qualified_table == "kiln_team_a.fraud_scorer_payload"
    assert capture.prefix == "inference-tables/fraud-scorer/"
    assert capture.sampling_fraction == 0.25
    assert capture.format == "parquet"


def test_schema_and_table_prefix_name_the_table_as_databricks_does() -> None:
    values = _with_capture({"schemaName": "ml_monitoring", "tableNamePrefix": "fraud"})

    assert _plan(values).captures[0].qualified_table == "ml_monitoring.fraud_payload"


def test_a_disabled_capture_plans_no_table_and_no_runtime_setting() -> None:
    plan = _plan(_with_capture({"enabled": False}))

    assert plan.captures == []
    assert plan.served_models[0].runtime_settings("s3://b/models/a/", "a" * 64, capture_bucket="b").capture_uri is None


def test_the_runtimes_write_under_the_artifact_bucket_and_stop_after_the_last_upload() -> None:
    served = _plan(_with_capture({"samplingPercentage": 5, "format": "jsonl", "maxBodyBytes": 1024})).served_models[1]

    settings = served.runtime_settings("s3://kiln-artifacts/models/a/", "a" * 64, capture_bucket="kiln-artifacts")

    assert settings.capture_uri == "s3://kiln-artifacts/inference-tables/fraud-scorer/"
    assert (settings.capture_sampling_fraction, settings.capture_format, settings.capture_max_body_bytes) == (
        0.05, "jsonl", 1024)
    assert served.stop_timeout_seconds == served.deregistration_delay_seconds + CAPTURE_FLUSH_ON_DRAIN_SECONDS


@pytest.mark.parametrize("capture, problem", [
    ({"samplingPercentage": 0}, "endpoints[0].autoCaptureConfig.samplingPercentage: Input should be greater than 0"),
    ({"samplingPercentage": 150}, "endpoints[0].autoCaptureConfig.samplingPercentage: Input should be less than or "
                                  "equal to 100"),
    ({"format": "csv"}, "endpoints[0].autoCaptureConfig.format: Input should be 'parquet' or 'jsonl'"),
    ({"tableNamePrefix": "Fraud-Scorer"}, "endpoints[0].autoCaptureConfig.tableNamePrefix: String should match "
                                          "pattern '^[a-z][a-z0-9_]{0,199}$'"),
    ({"catalogName": "main"}, "endpoints[0].autoCaptureConfig.catalogName: unknown key 'catalogName'; known keys: enabled, "
                              "schemaName, tableNamePrefix, samplingPercentage, format, maxBodyBytes"),
])
def test_a_capture_config_that_cannot_work_names_its_key(capture: dict[str, Any], problem: str) -> None:
    assert _problems(_with_capture(capture)) == [problem]


def test_two_endpoints_may_not_write_one_table() -> None:
    values = _with_capture({"tableNamePrefix": "shared"})
    values["endpoints"].append({**values["endpoints"][0], "name": "fraud-scorer-eu"})

    assert _problems(values) == [
        "endpoints[1].autoCaptureConfig.tableNamePrefix: 'shared' is the inference table of endpoint fraud-scorer "
        "too; give each endpoint its own tableNamePrefix"]

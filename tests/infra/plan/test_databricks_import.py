"""Databricks endpoint JSON → a Kiln endpoint that validates and plans."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from infra.commands.cli import main
from infra.plan.config import ConfigError
from infra.plan.databricks_import import import_endpoint, import_notes

# Shape of GET /api/2.0/serving-endpoints/{name} (Databricks REST API, served_entities form).
ENDPOINT = {
    "name": "fraud_scorer",
    "config": {
        "served_entities": [
            {
                "name": "Champion",
                "entity_name": "main.risk.fraud",
                "entity_version": "12",
                "workload_size": "Medium",
                "workload_type": "CPU",
                "scale_to_zero_enabled": False,
                "environment_vars": {"LOG_LEVEL": "info"},
            },
            {
                "name": "challenger",
                "entity_name": "main.risk.fraud",
                "entity_version": "13",
                "workload_type": "GPU_SMALL",
                "min_provisioned_concurrency": 0,
                "max_provisioned_concurrency": 4,
                "scale_to_zero_enabled": True,
            },
        ],
        "traffic_config": {
            "routes": [
                {"served_entity_name": "Champion", "traffic_percentage": 80},
                {"served_entity_name": "challenger", "traffic_percentage": 20},
            ]
        },
    },
    "tags": [{"key": "team", "value": "risk"}],
}


def test_served_entities_become_served_models() -> None:
    endpoint = import_endpoint(ENDPOINT, "fraud.json")

    assert endpoint["name"] == "fraud-scorer"
    champion, challenger = endpoint["servedModels"]
    assert champion == {
        "name": "champion",
        "modelUri": "models:/main.risk.fraud/12",
        "computeType": "CPU_MEDIUM",
        "scaleToZeroEnabled": False,
        "workloadSize": "Medium",
        "environmentVars": {"LOG_LEVEL": "info"},
    }
    assert (challenger["computeType"], challenger["minProvisionedConcurrency"], challenger["maxProvisionedConcurrency"]) == ("GPU_SMALL", 0, 4)
    assert endpoint["trafficConfig"]["routes"] == [
        {"servedModelName": "champion", "trafficPercentage": 80},
        {"servedModelName": "challenger", "trafficPercentage": 20},
    ]
    assert endpoint["tags"] == {"team": "risk"}


def test_legacy_served_models_form_is_understood() -> None:
    legacy = {"name": "iris", "config": {"served_models": [{"model_name": "iris", "model_version": "3", "workload_size": "Small"}]}}

    [served] = import_endpoint(legacy, "iris.json")["servedModels"]

    assert (served["name"], served["modelUri"]) == ("iris-3", "models:/iris/3")


def test_unknown_workload_type_is_reported_like_a_stack_error() -> None:
    bad = json.loads(json.dumps(ENDPOINT))
    bad["config"]["served_entities"][1]["workload_type"] = "GPU_LARGE"

    with pytest.raises(ConfigError) as caught:
        import_endpoint(bad, "fraud.json")

    assert caught.value.problems[0].startswith("as a Kiln endpoint: servedModels[1].computeType: unknown compute type 'GPU_LARGE'")


def test_cli_prints_a_stack_entry(tmp_path: Path) -> None:
    path = tmp_path / "fraud.json"
    path.write_text(json.dumps(ENDPOINT))

    result = CliRunner().invoke(main, ["import-databricks", str(path)])

    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["kiln:endpoints"][0]["servedModels"][1]["name"] == "challenger"


def test_cli_refuses_broken_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")

    result = CliRunner().invoke(main, ["import-databricks", str(path)])

    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr


def test_import_notes_say_what_was_renamed_or_left_out() -> None:
    document = copy.deepcopy(ENDPOINT)
    document["name"] = "llm_chat"
    document["config"]["served_entities"][1].update(min_provisioned_throughput=0, max_provisioned_throughput=970)

    notes = import_notes(document, import_endpoint(document, "chat.json"))

    assert notes == [
        "endpoint 'llm_chat' is named 'llm-chat' (Kiln names are DNS labels): "
        "clients call /serving-endpoints/llm-chat/invocations instead",
        "served entity 'Champion' is named 'champion'",
        "served entity 'challenger': not imported, Kiln has no equivalent: "
        "max_provisioned_throughput, min_provisioned_throughput",
    ]


def test_cli_prints_the_notes_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "fraud.json"
    path.write_text(json.dumps(ENDPOINT))

    result = CliRunner().invoke(main, ["import-databricks", str(path)])

    assert "note: endpoint 'fraud_scorer' is named 'fraud-scorer'" in result.stderr
    assert "note:" not in result.stdout


def test_an_inference_table_is_imported_as_the_endpoints_auto_capture_config() -> None:
    document = copy.deepcopy(ENDPOINT)
    document["config"]["auto_capture_config"] = {"catalog_name": "main", "schema_name": "Risk-Tables",
                                                 "table_name_prefix": "fraud_scorer", "enabled": True}

    endpoint = import_endpoint(document, "fraud.json")
    notes = import_notes(document, endpoint)

    assert endpoint["autoCaptureConfig"] == {"enabled": True, "schemaName": "risk_tables", "tableNamePrefix": "fraud_scorer"}
    assert "auto_capture_config.catalog_name 'main': not imported, Kiln's inference table lives in the account's " \
        "Glue Data Catalog" in notes
    assert "auto_capture_config.schema_name 'Risk-Tables' is schemaName 'risk_tables' (Glue names are lower case)" in notes
    assert not any("table_name_prefix" in note for note in notes)


def test_an_endpoint_without_an_inference_table_gets_none() -> None:
    assert "autoCaptureConfig" not in import_endpoint(copy.deepcopy(ENDPOINT), "fraud.json")

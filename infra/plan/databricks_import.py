"""Import a Databricks serving endpoint (its REST/SDK JSON) as a Kiln endpoint.

Teams moving from Databricks Model Serving bring their endpoint definitions along: the
`config.served_entities` (or legacy `served_models`) and `config.traffic_config` of
`GET /api/2.0/serving-endpoints/{name}` map one-to-one onto Kiln's vocabulary.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from infra.plan.config import ConfigError, Endpoint, validation_problems

# Databricks' plain `CPU` gives 4 GB per concurrency; Kiln's smallest CPU type gives 8 GB.
WORKLOAD_TYPES = {"CPU": "CPU_MEDIUM"}


def _model_uri(entity: dict[str, Any]) -> str:
    name = entity.get("entity_name") or entity.get("model_name")
    version = entity.get("entity_version") or entity.get("model_version")
    if not name or not version:
        raise KeyError("entity_name/entity_version (or model_name/model_version)")
    return f"models:/{name}/{version}"


def _served_name(entity: dict[str, Any]) -> str:
    """Databricks allows upper case and '_' in names; Kiln names are DNS labels."""
    raw = entity.get("name") or f"{entity.get('entity_name') or entity.get('model_name')}-{entity.get('entity_version') or entity.get('model_version')}"
    return re.sub(r"[^a-z0-9-]+", "-", str(raw).split(".")[-1].lower()).strip("-")[:63]


def _served_model(entity: dict[str, Any]) -> dict[str, Any]:
    served: dict[str, Any] = {
        "name": _served_name(entity),
        "modelUri": _model_uri(entity),
        "computeType": WORKLOAD_TYPES.get(entity.get("workload_type", "CPU"), entity.get("workload_type", "CPU")),
        "scaleToZeroEnabled": bool(entity.get("scale_to_zero_enabled", False)),
    }
    if "min_provisioned_concurrency" in entity or "max_provisioned_concurrency" in entity:
        served["minProvisionedConcurrency"] = entity.get("min_provisioned_concurrency", 0)
        served["maxProvisionedConcurrency"] = entity.get("max_provisioned_concurrency")
    else:
        served["workloadSize"] = entity.get("workload_size", "Small")
    if entity.get("environment_vars"):
        served["environmentVars"] = dict(entity["environment_vars"])
    return served


def _glue_name(name: str) -> str:
    """A Unity Catalog identifier as a Glue database or table name (lower case, '_' for the rest)."""
    return re.sub(r"[^a-z0-9_]+", "_", name.lower())


def _auto_capture(capture: dict[str, Any]) -> dict[str, Any]:
    """Databricks' auto_capture_config as Kiln's: the Unity Catalog schema becomes the Glue
    database and the table prefix stays; Databricks captures every request, as Kiln does by default."""
    imported: dict[str, Any] = {"enabled": bool(capture.get("enabled", True))}
    for key, kiln_key in (("schema_name", "schemaName"), ("table_name_prefix", "tableNamePrefix")):
        if capture.get(key):
            imported[kiln_key] = _glue_name(str(capture[key]))
    return imported


def import_endpoint(document: dict[str, Any], source: str) -> dict[str, Any]:
    """A validated `kiln:endpoints` entry (camelCase, as written in a stack file)."""
    config = document.get("config") or document.get("pending_config") or {}
    entities = config.get("served_entities") or config.get("served_models") or []
    try:
        served_models = [_served_model(entity) for entity in entities]
        renamed = {
            (entity.get("name") or ""): served["name"] for entity, served in zip(entities, served_models)
        }
        endpoint: dict[str, Any] = {"name": _served_name({"name": document["name"]}), "servedModels": served_models}
    except KeyError as missing:
        raise ConfigError(source, [f"config.served_entities: missing {missing.args[0]}"]) from None
    routes = (config.get("traffic_config") or {}).get("routes") or []
    if routes:
        endpoint["trafficConfig"] = {
            "routes": [
                {
                    "servedModelName": renamed.get(route.get("served_entity_name") or route.get("served_model_name"), ""),
                    "trafficPercentage": route["traffic_percentage"],
                }
                for route in routes
            ]
        }
    if config.get("auto_capture_config"):
        endpoint["autoCaptureConfig"] = _auto_capture(config["auto_capture_config"])
    tags = document.get("tags") or []
    if tags:
        endpoint["tags"] = {tag["key"]: tag.get("value", "") for tag in tags}
    try:
        Endpoint.model_validate(endpoint)
    except ValidationError as error:
        raise ConfigError(source, [f"as a Kiln endpoint: {problem}" for problem in validation_problems(error, Endpoint)]) from None
    return endpoint


# What _served_model and _served_name read of a served entity; anything else is not carried over.
READ_ENTITY_KEYS = frozenset({
    "name", "entity_name", "entity_version", "model_name", "model_version", "workload_type", "workload_size",
    "scale_to_zero_enabled", "min_provisioned_concurrency", "max_provisioned_concurrency", "environment_vars",
})


def import_notes(document: dict[str, Any], endpoint: dict[str, Any]) -> list[str]:
    """What the import changed or left out, for the person pasting it: a renamed endpoint moves
    its invocation URL, and a dropped field (provisioned throughput, say) is capacity they paid for."""
    notes = []
    if document.get("name") != endpoint["name"]:
        notes.append(f"endpoint {document.get('name')!r} is named {endpoint['name']!r} (Kiln names are DNS labels): "
                     f"clients call /serving-endpoints/{endpoint['name']}/invocations instead")
    config = document.get("config") or document.get("pending_config") or {}
    entities = config.get("served_entities") or config.get("served_models") or []
    for entity, served in zip(entities, endpoint["servedModels"]):
        if entity.get("name") and entity["name"] != served["name"]:
            notes.append(f"served entity {entity['name']!r} is named {served['name']!r}")
        dropped = sorted(set(entity) - READ_ENTITY_KEYS)
        if dropped:
            notes.append(f"served entity {served['name']!r}: not imported, Kiln has no equivalent: {', '.join(dropped)}")
    capture, imported = config.get("auto_capture_config") or {}, endpoint.get("autoCaptureConfig") or {}
    if capture.get("catalog_name"):
        notes.append(f"auto_capture_config.catalog_name {capture['catalog_name']!r}: not imported, Kiln's inference "
                     "table lives in the account's Glue Data Catalog")
    for key, kiln_key in (("schema_name", "schemaName"), ("table_name_prefix", "tableNamePrefix")):
        if capture.get(key) and capture[key] != imported.get(kiln_key):
            notes.append(f"auto_capture_config.{key} {capture[key]!r} is {kiln_key} {imported.get(kiln_key)!r} "
                         "(Glue names are lower case)")
    return notes

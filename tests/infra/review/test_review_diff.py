"""What changed between two plans, on hand-built stack configs and program runs.

Settings are compared by name (endpoint, served model, route), never list position;
resources by type and logical name. Between two versions of one stack a change is added,
removed, updated or replaced (and says what it restarts); between two stacks it only differs.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.plan.config import StackConfig, parse_stack_config
from infra.plan.stack import plan_stack
from infra.preview.program import ProgramRun, Registration
from infra.review.diff import (
    REPLACING_INPUTS,
    ROLLOUT,
    Change,
    ResourceChange,
    diff_resources,
    diff_settings,
    flatten_settings,
)
from tests.stack_values import valid_values

SOURCE = "stacks/Pulumi.prod.yaml"
ENDPOINT = "endpoints.fraud-scorer"
CHAMPION = f"{ENDPOINT}.servedModels.champion"
CHALLENGER = f"{ENDPOINT}.servedModels.challenger"


def config(values: dict[str, Any]) -> StackConfig:
    return parse_stack_config(values, SOURCE)


def served_model_settings(prefix: str, model_uri: str) -> dict[str, Any]:
    """A served model sized by workloadSize: Small, every other setting at its default."""
    return {
        f"{prefix}.modelUri": model_uri,
        f"{prefix}.computeType": "CPU_MEDIUM",
        f"{prefix}.workloadSize": "Small",
        f"{prefix}.minProvisionedConcurrency": None,
        f"{prefix}.maxProvisionedConcurrency": None,
        f"{prefix}.expectedQps": None,
        f"{prefix}.expectedLatencyMs": None,
        f"{prefix}.scaleToZeroEnabled": False,
        f"{prefix}.instanceType": None,
        f"{prefix}.gpuPlacement": None,
        f"{prefix}.queueBudgetSeconds": None,
        f"{prefix}.maxBatchSize": None,
        f"{prefix}.maxBatchDelayMs": None,
        # Databricks' behaviour: 70 % target, scale in every 5 min, to zero after 30 idle min.
        f"{prefix}.scaling.targetUtilization": 0.7,
        f"{prefix}.scaling.highResolutionMetric": True,
        f"{prefix}.scaling.scaleInCooldownSeconds": 300,
        f"{prefix}.scaling.idleMinutesBeforeZero": 30,
        f"{prefix}.scaling.warmPool": None,
        f"{prefix}.sizing": "nominal",
    }


# --- flatten_settings ---------------------------------------------------------------------------
def test_settings_are_dotted_paths_with_list_items_keyed_by_name() -> None:
    flat = flatten_settings(config(valid_values()))

    assert flat == {
        "environment": "prod",
        "mlflowTrackingUri": "http://mlflow.internal:5000",
        "network.vpcId": "vpc-0abc0000000000001",
        "network.privateSubnetIds": ["subnet-0a1000000000000a1", "subnet-0b1000000000000b1"],
        "network.publicSubnetIds": [],
        "network.vpcEndpoints": None,  # instances reach AWS through whatever the VPC has
        "gateway.internetFacing": False,
        "gateway.certificateArn": None,
        "gateway.allowedCidrs": None,
        "build.timeoutMinutes": 60,
        "amis.cpu": "ami-0123456789abcdef0",
        "amis.gpu": "ami-0fedcba9876543210",
        "alerts": None,
        **served_model_settings(CHAMPION, "models:/fraud/12"),
        **served_model_settings(CHALLENGER, "models:/fraud@challenger"),
        f"{ENDPOINT}.trafficConfig.routes.champion.trafficPercentage": 90,
        f"{ENDPOINT}.trafficConfig.routes.challenger.trafficPercentage": 10,
        f"{ENDPOINT}.requestTimeoutSeconds": 597,  # the Databricks default
        f"{ENDPOINT}.autoCaptureConfig": None,  # no inference table
        f"{ENDPOINT}.auth": None,  # on exactly when the gateway is internet-facing
        "kmsKeyArn": None,
        "sessionManager": True,
        "region": "us-east-1",
    }


def test_settings_are_the_plain_values_the_report_prints() -> None:
    flat = flatten_settings(config(valid_values()))

    # A compute type is the string a person wrote, not the enum member ("ComputeType.CPU_MEDIUM").
    assert str(flat[f"{CHAMPION}.computeType"]) == "CPU_MEDIUM"
    assert {type(value).__name__ for value in flat.values()} == {"str", "list", "bool", "NoneType", "int", "float"}


def test_nested_mappings_and_a_single_served_model_flatten_to_paths() -> None:
    values = valid_values()
    endpoint = values["endpoints"][0]
    endpoint["servedModels"] = [
        {
            **endpoint["servedModels"][0],
            "scaleToZeroEnabled": True,
            "environmentVars": {"LOG_LEVEL": "info"},
            "scaling": {"idleMinutesBeforeZero": 15, "warmPool": {"minSize": 2}},
        }
    ]
    del endpoint["trafficConfig"]
    endpoint["tags"] = {"team": "risk"}

    flat = flatten_settings(config(values))

    shown = (f"{CHAMPION}.scaling", f"{CHAMPION}.environmentVars", f"{ENDPOINT}.trafficConfig", f"{ENDPOINT}.tags")
    assert {path: value for path, value in flat.items() if path.startswith(shown)} == {
        f"{CHAMPION}.environmentVars.LOG_LEVEL": "info",
        f"{CHAMPION}.scaling.targetUtilization": 0.7,
        f"{CHAMPION}.scaling.highResolutionMetric": True,
        f"{CHAMPION}.scaling.scaleInCooldownSeconds": 300,
        f"{CHAMPION}.scaling.idleMinutesBeforeZero": 15,
        f"{CHAMPION}.scaling.warmPool.minSize": 2,
        f"{CHAMPION}.scaling.warmPool.reuseOnScaleIn": True,
        f"{ENDPOINT}.trafficConfig": None,
        f"{ENDPOINT}.tags.team": "risk",
    }


# --- diff_settings ------------------------------------------------------------------------------
def test_changed_settings_are_listed_by_path_in_path_order() -> None:
    head = valid_values()
    head["endpoints"][0]["requestTimeoutSeconds"] = 60
    head["endpoints"][0]["servedModels"][1]["modelUri"] = "models:/fraud/13"
    routes = head["endpoints"][0]["trafficConfig"]["routes"]
    routes[0]["trafficPercentage"], routes[1]["trafficPercentage"] = 50, 50

    changes = diff_settings(config(valid_values()), config(head))

    assert changes == [
        Change(f"{ENDPOINT}.requestTimeoutSeconds", 597, 60),
        Change(f"{CHALLENGER}.modelUri", "models:/fraud@challenger", "models:/fraud/13"),
        Change(f"{ENDPOINT}.trafficConfig.routes.challenger.trafficPercentage", 10, 50),
        Change(f"{ENDPOINT}.trafficConfig.routes.champion.trafficPercentage", 90, 50),
    ]
    assert {change.kind for change in changes} == {"changed"}


def test_reordered_endpoints_served_models_and_routes_are_not_a_change() -> None:
    head = valid_values()
    endpoint = head["endpoints"][0]
    endpoint["servedModels"].reverse()
    endpoint["trafficConfig"]["routes"].reverse()
    second = copy.deepcopy(endpoint) | {"name": "ticket-router"}
    base = copy.deepcopy(head)
    base["endpoints"].append(second)
    head["endpoints"].insert(0, second)

    assert diff_settings(config(base), config(head)) == []


def test_removed_served_model_lists_each_of_its_settings_as_removed() -> None:
    head = valid_values()
    endpoint = head["endpoints"][0]
    endpoint["servedModels"].pop()
    del endpoint["trafficConfig"]

    changes = diff_settings(config(valid_values()), config(head))

    removed = [c for c in changes if c.kind == "removed"]
    assert [(c.path, c.before) for c in removed] == [
        (f"{CHALLENGER}.computeType", "CPU_MEDIUM"),
        (f"{CHALLENGER}.modelUri", "models:/fraud@challenger"),
        (f"{CHALLENGER}.scaleToZeroEnabled", False),
        (f"{CHALLENGER}.scaling.highResolutionMetric", True),
        (f"{CHALLENGER}.scaling.idleMinutesBeforeZero", 30),
        (f"{CHALLENGER}.scaling.scaleInCooldownSeconds", 300),
        (f"{CHALLENGER}.scaling.targetUtilization", 0.7),
        (f"{CHALLENGER}.sizing", "nominal"),
        (f"{CHALLENGER}.workloadSize", "Small"),
        (f"{ENDPOINT}.trafficConfig.routes.challenger.trafficPercentage", 10),
        (f"{ENDPOINT}.trafficConfig.routes.champion.trafficPercentage", 90),
    ]
    assert all(c.after is None for c in removed)


def test_added_endpoint_lists_its_settings_as_added() -> None:
    head = valid_values()
    head["endpoints"].append(
        {
            "name": "ticket-router",
            "servedModels": [{"name": "champion", "modelUri": "models:/tickets/3", "computeType": "GPU_MEDIUM", "workloadSize": "Small"}],
        }
    )

    changes = diff_settings(config(valid_values()), config(head))

    assert [(c.path, c.after, c.kind) for c in changes] == [
        ("endpoints.ticket-router.requestTimeoutSeconds", 597, "added"),
        ("endpoints.ticket-router.servedModels.champion.computeType", "GPU_MEDIUM", "added"),
        ("endpoints.ticket-router.servedModels.champion.modelUri", "models:/tickets/3", "added"),
        ("endpoints.ticket-router.servedModels.champion.scaleToZeroEnabled", False, "added"),
        ("endpoints.ticket-router.servedModels.champion.scaling.highResolutionMetric", True, "added"),
        ("endpoints.ticket-router.servedModels.champion.scaling.idleMinutesBeforeZero", 30, "added"),
        ("endpoints.ticket-router.servedModels.champion.scaling.scaleInCooldownSeconds", 300, "added"),
        ("endpoints.ticket-router.servedModels.champion.scaling.targetUtilization", 0.7, "added"),
        ("endpoints.ticket-router.servedModels.champion.sizing", "nominal", "added"),
        ("endpoints.ticket-router.servedModels.champion.workloadSize", "Small", "added"),
    ]


def test_identical_configs_have_no_setting_changes() -> None:
    assert diff_settings(config(valid_values()), config(valid_values())) == []


# --- diff_resources -----------------------------------------------------------------------------
def resource(type_: str, name: str, inputs: dict[str, Any], custom: bool = True) -> Registration:
    return Registration(
        type=type_,
        name=name,
        urn=f"urn:pulumi:prod::kiln::{type_}::{name}",
        parent="",
        custom=custom,
        inputs=inputs,
        outputs={},
        options={},
        dependencies=[],
        property_dependencies={},
    )


def run(stack: str, *registrations: Registration) -> ProgramRun:
    plan = plan_stack(stack, parse_stack_config(valid_values(), stack))
    return ProgramRun(stack=stack, preview=True, plan=plan, registrations=list(registrations))


GROUP = "aws:autoscaling/group:Group"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
RULE = "aws:lb/listenerRule:ListenerRule"
BUCKET = "aws:s3/bucket:Bucket"


def group(**inputs: Any) -> Registration:
    return resource(GROUP, "fraud-scorer.champion-asg", {"name": "kiln-prod-fraud-champion", "minSize": 3, "maxSize": 6, **inputs})


def test_resources_added_and_removed_between_versions_of_a_stack() -> None:
    kept = resource(BUCKET, "artifacts", {"bucket": "kiln-prod-artifacts"})
    base = run("prod", kept, resource(GROUP, "fraud-scorer.challenger-asg", {"minSize": 4}))
    head = run("prod", kept, resource(GROUP, "ticket-router.champion-asg", {"minSize": 2}))

    assert diff_resources(base, head) == [
        ResourceChange(GROUP, "fraud-scorer.challenger-asg", "removed", (), "deleted"),
        ResourceChange(GROUP, "ticket-router.champion-asg", "added", (), "created"),
    ]


def test_unchanged_resources_and_components_are_not_listed() -> None:
    component = "kiln:serving:ServedModel"
    base = run("prod", group(), resource(component, "fraud-scorer.champion", {"servedModel": "a"}, custom=False))
    head = run("prod", group(), resource(component, "fraud-scorer.champion", {"servedModel": "b"}, custom=False))

    assert diff_resources(base, head) == []


def test_component_added_is_not_a_resource_change() -> None:
    component = resource("kiln:serving:Activator", "fraud-scorer.champion-activator", {}, custom=False)

    assert diff_resources(run("prod"), run("prod", component)) == []


@pytest.mark.parametrize(
    ("type_", "key"), [(type_, key) for type_, keys in REPLACING_INPUTS.items() for key in keys]
)
def test_each_replacing_input_replaces_its_resource(type_: str, key: str) -> None:
    base = run("prod", resource(type_, "r", {key: "before", "tags": {"kiln:stack": "prod"}}))
    head = run("prod", resource(type_, "r", {key: "after", "tags": {"kiln:stack": "prod"}}))

    assert diff_resources(base, head) == [ResourceChange(type_, "r", "replaced", (key,), f"replaced because {key} changed")]


def test_replacing_inputs_are_named_together_in_key_order() -> None:
    tg = "aws:lb/targetGroup:TargetGroup"
    base = run("prod", resource(tg, "tg", {"port": 8080, "protocol": "HTTP", "deregistrationDelay": 300}))
    head = run("prod", resource(tg, "tg", {"port": 9090, "protocol": "HTTPS", "deregistrationDelay": 30}))

    assert diff_resources(base, head) == [
        ResourceChange(tg, "tg", "replaced", ("deregistrationDelay", "port", "protocol"), "replaced because port, protocol changed")
    ]


@pytest.mark.parametrize(
    ("type_", "key"),
    [
        ("aws:lb/listener:Listener", "port"),  # a listener's port changes in place
        ("aws:lb/targetGroup:TargetGroup", "deregistrationDelay"),
        (BUCKET, "tags"),
        ("aws:lambda/function:Function", "name"),  # not a type Kiln lists as replacing
    ],
)
def test_inputs_that_do_not_replace_update_in_place_without_a_note(type_: str, key: str) -> None:
    base = run("prod", resource(type_, "r", {key: "before"}))
    head = run("prod", resource(type_, "r", {key: "after"}))

    assert diff_resources(base, head) == [ResourceChange(type_, "r", "updated", (key,), "updated in place")]


def test_launch_template_change_rolls_instances_with_an_instance_refresh() -> None:
    base = run("prod", resource(TEMPLATE, "lt", {"imageId": "ami-1", "name": "kiln-prod-lt", "userData": "a"}))
    head = run("prod", resource(TEMPLATE, "lt", {"imageId": "ami-1", "name": "kiln-prod-lt2", "userData": "b"}))

    assert diff_resources(base, head) == [ResourceChange(TEMPLATE, "lt", "updated", ("name", "userData"), ROLLOUT)]


def test_an_ami_change_names_both_amis_before_the_rollout() -> None:
    base = run("prod", resource(TEMPLATE, "lt", {"imageId": "ami-1", "userData": "a"}))
    head = run("prod", resource(TEMPLATE, "lt", {"imageId": "ami-2", "userData": "a"}))

    assert diff_resources(base, head) == [
        ResourceChange(TEMPLATE, "lt", "updated", ("imageId",), f"AMI ami-1 → ami-2: {ROLLOUT}")
    ]


@pytest.mark.parametrize("key", ["minSize", "maxSize"])
def test_group_size_bounds_change_in_place_without_restarts(key: str) -> None:
    base, head = run("prod", group()), run("prod", group(**{key: 10}))

    assert diff_resources(base, head) == [
        ResourceChange(GROUP, "fraud-scorer.champion-asg", "updated", (key,), "group size bounds change in place; no instance restarts")
    ]


def test_group_change_other_than_its_bounds_has_no_note() -> None:
    base, head = run("prod", group(healthCheckGracePeriod=300)), run("prod", group(healthCheckGracePeriod=600))

    assert diff_resources(base, head) == [ResourceChange(GROUP, "fraud-scorer.champion-asg", "updated", ("healthCheckGracePeriod",), "updated in place")]


def test_renamed_group_is_replaced_even_when_its_bounds_change_too() -> None:
    base, head = run("prod", group()), run("prod", group(name="kiln-prod-fraud-champion-2", maxSize=8))

    assert diff_resources(base, head) == [
        ResourceChange(GROUP, "fraud-scorer.champion-asg", "replaced", ("maxSize", "name"), "replaced because name changed")
    ]


def test_listener_rule_weights_change_in_place_within_seconds() -> None:
    def rule(champion: int) -> Registration:
        groups = [{"arn": "tg-champion", "weight": champion}, {"arn": "tg-challenger", "weight": 100 - champion}]
        return resource(RULE, "fraud-scorer-route", {"priority": 10, "actions": [{"type": "forward", "forward": {"targetGroups": groups}}]})

    assert diff_resources(run("prod", rule(90)), run("prod", rule(50))) == [
        ResourceChange(RULE, "fraud-scorer-route", "updated", ("actions",), "traffic weights change in place, effective within seconds")
    ]


def test_removed_input_is_a_changed_key() -> None:
    base = run("prod", resource(BUCKET, "artifacts", {"bucket": "kiln-prod-artifacts", "forceDestroy": True}))
    head = run("prod", resource(BUCKET, "artifacts", {"bucket": "kiln-prod-artifacts"}))

    assert diff_resources(base, head) == [ResourceChange(BUCKET, "artifacts", "updated", ("forceDestroy",), "updated in place")]


def test_changes_are_ordered_by_type_then_name() -> None:
    base = run("prod", resource(GROUP, "b", {"minSize": 1}), resource(GROUP, "a", {"minSize": 1}), resource(BUCKET, "z", {"bucket": "x"}))
    head = run("prod", resource(BUCKET, "z", {"bucket": "y"}), resource(GROUP, "a", {"minSize": 2}), resource(GROUP, "b", {"minSize": 2}))

    assert [(c.type, c.name) for c in diff_resources(base, head)] == [(GROUP, "a"), (GROUP, "b"), (BUCKET, "z")]


# --- between two stacks -------------------------------------------------------------------------
def test_stack_names_in_names_tags_and_lists_do_not_count_as_differences() -> None:
    def bucket(stack: str) -> Registration:
        return resource(
            BUCKET,
            "artifacts",
            {
                "bucket": f"kiln-{stack}-artifacts",
                "tags": {"kiln:stack": stack, "Name": f"{stack}_artifacts"},
                "corsRules": [{"allowedOrigins": [f"https://{stack}.example.com"]}],
                "versioning": {"enabled": True},
                "lifecycleDays": 30,
            },
        )

    assert diff_resources(run("dev", bucket("dev")), run("prod", bucket("prod"))) == []


def test_another_stack_differs_without_a_rollout_or_replacement() -> None:
    base = run("staging", group(name="kiln-staging-fraud-champion", maxSize=2), resource(TEMPLATE, "lt", {"imageId": "ami-1"}))
    head = run("prod", group(name="kiln-prod-fraud-champion-v2", maxSize=6), resource(TEMPLATE, "lt", {"imageId": "ami-2"}))

    assert diff_resources(base, head) == [
        ResourceChange(GROUP, "fraud-scorer.champion-asg", "differs", ("maxSize", "name"), ""),
        ResourceChange(TEMPLATE, "lt", "differs", ("imageId",), ""),
    ]


def test_resources_only_in_one_stack_are_added_or_removed() -> None:
    base = run("staging", resource(BUCKET, "staging-only", {}))
    head = run("prod", resource(GROUP, "prod-only", {}))

    assert [(c.name, c.kind) for c in diff_resources(base, head)] == [("prod-only", "added"), ("staging-only", "removed")]


@pytest.mark.parametrize(
    ("dev", "prod"),
    [
        ("devops-tools", "prodops-tools"),  # followed by a letter: another word
        ("kiln-xdev", "kiln-xprod"),  # preceded by a letter
        ("kiln-dev2", "kiln-prod2"),  # followed by a digit
        ("kiln-1dev", "kiln-1prod"),  # preceded by a digit
    ],
)
def test_a_word_that_merely_contains_the_stack_name_still_differs(dev: str, prod: str) -> None:
    base = run("dev", resource(BUCKET, "b", {"bucket": dev}))
    head = run("prod", resource(BUCKET, "b", {"bucket": prod}))

    assert diff_resources(base, head) == [ResourceChange(BUCKET, "b", "differs", ("bucket",), "")]


def test_turning_on_an_inference_table_shows_its_settings_by_name() -> None:
    values = valid_values()
    values["endpoints"][0]["autoCaptureConfig"] = {"samplingPercentage": 10}

    changes = {c.path: (c.before, c.after) for c in diff_settings(config(valid_values()), config(values))}

    assert changes[f"{ENDPOINT}.autoCaptureConfig.samplingPercentage"] == (None, 10.0)
    assert changes[f"{ENDPOINT}.autoCaptureConfig.format"] == (None, "parquet")

"""The real Pulumi program, run in-process under mocks in preview and update mode."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from infra.preview.program import UNKNOWN, ProgramRun, Registration, run_program
from models.artifacts import ModelResolutionError
from tests.conftest import SHIPPED_STACKS, stack_config

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
GROUP = "aws:autoscaling/group:Group"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


@pytest.fixture(scope="module")
def runs(example_store) -> dict[tuple[str, bool], ProgramRun]:
    """Every shipped stack, run once in preview and once in update mode."""
    return {
        (stack, preview): run_program(stack, stack_config(stack, example_store), preview=preview)
        for stack in SHIPPED_STACKS
        for preview in (True, False)
    }


def instance_target_groups(run: ProgramRun) -> list[Registration]:
    """Served models' target groups; an activator's Lambda target group has no health check."""
    return [r for r in run.of_type(TARGET_GROUP) if r.inputs.get("targetType") != "lambda"]


def child(run: ProgramRun, type_: str, parent_name: str) -> Registration:
    parent = run.named(parent_name)
    return next(r for r in run.registrations if r.type == type_ and r.parent == parent.urn)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
@pytest.mark.parametrize("preview", [True, False], ids=["preview", "update"])
def test_program_runs_in_both_modes(runs, stack: str, preview: bool) -> None:
    run = runs[(stack, preview)]

    assert run.of_type("kiln:serving:ServedModel")
    assert run.of_type("aws:lb/loadBalancer:LoadBalancer")


def test_capacity_plan_sets_autoscaling_group_sizes(runs) -> None:
    run = runs[("prod", False)]

    champion = child(run, GROUP, "fraud-scorer.champion")
    router = child(run, GROUP, "ticket-router.champion")

    assert (champion.inputs["minSize"], champion.inputs["maxSize"]) == (3, 6)
    assert (router.inputs["minSize"], router.inputs["maxSize"]) == (2, 8)
    assert child(run, LAUNCH_TEMPLATE, "ticket-router.champion").inputs["instanceType"] == "g5.xlarge"


def test_scale_to_zero_lets_the_group_reach_zero(runs) -> None:
    group = child(runs[("dev", False)], GROUP, "fraud-scorer.champion")

    assert group.inputs["minSize"] == 0
    assert group.inputs["maxSize"] == 4


def test_route_weights_reach_the_listener_rule(runs) -> None:
    run = runs[("prod", False)]
    rule = child(run, "aws:lb/listenerRule:ListenerRule", "fraud-scorer")
    groups = {
        r.outputs["arn"]: r.parent for r in run.of_type(TARGET_GROUP)
    }

    forward = rule.inputs["actions"][0]["forward"]["targetGroups"]
    weights = {run_name(run, groups[g["arn"]]): g["weight"] for g in forward}

    assert weights == {"fraud-scorer.champion": 90, "fraud-scorer.challenger": 10}
    assert rule.inputs["conditions"][0]["pathPattern"]["values"] == ["/serving-endpoints/fraud-scorer/invocations"]


def run_name(run: ProgramRun, urn: str) -> str:
    return next(r.name for r in run.registrations if r.urn == urn)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_launch_templates_require_imdsv2_and_encrypted_gp3_roots(runs, stack: str) -> None:
    for template in runs[(stack, False)].of_type(LAUNCH_TEMPLATE):
        assert template.inputs["metadataOptions"]["httpTokens"] == "required"
        ebs = template.inputs["blockDeviceMappings"][0]["ebs"]
        assert (ebs["encrypted"], ebs["volumeType"]) == ("true", "gp3")


def test_gpu_served_models_boot_the_gpu_ami_with_a_bigger_root(runs) -> None:
    run = runs[("prod", False)]
    gpu = child(run, LAUNCH_TEMPLATE, "ticket-router.champion").inputs
    cpu = child(run, LAUNCH_TEMPLATE, "fraud-scorer.champion").inputs

    # The ids stacks/Pulumi.prod.yaml pins per compute class, not an SSM lookup.
    assert (gpu["imageId"], cpu["imageId"]) == ("ami-0a1b2c3d4e5f60002", "ami-0a1b2c3d4e5f60001")
    assert gpu["blockDeviceMappings"][0]["ebs"]["volumeSize"] > cpu["blockDeviceMappings"][0]["ebs"]["volumeSize"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_target_groups_health_check_the_readiness_path(runs, stack: str) -> None:
    for group in instance_target_groups(runs[(stack, False)]):
        assert group.inputs["healthCheck"]["path"] == "/ping"
        assert group.inputs["healthCheck"]["matcher"] == "200"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_groups_trust_elb_health_and_roll_back_failed_refreshes(runs, stack: str) -> None:
    for group in runs[(stack, False)].of_type(GROUP):
        preferences = group.inputs["instanceRefresh"]["preferences"]
        assert group.inputs["healthCheckType"] == "ELB"
        assert preferences["autoRollback"] is True
        assert (preferences["minHealthyPercentage"], preferences["maxHealthyPercentage"]) == (100, 200)
        assert group.options["ignoreChanges"] == ["desiredCapacity"]


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_alb_idle_timeout_exceeds_every_request_timeout(runs, stack: str) -> None:
    run = runs[(stack, False)]
    [balancer] = run.of_type("aws:lb/loadBalancer:LoadBalancer")
    timeouts = [r.inputs["requestTimeoutSeconds"] for r in run.of_type("kiln:serving:ServedModel")]

    assert balancer.inputs["idleTimeout"] > max(timeouts)


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_aws_names_stay_within_32_characters(runs, stack: str) -> None:
    run = runs[(stack, False)]
    names = [r.inputs["name"] for r in run.of_type(TARGET_GROUP) + run.of_type("aws:lb/loadBalancer:LoadBalancer")]

    assert all(len(name) <= 32 for name in names)
    assert len(set(names)) == len(names)


def test_prod_gateway_is_internal_https_with_a_redirect(runs) -> None:
    run = runs[("prod", False)]
    listeners = {r.inputs["port"]: r.inputs for r in run.of_type("aws:lb/listener:Listener")}
    [balancer] = run.of_type("aws:lb/loadBalancer:LoadBalancer")

    assert balancer.inputs["internal"] is True
    assert listeners[443]["protocol"] == "HTTPS"
    assert listeners[443]["certificateArn"].startswith("arn:aws:acm:")
    assert listeners[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"


def test_instances_accept_traffic_only_from_the_gateway(runs) -> None:
    run = runs[("prod", False)]
    alb_group = run.named("gateway-alb-sg")
    instance_group = run.named("gateway-instance-sg")
    ingress = [
        r.inputs
        for r in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == instance_group.outputs["id"]
    ]

    assert ingress == [
        {
            "securityGroupId": instance_group.outputs["id"],
            "ipProtocol": "tcp",
            "fromPort": 8080,
            "toPort": 8080,
            "referencedSecurityGroupId": alb_group.outputs["id"],
        }
    ]


def test_artifact_bucket_is_private_encrypted_versioned_and_tls_only(runs) -> None:
    run = runs[("prod", False)]
    block = child(run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "artifacts").inputs
    encryption = child(run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "artifacts")
    versioning = child(run, "aws:s3/bucketVersioning:BucketVersioning", "artifacts")
    policy = json.loads(child(run, "aws:s3/bucketPolicy:BucketPolicy", "artifacts").inputs["policy"])

    assert all(block[key] is True for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def user_data(run: ProgramRun, served_model: str) -> str:
    return base64.b64decode(child(run, LAUNCH_TEMPLATE, served_model).inputs["userData"]).decode()


def test_user_data_runs_the_baked_image_with_the_model_digest(runs) -> None:
    run = runs[("prod", False)]
    props = run.named("fraud-scorer.champion").inputs
    script = user_data(run, "fraud-scorer.champion")

    [build] = [r for r in run.of_type("pulumi-python:dynamic/kiln:ImageBuild") if r.inputs["imageTag"] == props["imageTag"]]
    assert f'docker pull "{build.outputs["imageUri"]}"' in script  # pinned by digest, not by tag
    assert "@sha256:" in build.outputs["imageUri"]
    assert f"KILN_MODEL_URI=s3://{run.outputs['artifactBucket']}/models/{props['artifactDigest']}/" in script
    assert "KILN_WORKERS=3" in script
    assert "LOG_LEVEL=info" in script
    assert "--gpus all" not in script
    assert "--gpus all" in user_data(run, "ticket-router.champion")


def test_user_data_names_the_registry_model_and_version_for_the_version_endpoint(runs) -> None:
    run = runs[("prod", False)]
    script = user_data(run, "fraud-scorer.champion")

    assert run.named("fraud-scorer.champion").inputs["resolvedModelUri"] == "models:/fraud-scorer/1"
    assert "\nKILN_MODEL_NAME=fraud-scorer\n" in script
    assert "\nKILN_MODEL_VERSION=1\n" in script


def test_user_data_gives_the_container_the_instance_region(runs) -> None:
    script = user_data(runs[("prod", False)], "fraud-scorer.champion")

    assert """printf 'AWS_REGION=%s\\nAWS_DEFAULT_REGION=%s\\n' "${region}" "${region}" >> /etc/kiln-runtime.env""" in script
    assert script.index(">> /etc/kiln-runtime.env") < script.index("docker create")


def test_model_versions_with_the_same_environment_share_one_image(runs) -> None:
    run = runs[("prod", False)]
    champion = run.named("fraud-scorer.champion").inputs
    challenger = run.named("fraud-scorer.challenger").inputs

    assert champion["resolvedModelUri"] != challenger["resolvedModelUri"]
    assert champion["artifactDigest"] != challenger["artifactDigest"]
    assert champion["imageTag"] == challenger["imageTag"]


def test_instance_role_reads_only_its_own_model_files(runs) -> None:
    run = runs[("prod", False)]
    props = run.named("fraud-scorer.champion").inputs
    policy = json.loads(child(run, "aws:iam/rolePolicy:RolePolicy", "fraud-scorer.champion").inputs["policy"])
    [read] = [s for s in policy["Statement"] if s["Sid"] == "ReadModelArtifact"]

    assert read["Resource"].endswith(f"/models/{props['artifactDigest']}/*")


def test_preview_leaves_computed_values_unknown(runs) -> None:
    run = runs[("prod", True)]

    assert run.outputs["artifactBucket"] == UNKNOWN
    assert "userData" not in child(run, LAUNCH_TEMPLATE, "fraud-scorer.champion").inputs or (
        child(run, LAUNCH_TEMPLATE, "fraud-scorer.champion").inputs["userData"] == UNKNOWN
    )


def test_stack_outputs_name_endpoint_urls_and_sizes(runs) -> None:
    outputs = runs[("prod", False)].outputs

    assert outputs["endpoints"]["ticket-router"].startswith("https://")
    assert outputs["endpoints"]["ticket-router"].endswith("/serving-endpoints/ticket-router/invocations")
    assert outputs["servedModels"]["fraud-scorer.champion"] == {"instanceType": "c7i.4xlarge", "minInstances": 3, "maxInstances": 6}


def long_named_stack(store) -> dict[str, Any]:
    config = stack_config("dev", store)
    served = config["kiln:endpoints"][0]["servedModels"][0]
    config["kiln:endpoints"] = [
        {
            "name": "customer-lifetime-value-forecaster",
            "servedModels": [
                {**served, "name": "gradient-boosted-trees-2026-q3"},
                {**served, "name": "gradient-boosted-trees-2026-q4"},
            ],
            "trafficConfig": {
                "routes": [
                    {"servedModelName": "gradient-boosted-trees-2026-q3", "trafficPercentage": 50},
                    {"servedModelName": "gradient-boosted-trees-2026-q4", "trafficPercentage": 50},
                ]
            },
        }
    ]
    return config


def test_long_names_are_shortened_without_colliding(example_store) -> None:
    run = run_program("dev", long_named_stack(example_store), preview=False)
    names = [r.inputs["name"] for r in instance_target_groups(run)]

    assert all(len(name) <= 32 for name in names)
    assert len(set(names)) == 2
    assert all(name.startswith("kiln-dev-custom") for name in names)


def test_unresolvable_model_stops_the_program_naming_the_uri(example_store) -> None:
    config = stack_config("dev", example_store)
    config["kiln:endpoints"][0]["servedModels"][0]["modelUri"] = "models:/no-such-model@champion"

    with pytest.raises(ModelResolutionError, match="models:/no-such-model@champion"):
        run_program("dev", config, preview=True)


def test_what_acts_with_a_role_as_it_is_created_waits_for_the_role_policy(runs) -> None:
    """A role can exist before its inline policy: a Lambda in a VPC creates its network
    interfaces, an instance fetches its model at boot and a build starts with the role's
    permissions, so each depends on the policy, and a group on the rollout alarm it names."""
    run = runs[("dev", False)]
    policy_of = {p.parent: p.urn for p in run.of_type(ROLE_POLICY)}
    functions, groups = run.of_type("aws:lambda/function:Function"), run.of_type(GROUP)
    [build_policy] = [p.urn for p in run.of_type(ROLE_POLICY) if p.name.endswith("-build-least-privilege")]
    builds = run.of_type("pulumi-python:dynamic/kiln:ImageBuild")

    assert functions and groups and builds
    for resource in functions + groups:
        assert policy_of[resource.parent] in resource.dependencies, resource.name
    for build in builds:
        assert build_policy in build.dependencies, build.name
    for group in groups:
        [alarm] = [a.urn for a in run.of_type(ALARM) if a.parent == group.parent and a.name.endswith("-rollout-5xx")]
        assert alarm in group.dependencies, group.name


def test_the_mocks_autoname_as_the_provider_does_without_cleaning(runs) -> None:
    """A name AWS would refuse must not be tidied up offline: `<logical name>-<7 hex>`, as is."""
    run = runs[("dev", False)]
    role = next(r for r in run.of_type("aws:iam/role:Role") if "." in r.name)

    assert role.outputs["name"].startswith(f"{role.name}-")
    assert len(role.outputs["name"]) == len(role.name) + 8
    assert all(f.outputs["name"].replace("-", "").replace("_", "").isalnum()
               for f in run.of_type("aws:lambda/function:Function"))

"""Each rule on its own: a passing and a violating resource, shaped like the program's own.

Resource properties come from a real run of the prod stack (the inputs/outputs the engine
would send), bent one property at a time; CodeBuild, which the program does not create
yet, uses the properties pulumi_aws registers for it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from infra.plan.catalog import CPU_AMI_PARAMETER, GPU_AMI_PARAMETER
from infra.preview.program import ProgramRun, Registration, run_program
from policies.rules import RULES, budget, compute, gateway, network, readiness, scaling, served_models, storage
from policies.rules.resource_types import (
    AUTOSCALING_GROUP,
    BUCKET,
    BUCKET_ENCRYPTION,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS_BLOCK,
    BUCKET_VERSIONING,
    CODEBUILD_PROJECT,
    INGRESS_RULE,
    LAUNCH_TEMPLATE,
    LISTENER,
    LISTENER_RULE,
    LOAD_BALANCER,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
    SERVED_MODEL,
    TARGET_GROUP,
)
from policies.rules.rule import ENVIRONMENTS, Resource, ResourceRule, StackRule
from tests.conftest import stack_config


@pytest.fixture(scope="module")
def prod_run(example_store: Any) -> ProgramRun:
    return run_program("prod", stack_config("prod", example_store), preview=False)


def inputs(run: ProgramRun, type_: str, name_part: str = "") -> dict[str, Any]:
    registration = next(r for r in run.registrations if r.type == type_ and name_part in r.name)
    return copy.deepcopy(registration.inputs)


def as_resource(registration: Registration) -> Resource:
    return Resource(
        type=registration.type,
        urn=registration.urn,
        name=registration.name,
        props=copy.deepcopy(registration.outputs),
        parent=registration.parent,
        property_dependencies=registration.property_dependencies,
    )


def resources(run: ProgramRun) -> list[Resource]:
    return [as_resource(r) for r in run.registrations]


def bend(items: list[Resource], type_: str, change: Callable[[dict[str, Any]], None], name_part: str = "") -> list[Resource]:
    """The stack with one resource's props changed in place (on a copy)."""
    bent = []
    for resource in items:
        if resource.type == type_ and name_part in resource.name:
            props = copy.deepcopy(dict(resource.props))
            change(props)
            resource = Resource(resource.type, resource.urn, resource.name, props, resource.parent, resource.property_dependencies)
        bent.append(resource)
    return bent


def without(items: list[Resource], type_: str) -> list[Resource]:
    return [r for r in items if r.type != type_]


# ------------------------------------------------------------------ the rule table


def test_every_rule_has_an_id_a_level_per_environment_and_a_fix() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert set(rule.levels) == set(ENVIRONMENTS), rule.id
        assert rule.description and rule.fix, rule.id
        for spec in rule.config.values():
            assert "default" in spec, rule.id


def test_rules_never_import_pulumi() -> None:
    from pathlib import Path

    modules = sorted((Path(__file__).resolve().parents[2] / "policies" / "rules").glob("*.py"))

    assert len(modules) > 5
    for module in modules:
        text = module.read_text()
        assert "import pulumi" not in text and "from pulumi" not in text, module.name


# ------------------------------------------------------------------ served models


def test_no_scale_to_zero_passes_a_warm_served_model(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion")
    assert scaling.NO_SCALE_TO_ZERO.check(SERVED_MODEL, props) == []


def test_no_scale_to_zero_flags_scale_to_zero(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion") | {"scaleToZeroEnabled": True, "minInstances": 0}
    [message] = scaling.NO_SCALE_TO_ZERO.check(SERVED_MODEL, props)
    assert "fraud-scorer/champion scales to zero" in message and "scaleToZeroEnabled: false" in message


def test_no_scale_to_zero_is_mandatory_only_in_prod() -> None:
    assert dict(scaling.NO_SCALE_TO_ZERO.levels) == {"dev": "advisory", "staging": "advisory", "prod": "mandatory"}


def test_instance_type_allowed_passes_the_planned_type(prod_run: ProgramRun) -> None:
    assert compute.INSTANCE_TYPE_ALLOWED.check(SERVED_MODEL, inputs(prod_run, SERVED_MODEL, "ticket-router")) == []


def test_instance_type_allowed_flags_a_cpu_type_on_gpu_compute(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "ticket-router") | {"instanceType": "c7i.xlarge"}
    [message] = compute.INSTANCE_TYPE_ALLOWED.check(SERVED_MODEL, props)
    assert "'c7i.xlarge' is not allowed for GPU_MEDIUM" in message and "g5.xlarge" in message


def test_gpu_ami_passes_gpu_compute_on_the_deep_learning_ami(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "ticket-router")
    assert props["amiParameter"] == GPU_AMI_PARAMETER
    assert compute.GPU_AMI.check(SERVED_MODEL, props) == []


def test_gpu_ami_flags_gpu_compute_on_the_plain_ami(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "ticket-router") | {"amiParameter": CPU_AMI_PARAMETER}
    [message] = compute.GPU_AMI.check(SERVED_MODEL, props)
    assert "not a GPU AMI" in message and GPU_AMI_PARAMETER in message


def test_gpu_ami_accepts_an_ami_listed_in_config(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "ticket-router") | {"amiParameter": "/org/gpu-ami"}
    assert compute.GPU_AMI.check(SERVED_MODEL, props, {"gpuAmiParameters": ["/org/gpu-ami"]}) == []


def _packaging_rule(rule_id: str) -> Any:
    return next(rule for rule in served_models.PACKAGING if rule.id == rule_id)


def test_model_signature_passes_a_model_with_signature(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion")
    assert _packaging_rule("model-signature").check(SERVED_MODEL, props) == []


def test_conda_defaults_channel_passes_conda_forge(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion")
    assert _packaging_rule("no-conda-defaults-channel").check(SERVED_MODEL, props) == []


def test_request_timeout_passes_597_seconds(prod_run: ProgramRun) -> None:
    assert gateway.REQUEST_TIMEOUT.check(SERVED_MODEL, inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion")) == []


def test_request_timeout_advises_above_597_seconds(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion") | {"requestTimeoutSeconds": 900}
    [message] = gateway.REQUEST_TIMEOUT.check(SERVED_MODEL, props)
    assert "900 is above 597 s" in message


def test_capacity_covers_peak_passes_the_planned_capacity(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion")
    assert props["expectedPeakConcurrency"] == 8  # 200 QPS × 40 ms
    assert scaling.CAPACITY_COVERS_PEAK.check(SERVED_MODEL, props) == []


def test_capacity_covers_peak_advises_when_max_is_below_peak(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, SERVED_MODEL, "fraud-scorer.champion") | {"maxInstances": 2}
    [message] = scaling.CAPACITY_COVERS_PEAK.check(SERVED_MODEL, props)
    assert "max concurrency 6" in message and "expected peak 8" in message


# ------------------------------------------------------------------ instances


def test_imdsv2_passes_required_tokens(prod_run: ProgramRun) -> None:
    assert compute.IMDSV2.check(LAUNCH_TEMPLATE, inputs(prod_run, LAUNCH_TEMPLATE)) == []


def test_imdsv2_flags_optional_tokens(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, LAUNCH_TEMPLATE)
    props["metadataOptions"]["httpTokens"] = "optional"
    [message] = compute.IMDSV2.check(LAUNCH_TEMPLATE, props)
    assert "'optional'" in message and "http_tokens='required'" in message


def test_encrypted_root_volume_passes_encrypted_ebs(prod_run: ProgramRun) -> None:
    assert compute.ENCRYPTED_ROOT_VOLUME.check(LAUNCH_TEMPLATE, inputs(prod_run, LAUNCH_TEMPLATE)) == []


def test_encrypted_root_volume_flags_unencrypted_ebs(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, LAUNCH_TEMPLATE)
    props["blockDeviceMappings"][0]["ebs"]["encrypted"] = "false"
    [message] = compute.ENCRYPTED_ROOT_VOLUME.check(LAUNCH_TEMPLATE, props)
    assert "/dev/xvda is not encrypted" in message


def test_encrypted_root_volume_flags_a_template_without_mappings(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, LAUNCH_TEMPLATE)
    del props["blockDeviceMappings"]
    [message] = compute.ENCRYPTED_ROOT_VOLUME.check(LAUNCH_TEMPLATE, props)
    assert "no blockDeviceMappings" in message


def test_readiness_passes_ping_and_elb_checks(prod_run: ProgramRun) -> None:
    rule = readiness.READINESS_HEALTH_CHECKS
    assert rule.check(TARGET_GROUP, inputs(prod_run, TARGET_GROUP)) == []
    assert rule.check(AUTOSCALING_GROUP, inputs(prod_run, AUTOSCALING_GROUP)) == []


def test_readiness_flags_a_target_group_probing_root(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, TARGET_GROUP)
    props["healthCheck"]["path"] = "/"
    [message] = readiness.READINESS_HEALTH_CHECKS.check(TARGET_GROUP, props)
    assert "probes '/'" in message and "'/ping'" in message


def test_readiness_flags_a_group_on_ec2_health_checks(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, AUTOSCALING_GROUP) | {"healthCheckType": "EC2"}
    [message] = readiness.READINESS_HEALTH_CHECKS.check(AUTOSCALING_GROUP, props)
    assert "'EC2'" in message and "health_check_type='ELB'" in message


def test_instance_refresh_passes_rollback_and_full_health(prod_run: ProgramRun) -> None:
    assert scaling.INSTANCE_REFRESH.check(AUTOSCALING_GROUP, inputs(prod_run, AUTOSCALING_GROUP)) == []


def test_instance_refresh_flags_no_rollback_and_partial_health(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, AUTOSCALING_GROUP)
    props["instanceRefresh"]["preferences"].update(autoRollback=False, minHealthyPercentage=90)
    messages = scaling.INSTANCE_REFRESH.check(AUTOSCALING_GROUP, props)
    assert len(messages) == 2
    assert "autoRollback is off" in messages[0] and "minHealthyPercentage is 90" in messages[1]


def test_multi_az_passes_two_subnets(prod_run: ProgramRun) -> None:
    assert scaling.MULTI_AZ.check(AUTOSCALING_GROUP, inputs(prod_run, AUTOSCALING_GROUP)) == []


def test_multi_az_advises_one_subnet(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, AUTOSCALING_GROUP)
    props["vpcZoneIdentifiers"] = props["vpcZoneIdentifiers"][:1]
    [message] = scaling.MULTI_AZ.check(AUTOSCALING_GROUP, props)
    assert "1 subnet(s)" in message


def test_traffic_weights_pass_90_10(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, LISTENER_RULE, "fraud-scorer")
    assert [g["weight"] for g in props["actions"][0]["forward"]["targetGroups"]] == [90, 10]
    assert served_models.TRAFFIC_WEIGHTS.check(LISTENER_RULE, props) == []


def test_traffic_weights_flag_a_sum_other_than_100(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, LISTENER_RULE, "fraud-scorer")
    props["actions"][0]["forward"]["targetGroups"][1]["weight"] = 20
    [message] = served_models.TRAFFIC_WEIGHTS.check(LISTENER_RULE, props)
    assert "90 + 20 = 110, not 100" in message


def test_build_timeout_passes_60_minutes() -> None:
    assert budget.BUILD_TIMEOUT.check(CODEBUILD_PROJECT, {"name": "kiln-prod-images", "buildTimeout": 60}) == []


def test_build_timeout_flags_a_longer_build() -> None:
    [message] = budget.BUILD_TIMEOUT.check(CODEBUILD_PROJECT, {"name": "kiln-prod-images", "buildTimeout": 120})
    assert "120 min, above the 60 min limit" in message


def test_build_timeout_follows_the_configured_limit() -> None:
    props = {"name": "kiln-prod-images", "buildTimeout": 120}
    assert budget.BUILD_TIMEOUT.check(CODEBUILD_PROJECT, props, {"maxBuildTimeoutMinutes": 180}) == []


# ------------------------------------------------------------------ network


def test_no_ssh_passes_the_gateway_rules(prod_run: ProgramRun) -> None:
    for registration in prod_run.of_type(INGRESS_RULE):
        assert network.NO_SSH.check(INGRESS_RULE, registration.inputs) == [], registration.name


def test_no_ssh_flags_port_22_from_anywhere(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, INGRESS_RULE, "alb-in-443") | {"fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}
    [message] = network.NO_SSH.check(INGRESS_RULE, props)
    assert "tcp 22-22 from 0.0.0.0/0 opens SSH" in message and "Session Manager" in message


def test_no_ssh_flags_all_protocols_and_inline_and_legacy_rules() -> None:
    assert network.NO_SSH.check(INGRESS_RULE, {"ipProtocol": "-1", "referencedSecurityGroupId": "sg-1"})
    assert network.NO_SSH.check(SECURITY_GROUP, {"ingress": [{"protocol": "tcp", "fromPort": 0, "toPort": 1024}]})
    assert network.NO_SSH.check(SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22})
    assert network.NO_SSH.check(SECURITY_GROUP_RULE, {"type": "egress", "protocol": "tcp", "fromPort": 22, "toPort": 22}) == []


def test_instance_ingress_passes_gateway_only(prod_run: ProgramRun) -> None:
    assert network.INSTANCE_INGRESS.check(resources(prod_run)) == []


def test_instance_ingress_flags_a_cidr_on_the_instance_group(prod_run: ProgramRun) -> None:
    stack = bend(resources(prod_run), INGRESS_RULE, lambda p: p.update(cidrIpv4="0.0.0.0/0"), "instances-from-alb")
    [violation] = network.INSTANCE_INGRESS.check(stack)
    assert violation.urn.endswith("::gateway-instances-from-alb")
    assert "0.0.0.0/0" in violation.message and "gateway's security group" in violation.message


def test_instance_ingress_allows_open_cidrs_on_the_load_balancer(prod_run: ProgramRun) -> None:
    stack = bend(resources(prod_run), INGRESS_RULE, lambda p: p.update(cidrIpv4="0.0.0.0/0"), "alb-in-443")
    assert network.INSTANCE_INGRESS.check(stack) == []


# ------------------------------------------------------------------ gateway


def test_idle_timeout_passes_602_over_597(prod_run: ProgramRun) -> None:
    assert gateway.IDLE_TIMEOUT.check(resources(prod_run)) == []


def test_idle_timeout_flags_the_alb_default(prod_run: ProgramRun) -> None:
    stack = bend(resources(prod_run), LOAD_BALANCER, lambda p: p.pop("idleTimeout"))
    [violation] = gateway.IDLE_TIMEOUT.check(stack)
    assert violation.urn.endswith("::gateway-alb")
    assert "idleTimeout 60 s is not above the longest request timeout 597 s" in violation.message


def test_https_passes_an_internal_gateway(prod_run: ProgramRun) -> None:
    assert gateway.TLS_WHEN_INTERNET_FACING.check(resources(prod_run)) == []


def test_https_passes_an_internet_facing_gateway_with_https_and_redirect(prod_run: ProgramRun) -> None:
    stack = bend(resources(prod_run), LOAD_BALANCER, lambda p: p.update(internal=False))
    assert gateway.TLS_WHEN_INTERNET_FACING.check(stack) == []


def test_https_flags_an_internet_facing_gateway_on_plain_http(prod_run: ProgramRun) -> None:
    def plain_http(props: dict[str, Any]) -> None:
        props.update(protocol="HTTP", port=80, defaultActions=[{"type": "fixed-response"}])
        props.pop("certificateArn", None)

    stack = bend(resources(prod_run), LOAD_BALANCER, lambda p: p.update(internal=False))
    stack = bend(stack, LISTENER, plain_http, "https")
    messages = [v.message for v in gateway.TLS_WHEN_INTERNET_FACING.check(stack)]
    assert any("speaks HTTP on an internet-facing load balancer" in m for m in messages)
    assert any("internet-facing without an HTTPS listener" in m for m in messages)


# ------------------------------------------------------------------ artifact store


def test_s3_rules_pass_the_artifact_store(prod_run: ProgramRun) -> None:
    stack = resources(prod_run)
    for rule in storage.RULES:
        assert rule.check(stack) == [], rule.id


@pytest.mark.parametrize(
    ("rule", "change", "expected"),
    [
        (storage.BLOCK_PUBLIC_ACCESS, lambda s: bend(s, BUCKET_PUBLIC_ACCESS_BLOCK, lambda p: p.update(restrictPublicBuckets=False)), "restrictPublicBuckets off"),
        (storage.BLOCK_PUBLIC_ACCESS, lambda s: without(s, BUCKET_PUBLIC_ACCESS_BLOCK), "no BucketPublicAccessBlock"),
        (storage.ENCRYPTION, lambda s: without(s, BUCKET_ENCRYPTION), "no default server-side encryption"),
        (storage.VERSIONING, lambda s: bend(s, BUCKET_VERSIONING, lambda p: p["versioningConfiguration"].update(status="Suspended")), "versioning is not enabled"),
        (storage.TLS_ONLY, lambda s: bend(s, BUCKET_POLICY, lambda p: p.update(policy=json.dumps({"Statement": []}))), "no bucket policy denies requests without TLS"),
        (storage.TLS_ONLY, lambda s: without(s, BUCKET_POLICY), "no bucket policy denies requests without TLS"),
    ],
)
def test_s3_rules_flag_a_missing_setting(prod_run: ProgramRun, rule: StackRule, change: Callable, expected: str) -> None:
    # Prod has two buckets (artifacts, gateway access logs); a change to every bucket's setting flags both.
    [violation] = [v for v in rule.check(change(resources(prod_run))) if v.urn.endswith("::artifacts-bucket")]
    assert expected in violation.message


def test_s3_settings_count_only_for_their_own_bucket(prod_run: ProgramRun) -> None:
    stack = resources(prod_run)
    other = Resource(BUCKET, "urn:pulumi:prod::kiln::aws:s3/bucket:Bucket::other", "other", {})
    violations = storage.VERSIONING.check([*stack, other])
    assert [v.urn for v in violations] == [other.urn]


# ------------------------------------------------------------------ cost


def test_cost_budget_passes_prod_under_the_default_budget(prod_run: ProgramRun) -> None:
    assert budget.COST_BUDGET.check(resources(prod_run)) == []


def test_cost_budget_flags_prod_over_a_small_budget(prod_run: ProgramRun) -> None:
    [violation] = budget.COST_BUDGET.check(resources(prod_run), {"maxHourlyCostUsd": 10})
    # 4 × c7i.2xlarge + 6 × c7i.4xlarge + 8 × g5.xlarge = 13.76, and at max ticket-router's warm
    # pool keeps its minSize 1 stopped: a 100 GiB gp3 volume with 225 MiB/s over the baseline,
    # (100 × 0.08 + 225 × 0.04) / 730 = 0.0233/h.
    assert "max hourly cost $13.78 is over the $10.00 budget" in violation.message
    assert "warm pool 1 stopped × volumes $0.0233" in violation.message


def test_cost_budget_flags_an_instance_type_it_cannot_price(prod_run: ProgramRun) -> None:
    stack = bend(resources(prod_run), LAUNCH_TEMPLATE, lambda p: p.update(instanceType="x9.huge"), "ticket-router")
    [violation] = budget.COST_BUDGET.check(stack)
    assert "'x9.huge' has no price" in violation.message and violation.urn.endswith("::ticket-router.champion-asg")


# ------------------------------------------------------------------ what production passes in


def test_rules_read_the_packs_unknown_checking_proxy(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, LAUNCH_TEMPLATE)
    props["metadataOptions"]["httpTokens"] = "optional"
    assert compute.IMDSV2.check(LAUNCH_TEMPLATE, unknown_checking_proxy(props))


def test_a_rule_touching_an_unknown_value_raises_instead_of_passing(prod_run: ProgramRun) -> None:
    props = inputs(prod_run, LAUNCH_TEMPLATE)
    props["metadataOptions"]["httpTokens"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    with pytest.raises(UnknownValueError):
        compute.IMDSV2.check(LAUNCH_TEMPLATE, unknown_checking_proxy(props))


def test_resource_rules_ignore_other_types(prod_run: ProgramRun) -> None:
    rule: ResourceRule = compute.IMDSV2
    assert rule.check(TARGET_GROUP, {"healthCheck": {"path": "/"}}) == []


# ------------------------------------------------------------------ scale-to-zero activator


@pytest.fixture(scope="module")
def dev_run(example_store: Any) -> ProgramRun:
    """The dev stack scales to zero, so it carries an activator (a Lambda behind the ALB)."""
    return run_program("dev", stack_config("dev", example_store), preview=False)


def test_readiness_leaves_the_activator_lambda_target_group_alone(dev_run: ProgramRun) -> None:
    [activator_group] = [r for r in dev_run.of_type(TARGET_GROUP) if r.inputs.get("targetType") == "lambda"]
    assert readiness.READINESS_HEALTH_CHECKS.check(TARGET_GROUP, activator_group.inputs) == []


def test_instance_ingress_accepts_the_activator_but_not_other_groups(dev_run: ProgramRun) -> None:
    stack = resources(dev_run)
    assert network.INSTANCE_INGRESS.check(stack) == []
    # The same ingress rule, once its source is no longer the activator function's group, is refused.
    functions = [r for r in stack if r.type == "aws:lambda/function:Function"]
    unlinked = [
        Resource(r.type, r.urn, r.name, r.props, r.parent, {k: v for k, v in r.property_dependencies.items() if k != "vpcConfig"})
        if r in functions else r
        for r in stack
    ]
    [violation] = network.INSTANCE_INGRESS.check(unlinked)
    assert "neither the gateway's nor an activator's" in violation.message

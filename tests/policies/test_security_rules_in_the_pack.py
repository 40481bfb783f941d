"""The security rules fed resources that break them, through the analyzer gRPC interface as
the engine drives the pack: the prod program with one resource bent (or one added that stack
config can never produce), so each variant a crafted resource could slip past is shown to fire.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from infra.preview.policy_pack import check_policies
from infra.preview.program import ProgramRun, Registration, run_program
from policies.rules.resource_types import (
    BUCKET,
    BUCKET_POLICY,
    INGRESS_RULE,
    LAUNCH_TEMPLATE,
    LOAD_BALANCER,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
    SERVED_MODEL,
)
from tests.conftest import stack_config
from tests.policies.test_policy_pack import without_known_advice


@pytest.fixture(scope="module")
def prod(example_store: Any) -> tuple[ProgramRun, dict[str, Any]]:
    config = stack_config("prod", example_store)
    return without_known_advice(run_program("prod", config, preview=False)), config


def one(run: ProgramRun, type_: str, name_part: str = "") -> Registration:
    return next(r for r in run.registrations if r.type == type_ and name_part in r.name)


def bent(run: ProgramRun, registration: Registration, **props: Any) -> ProgramRun:
    """The run with one resource's inputs and outputs changed (resource rules read inputs,
    stack rules the final state)."""
    changed = copy.deepcopy(registration)
    changed.inputs.update(props)
    changed.outputs.update(props)
    return dataclasses.replace(run, registrations=[changed if r.urn == registration.urn else r for r in run.registrations])


def added(run: ProgramRun, type_: str, name: str, props: dict[str, Any]) -> tuple[ProgramRun, str]:
    """The run with one more custom resource, as the engine would register it."""
    urn = f"urn:pulumi:prod::kiln::{type_}::{name}"
    registration = Registration(type=type_, name=name, urn=urn, parent="", custom=True, inputs=props, outputs=props,
                                options={}, dependencies=[], property_dependencies={})
    return dataclasses.replace(run, registrations=[*run.registrations, registration]), urn


def violations(run: ProgramRun, config: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(v.policy, v.level, v.urn) for v in check_policies(run, config).violations]


# ------------------------------------------------------------------ encrypted-root-volume


def test_a_launch_template_mapping_only_a_data_volume_leaves_the_root_unencrypted(prod: Any) -> None:
    run, config = prod
    template = one(run, LAUNCH_TEMPLATE)
    data_volume = [{"deviceName": "/dev/sdf", "ebs": {"volumeSize": 10, "encrypted": "true"}}]

    result = check_policies(bent(run, template, blockDeviceMappings=data_volume), config)

    [violation] = result.violations
    assert (violation.policy, violation.level, violation.urn) == ("encrypted-root-volume", "mandatory", template.urn)
    assert "no block device mapping for the root device (/dev/xvda or /dev/sda1), only for /dev/sdf" in violation.message


# ------------------------------------------------------------------ imdsv2-required


@pytest.mark.parametrize("hops", [3, 64])
def test_a_hop_limit_above_2_lets_the_metadata_token_leave_the_instance(prod: Any, hops: int) -> None:
    run, config = prod
    template = one(run, LAUNCH_TEMPLATE)
    metadata = {**template.inputs["metadataOptions"], "httpPutResponseHopLimit": hops}

    result = check_policies(bent(run, template, metadataOptions=metadata), config)

    [violation] = result.violations
    assert (violation.policy, violation.urn) == ("imdsv2-required", template.urn)
    assert f"httpPutResponseHopLimit is {hops}; set it to at most 2" in violation.message
    assert "Docker bridge" in violation.message


def test_the_planned_hop_limit_of_2_passes(prod: Any) -> None:
    run, config = prod
    assert one(run, LAUNCH_TEMPLATE).inputs["metadataOptions"]["httpPutResponseHopLimit"] == 2
    assert violations(run, config) == []


# ------------------------------------------------------------------ s3-tls-only


def _tls_policy(resources: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": resources,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})


def test_a_tls_deny_on_the_bucket_but_not_its_objects_fails(prod: Any) -> None:
    run, config = prod
    bucket = one(run, BUCKET, "artifacts")
    arn = bucket.outputs["arn"]

    found = violations(bent(run, one(run, BUCKET_POLICY, "artifacts-tls-only"), policy=_tls_policy(arn)), config)

    assert found == [("s3-tls-only", "mandatory", bucket.urn)]


@pytest.mark.parametrize("resources", ["{arn}*", "*", ["{arn}", "{arn}/*"]])
def test_a_tls_deny_covering_bucket_and_objects_passes(prod: Any, resources: Any) -> None:
    run, config = prod
    arn = one(run, BUCKET, "artifacts").outputs["arn"]
    spelled = [r.format(arn=arn) for r in resources] if isinstance(resources, list) else resources.format(arn=arn)

    assert violations(bent(run, one(run, BUCKET_POLICY, "artifacts-tls-only"), policy=_tls_policy(spelled)), config) == []


# ------------------------------------------------------------------ no-ssh-ingress


@pytest.mark.parametrize(("protocol", "from_port", "to_port"), [
    ("TCP", 22, 22),
    ("6", 0, 65535),
    (" tcp ", "22", "22"),
    ("ALL", None, None),
    ("-1", -1, -1),
    ("tcp", -1, -1),
])
def test_ssh_opened_in_any_spelling_aws_accepts_fails(prod: Any, protocol: str, from_port: Any, to_port: Any) -> None:
    run, config = prod
    rule = one(run, INGRESS_RULE, "alb-in-443")

    found = violations(bent(run, rule, ipProtocol=protocol, fromPort=from_port, toPort=to_port), config)

    assert ("no-ssh-ingress", "mandatory", rule.urn) in found


def test_https_from_strings_is_not_mistaken_for_ssh(prod: Any) -> None:
    run, config = prod
    rule = one(run, INGRESS_RULE, "alb-in-443")
    assert violations(bent(run, rule, ipProtocol="TCP", fromPort="443", toPort="443"), config) == []


def test_a_legacy_security_group_rule_opening_ssh_fails(prod: Any) -> None:
    """pulumi-aws's SecurityGroupRule: Kiln never declares one, a hand-added one is still caught."""
    run, config = prod
    run, urn = added(run, SECURITY_GROUP_RULE, "bastion", {
        "type": "ingress", "protocol": "Tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]})

    assert ("no-ssh-ingress", "mandatory", urn) in violations(run, config)


def test_an_inline_ingress_block_opening_ssh_fails(prod: Any) -> None:
    run, config = prod
    run, urn = added(run, SECURITY_GROUP, "inline", {
        "ingress": [{"protocol": "6", "fromPort": 20, "toPort": 30, "cidrBlocks": ["10.0.0.0/8"]}]})

    assert ("no-ssh-ingress", "mandatory", urn) in violations(run, config)


# ------------------------------------------------------------------ internet-facing-requires-auth


def test_an_internet_facing_gateway_in_front_of_an_endpoint_without_auth_fails_prod(prod: Any) -> None:
    run, config = prod
    open_run = bent(run, one(run, LOAD_BALANCER), internal=False)
    for registration in open_run.registrations:
        if registration.type == SERVED_MODEL and "ticket-router" not in registration.name:
            open_run = bent(open_run, registration, authRequired=True)
    served = one(open_run, SERVED_MODEL, "ticket-router")
    https_everywhere = {"internet-facing-requires-https"}

    in_prod = [v for v in violations(open_run, config) if v[0] not in https_everywhere]
    # A stack named prod keeps prod's levels whatever it declares, so dev's run as a dev stack.
    as_dev = dataclasses.replace(open_run, stack="dev")
    in_dev = [v for v in violations(as_dev, {**config, "kiln:environment": "dev"}) if v[0] not in https_everywhere]

    assert in_prod == [("internet-facing-requires-auth", "mandatory", served.urn)]
    assert in_dev == [("internet-facing-requires-auth", "advisory", served.urn)]


def test_an_internal_gateway_needs_no_auth(prod: Any) -> None:
    run, config = prod
    served = one(run, SERVED_MODEL, "ticket-router")
    assert served.outputs["authRequired"] is False
    assert violations(run, config) == []

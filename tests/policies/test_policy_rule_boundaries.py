"""Each resource rule at its edges, on plain dicts: the limit itself, one step either side,
every spelling AWS sends a checked value in, an absent property, and the exact message
(it is what a person reads to fix the stack).

The rule functions are `(props, config) -> list[str]`; `rule.check` adds the config
defaults the engine sends, a direct call shows what the function does without them.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan.catalog import CPU_AMI_PARAMETER, GPU_AMI_PARAMETER
from policies.rules import RULES, budget, compute, gateway, network, readiness, scaling, served_models
from policies.rules.resource_types import (
    AUTOSCALING_GROUP,
    CODEBUILD_PROJECT,
    INGRESS_RULE,
    LAUNCH_TEMPLATE,
    LISTENER_RULE,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
    SERVED_MODEL,
    TARGET_GROUP,
)
from policies.rules.rule import ADVISORY, Resource, items, level_for, of_type, prop, truthy, with_defaults

# ------------------------------------------------------------------ levels per environment

# What each rule costs a deploy, per environment (docs/policies.md): dev, staging, prod.
EXPECTED_LEVELS = {
    "no-scale-to-zero": ("advisory", "advisory", "mandatory"),
    "instance-refresh-rollback": ("advisory", "advisory", "mandatory"),
    "multi-az": ("advisory", "advisory", "advisory"),
    "capacity-covers-peak": ("advisory", "advisory", "advisory"),
    "alb-idle-timeout-above-request-timeout": ("mandatory", "mandatory", "mandatory"),
    "internet-facing-requires-https": ("mandatory", "mandatory", "mandatory"),
    "internet-facing-requires-auth": ("advisory", "advisory", "mandatory"),
    "alert-destination": ("disabled", "disabled", "mandatory"),
    "request-timeout-within-databricks": ("advisory", "advisory", "advisory"),
    "s3-block-public-access": ("mandatory", "mandatory", "mandatory"),
    "s3-encryption": ("mandatory", "mandatory", "mandatory"),
    "s3-versioning": ("mandatory", "mandatory", "mandatory"),
    "s3-tls-only": ("mandatory", "mandatory", "mandatory"),
    "imdsv2-required": ("mandatory", "mandatory", "mandatory"),
    "encrypted-root-volume": ("mandatory", "mandatory", "mandatory"),
    "instance-type-allowed": ("mandatory", "mandatory", "mandatory"),
    "gpu-instance-on-gpu-ami": ("mandatory", "mandatory", "mandatory"),
    "no-ssh-ingress": ("mandatory", "mandatory", "mandatory"),
    "instance-ingress-from-gateway-only": ("mandatory", "mandatory", "mandatory"),
    "readiness-health-checks": ("mandatory", "mandatory", "mandatory"),
    "model-signature": ("advisory", "advisory", "mandatory"),
    "no-conda-defaults-channel": ("advisory", "advisory", "mandatory"),
    "input-example-missing": ("advisory", "advisory", "advisory"),
    "requirements-missing": ("mandatory", "mandatory", "mandatory"),
    "requirements-unpinned": ("advisory", "advisory", "mandatory"),
    "dev-packages": ("advisory", "advisory", "advisory"),
    "mlflow-legacy": ("mandatory", "mandatory", "mandatory"),
    "python-unsupported": ("mandatory", "mandatory", "mandatory"),
    "gpu-framework-on-cpu": ("advisory", "advisory", "advisory"),
    "cpu-torch-on-gpu": ("mandatory", "mandatory", "mandatory"),
    "no-gpu-framework-on-gpu": ("advisory", "advisory", "advisory"),
    "resolved-elsewhere": ("advisory", "advisory", "advisory"),
    "gpu-driver-too-old": ("mandatory", "mandatory", "mandatory"),
    "gpu-two-cuda-stacks": ("advisory", "advisory", "advisory"),
    "memory-per-concurrency": ("mandatory", "mandatory", "mandatory"),
    "gpu-spread-unsupported": ("mandatory", "mandatory", "mandatory"),
    "image-disk-builder": ("mandatory", "mandatory", "mandatory"),
    "image-disk-instance": ("mandatory", "mandatory", "mandatory"),
    "build-time": ("mandatory", "mandatory", "mandatory"),
    "build-time-margin": ("advisory", "advisory", "advisory"),
    "traffic-weights-sum-to-100": ("mandatory", "mandatory", "mandatory"),
    "build-timeout-limit": ("mandatory", "mandatory", "mandatory"),
    "hourly-cost-budget": ("mandatory", "mandatory", "mandatory"),
}


def test_every_rule_has_its_documented_level_in_dev_staging_and_prod() -> None:
    actual = {rule.id: tuple(level_for(rule, env) for env in ("dev", "staging", "prod")) for rule in RULES}
    assert actual == EXPECTED_LEVELS


@pytest.mark.parametrize("environment", ["feature-x", "", "Prod", "production"])
def test_an_unknown_environment_gets_prods_levels(environment: str) -> None:
    actual = {rule.id: level_for(rule, environment) for rule in RULES}
    assert actual == {rule_id: levels[2] for rule_id, levels in EXPECTED_LEVELS.items()}


def test_an_advisory_everywhere_rule_stays_advisory_for_an_unknown_environment() -> None:
    assert dict(ADVISORY) == {"dev": "advisory", "staging": "advisory", "prod": "advisory"}
    assert level_for(scaling.MULTI_AZ, "feature-x") == "advisory"


def test_a_resource_rule_reads_exactly_the_types_it_checks() -> None:
    assert network.NO_SSH.resource_types == (INGRESS_RULE, SECURITY_GROUP_RULE, SECURITY_GROUP)
    assert readiness.READINESS_HEALTH_CHECKS.resource_types == (TARGET_GROUP, AUTOSCALING_GROUP)


# ------------------------------------------------------------------ reading properties


def test_with_defaults_fills_schema_defaults_under_the_given_config() -> None:
    schema = {"limit": {"type": "integer", "default": 60}, "paths": {"type": "array"}}
    assert with_defaults(schema, None) == {"limit": 60}
    assert with_defaults(schema, {}) == {"limit": 60}
    assert with_defaults(schema, {"limit": 30, "extra": "x"}) == {"limit": 30, "extra": "x"}


def test_prop_reads_a_nested_value() -> None:
    props = {"instanceRefresh": {"preferences": {"autoRollback": True, "minHealthyPercentage": 0}}}
    assert prop(props, "instanceRefresh.preferences.autoRollback") is True
    # A falsy value is a value, not "absent".
    assert prop(props, "instanceRefresh.preferences.minHealthyPercentage", 90) == 0


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"instanceRefresh": None},
        {"instanceRefresh": "strategy=Rolling"},
        {"instanceRefresh": {"preferences": {}}},
        {"instanceRefresh": {"preferences": {"autoRollback": None}}},
    ],
)
def test_prop_gives_the_default_for_an_absent_null_or_unreachable_value(props: dict[str, Any]) -> None:
    assert prop(props, "instanceRefresh.preferences.autoRollback", "absent") == "absent"
    assert prop(props, "instanceRefresh.preferences.autoRollback") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, []), ("sg-1", []), (b"sg-1", []), ({"a": 1}, []), (["a", "b"], ["a", "b"]), (("a",), ["a"]), ([], [])],
)
def test_items_reads_only_real_lists(value: Any, expected: list[Any]) -> None:
    assert items(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("true", True), ("True", True), ("TRUE", True)])
def test_truthy_accepts_aws_booleans_as_bools_and_strings(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


@pytest.mark.parametrize("value", [False, "false", "False", None, 1, "1", "yes", "", [True]])
def test_truthy_refuses_everything_else(value: Any) -> None:
    assert truthy(value) is False


def test_of_type_keeps_the_listed_types_in_stack_order() -> None:
    a = Resource(TARGET_GROUP, "urn:a", "a", {})
    b = Resource(LAUNCH_TEMPLATE, "urn:b", "b", {})
    c = Resource(TARGET_GROUP, "urn:c", "c", {})
    d = Resource(SECURITY_GROUP, "urn:d", "d", {})
    assert of_type([a, b, c, d], TARGET_GROUP, SECURITY_GROUP) == [a, c, d]


def test_a_resource_without_a_dependency_depends_through_nothing() -> None:
    resource = Resource(AUTOSCALING_GROUP, "urn:g", "g", {}, property_dependencies={"launchTemplate": ["urn:lt"]})
    assert list(resource.depends_through("launchTemplate")) == ["urn:lt"]
    assert list(resource.depends_through("vpcZoneIdentifiers")) == []


# ------------------------------------------------------------------ build timeout (at or below the limit)


@pytest.mark.parametrize(("minutes", "passes"), [(59, True), (60, True), (61, False)])
def test_build_timeout_passes_up_to_and_at_the_default_60_minutes(minutes: int, passes: bool) -> None:
    messages = budget.BUILD_TIMEOUT.check(CODEBUILD_PROJECT, {"buildTimeout": minutes})
    assert (messages == []) is passes


@pytest.mark.parametrize(("minutes", "passes"), [(29, True), (30, True), (31, False)])
def test_build_timeout_follows_a_configured_limit_at_its_boundary(minutes: int, passes: bool) -> None:
    messages = budget.BUILD_TIMEOUT.check(CODEBUILD_PROJECT, {"buildTimeout": minutes}, {"maxBuildTimeoutMinutes": 30})
    assert (messages == []) is passes


def test_build_timeout_message_names_the_timeout_the_limit_and_the_stack_key() -> None:
    assert budget.build_within_limit({"buildTimeout": 61}, {}) == [
        "buildTimeout is 61 min, above the 60 min limit; lower kiln:build.timeoutMinutes "
        "(a build that long usually means an unpinned or oversized dependency set)"
    ]


def test_an_absent_build_timeout_is_codebuilds_60_minutes() -> None:
    assert budget.build_within_limit({}, {}) == []
    [message] = budget.build_within_limit({}, {"maxBuildTimeoutMinutes": 59})
    assert message.startswith("buildTimeout is 60 min, above the 59 min limit")


def test_build_timeout_defaults_to_60_minutes_without_config() -> None:
    assert budget.build_within_limit({"buildTimeout": 60}, {}) == []
    assert budget.build_within_limit({"buildTimeout": 61}, {}) != []


# ------------------------------------------------------------------ request timeout (at or below 597 s)


@pytest.mark.parametrize(("seconds", "passes"), [(596, True), (597, True), (598, False)])
def test_request_timeout_passes_up_to_and_at_databricks_597_seconds(seconds: int, passes: bool) -> None:
    messages = gateway.REQUEST_TIMEOUT.check(SERVED_MODEL, {"requestTimeoutSeconds": seconds})
    assert (messages == []) is passes


def test_request_timeout_without_config_uses_databricks_597_seconds() -> None:
    assert gateway.request_timeout_within_databricks({"requestTimeoutSeconds": 597}, {}) == []
    assert gateway.request_timeout_within_databricks({"requestTimeoutSeconds": 598}, {}) == [
        "requestTimeoutSeconds 598 is above 597 s: clients and proxies in between often give up first, "
        "and one slow request holds a worker; lower it or make the call asynchronous"
    ]


@pytest.mark.parametrize(("seconds", "passes"), [(119, True), (120, True), (121, False)])
def test_request_timeout_follows_a_configured_limit_at_its_boundary(seconds: int, passes: bool) -> None:
    messages = gateway.REQUEST_TIMEOUT.check(SERVED_MODEL, {"requestTimeoutSeconds": seconds}, {"maxRequestTimeoutSeconds": 120})
    assert (messages == []) is passes


def test_a_served_model_without_a_request_timeout_passes() -> None:
    assert gateway.REQUEST_TIMEOUT.check(SERVED_MODEL, {"endpoint": "fraud-scorer"}) == []


# ------------------------------------------------------------------ IMDSv2


def test_imdsv2_passes_required_tokens() -> None:
    assert compute.imdsv2_required({"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required"}}, {}) == []


def test_imdsv2_passes_a_disabled_metadata_endpoint_whatever_the_tokens() -> None:
    assert compute.imdsv2_required({"metadataOptions": {"httpEndpoint": "disabled", "httpTokens": "optional"}}, {}) == []


def test_imdsv2_flags_optional_tokens_with_the_setting_to_change() -> None:
    assert compute.imdsv2_required({"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "optional"}}, {}) == [
        "metadataOptions.httpTokens is 'optional'; set metadata_options.http_tokens='required' (IMDSv2 only)"
    ]


@pytest.mark.parametrize("props", [{}, {"metadataOptions": {}}, {"metadataOptions": {"httpEndpoint": "enabled"}}])
def test_imdsv2_flags_absent_metadata_options_as_the_ec2_default(props: dict[str, Any]) -> None:
    assert compute.imdsv2_required(props, {}) == [
        "metadataOptions.httpTokens is 'optional (the EC2 default)'; set metadata_options.http_tokens='required' "
        "(IMDSv2 only)"
    ]


# ------------------------------------------------------------------ encrypted volumes


@pytest.mark.parametrize("encrypted", [True, "true", "True"])
def test_encrypted_volume_passes_every_spelling_of_true(encrypted: Any) -> None:
    props = {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": encrypted, "volumeSize": 30}}]}
    assert compute.root_volume_encrypted(props, {}) == []


@pytest.mark.parametrize("encrypted", [False, "false", None])
def test_encrypted_volume_flags_false_or_absent_encryption(encrypted: Any) -> None:
    props = {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": encrypted, "volumeSize": 30}}]}
    assert compute.root_volume_encrypted(props, {}) == [
        "EBS volume /dev/xvda is not encrypted; set ebs.encrypted='true' in block_device_mappings"
    ]


def test_encrypted_volume_checks_every_ebs_mapping_after_an_instance_store_one() -> None:
    props = {
        "blockDeviceMappings": [
            {"deviceName": "/dev/sdb", "virtualName": "ephemeral0"},
            {"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}},
            {"ebs": {"encrypted": "false"}},
        ]
    }
    # The third mapping has no device name, so the message points at its index.
    assert compute.root_volume_encrypted(props, {}) == [
        "EBS volume #2 is not encrypted; set ebs.encrypted='true' in block_device_mappings"
    ]


@pytest.mark.parametrize("mappings", [None, []])
def test_encrypted_volume_flags_a_template_without_mappings(mappings: Any) -> None:
    props = {} if mappings is None else {"blockDeviceMappings": mappings}
    assert compute.root_volume_encrypted(props, {}) == [
        "no blockDeviceMappings: the root volume takes the AMI's default, which is unencrypted unless the account "
        "turned on EBS encryption by default; add a mapping for the root device with ebs.encrypted='true'"
    ]


# ------------------------------------------------------------------ instance types and AMIs


@pytest.mark.parametrize(
    ("compute_type", "instance_type"),
    [("CPU_MEDIUM", "c7i.xlarge"), ("CPU_LARGE", "c6i.4xlarge"), ("GPU_SMALL", "g4dn.2xlarge"),
     ("GPU_MEDIUM", "g5.xlarge"), ("MULTIGPU_MEDIUM", "g5.12xlarge"), ("GPU_MEDIUM_8", "g5.48xlarge")],
)
def test_instance_type_allowed_passes_each_compute_types_own_instances(compute_type: str, instance_type: str) -> None:
    assert compute.instance_type_allowed({"computeType": compute_type, "instanceType": instance_type}, {}) == []


def test_instance_type_allowed_flags_a_gpu_type_on_cpu_compute_and_lists_the_allowed_ones() -> None:
    props = {"computeType": "GPU_SMALL", "instanceType": "g5.xlarge"}
    assert compute.instance_type_allowed(props, {}) == [
        "instance type 'g5.xlarge' is not allowed for GPU_SMALL; use one of g4dn.xlarge, g4dn.2xlarge "
        "(or change computeType)"
    ]


@pytest.mark.parametrize("compute_type", [None, "GPU_LARGE", "cpu_medium"])
def test_instance_type_allowed_flags_an_unknown_compute_type(compute_type: Any) -> None:
    assert compute.instance_type_allowed({"computeType": compute_type, "instanceType": "c7i.xlarge"}, {}) == [
        f"compute type {compute_type!r} is not one of CPU_MEDIUM, CPU_LARGE, GPU_SMALL, GPU_MEDIUM, MULTIGPU_MEDIUM, "
        "GPU_MEDIUM_8; pick one in the stack file"
    ]


def test_gpu_ami_leaves_cpu_compute_on_the_plain_ami_alone() -> None:
    props = {"computeType": "CPU_MEDIUM", "instanceType": "c7i.xlarge", "amiParameter": CPU_AMI_PARAMETER}
    assert compute.GPU_AMI.check(SERVED_MODEL, props) == []


@pytest.mark.parametrize(
    ("compute_type", "instance_type"),
    [
        ("GPU_MEDIUM", "g5.xlarge"),
        ("MULTIGPU_MEDIUM", "g5.12xlarge"),
        # A GPU instance under a CPU compute type still needs the driver.
        ("CPU_MEDIUM", "g5.xlarge"),
        # A GPU compute type with an instance type the catalog does not know is still GPU.
        ("GPU_SMALL", "p9.huge"),
        ("MULTIGPU_MEDIUM", None),
        # Hand-written props with a list are read as "no catalogued instance", not a crash.
        ("GPU_MEDIUM", ["g5.xlarge"]),
    ],
)
def test_gpu_ami_flags_any_gpu_on_the_plain_ami(compute_type: str, instance_type: Any) -> None:
    props = {"computeType": compute_type, "instanceType": instance_type, "amiParameter": CPU_AMI_PARAMETER}
    assert compute.GPU_AMI.check(SERVED_MODEL, props) == [
        f"{compute_type} on {instance_type} boots AMI {CPU_AMI_PARAMETER!r}, which is not a GPU AMI; use the SSM "
        f"parameter {GPU_AMI_PARAMETER} (NVIDIA driver + container toolkit) or list yours in this policy's "
        "gpuAmiParameters"
    ]


def test_gpu_ami_passes_the_default_gpu_ami_only_through_the_rules_default_config() -> None:
    props = {"computeType": "GPU_MEDIUM", "instanceType": "g5.xlarge", "amiParameter": GPU_AMI_PARAMETER}
    assert compute.GPU_AMI.check(SERVED_MODEL, props) == []


def test_gpu_ami_message_names_the_first_configured_ami() -> None:
    props = {"computeType": "GPU_MEDIUM", "instanceType": "g5.xlarge", "amiParameter": GPU_AMI_PARAMETER}
    [message] = compute.GPU_AMI.check(SERVED_MODEL, props, {"gpuAmiParameters": ["/org/gpu-ami", "/org/gpu-ami-2"]})
    assert "use the SSM parameter /org/gpu-ami (NVIDIA driver" in message


def test_gpu_ami_with_an_empty_config_list_still_names_the_deep_learning_ami() -> None:
    props = {"computeType": "GPU_MEDIUM", "instanceType": "g5.xlarge", "amiParameter": "/org/plain"}
    [message] = compute.gpu_on_gpu_ami(props, {})
    assert f"use the SSM parameter {GPU_AMI_PARAMETER} (NVIDIA" in message


# ------------------------------------------------------------------ SSH


@pytest.mark.parametrize(
    ("protocol", "from_port", "to_port"),
    [
        ("tcp", 22, 22),
        ("6", 22, 22),
        (6, 22, 22),
        ("tcp", 21, 23),
        ("tcp", 0, 65535),
        ("tcp", 22.0, 22.0),
        # Absent ports on a TCP rule mean "all ports" to a reader; the rule fails closed.
        ("tcp", None, None),
        ("tcp", 22, None),
        ("-1", None, None),
        (-1, 0, 0),
        ("all", 443, 443),
    ],
)
def test_no_ssh_flags_every_spelling_of_a_rule_that_reaches_port_22(protocol: Any, from_port: Any, to_port: Any) -> None:
    props = {"ipProtocol": protocol, "fromPort": from_port, "toPort": to_port, "cidrIpv4": "10.0.0.0/8"}
    assert network.NO_SSH.check(INGRESS_RULE, props) != []


@pytest.mark.parametrize(
    ("protocol", "from_port", "to_port"),
    [
        ("tcp", 21, 21),
        ("tcp", 23, 23),
        ("tcp", 0, 21),
        ("tcp", 23, 1024),
        ("tcp", 443, 443),
        ("tcp", 20, None),
        ("udp", 22, 22),
        ("17", 0, 65535),
        ("icmp", -1, -1),
    ],
)
def test_no_ssh_passes_rules_that_miss_port_22(protocol: Any, from_port: Any, to_port: Any) -> None:
    props = {"ipProtocol": protocol, "fromPort": from_port, "toPort": to_port, "cidrIpv4": "0.0.0.0/0"}
    assert network.NO_SSH.check(INGRESS_RULE, props) == []


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ({"cidrIpv4": "0.0.0.0/0"}, "0.0.0.0/0"),
        ({"cidrIpv6": "::/0"}, "::/0"),
        ({"prefixListId": "pl-0123"}, "pl-0123"),
        ({"referencedSecurityGroupId": "sg-0abc"}, "sg-0abc"),
        ({"cidrIpv4": ""}, "anywhere"),
        ({}, "anywhere"),
    ],
)
def test_no_ssh_message_names_the_source_to_remove(source: dict[str, str], shown: str) -> None:
    props = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, **source}
    assert network.no_ssh_ingress_rule(props, {}) == [
        f"ingress tcp 22-22 from {shown} opens SSH; remove it and use Session Manager (the instance role already allows it)"
    ]


def test_no_ssh_message_names_every_source_a_rule_lists() -> None:
    props = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0", "cidrIpv6": "::/0"}
    [message] = network.no_ssh_ingress_rule(props, {})
    assert message.startswith("ingress tcp 22-22 from 0.0.0.0/0, ::/0 opens SSH;")


def test_no_ssh_message_names_each_entry_of_a_source_given_as_a_list() -> None:
    props = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": ["10.0.0.0/8", "", "0.0.0.0/0"]}
    [message] = network.no_ssh_ingress_rule(props, {})
    assert message.startswith("ingress tcp 22-22 from 10.0.0.0/8, 0.0.0.0/0 opens SSH;")


@pytest.mark.parametrize(("kind", "flagged"), [("ingress", True), ("egress", False), (None, False)])
def test_no_ssh_checks_only_ingress_security_group_rules(kind: Any, flagged: bool) -> None:
    props = {"type": kind, "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
    expected = ["security group rule opens SSH (port 22); remove it and use Session Manager"] if flagged else []
    assert network.NO_SSH.check(SECURITY_GROUP_RULE, props) == expected


@pytest.mark.parametrize(("protocol", "from_port", "to_port"), [("tcp", 0, 65535), ("tcp", 21, 23), ("-1", 0, 0)])
def test_no_ssh_flags_ingress_security_group_rules_whose_range_reaches_port_22(protocol: str, from_port: int, to_port: int) -> None:
    props = {"type": "ingress", "protocol": protocol, "fromPort": from_port, "toPort": to_port}
    assert network.NO_SSH.check(SECURITY_GROUP_RULE, props) != []


@pytest.mark.parametrize(("protocol", "from_port", "to_port"), [("tcp", 21, 21), ("tcp", 23, 23), ("udp", 22, 22)])
def test_no_ssh_passes_ingress_security_group_rules_that_miss_port_22(protocol: str, from_port: int, to_port: int) -> None:
    props = {"type": "ingress", "protocol": protocol, "fromPort": from_port, "toPort": to_port}
    assert network.NO_SSH.check(SECURITY_GROUP_RULE, props) == []


def test_no_ssh_names_each_inline_ingress_that_opens_ssh_by_index() -> None:
    props = {
        "ingress": [
            {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]},
            {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]},
            {"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]},
        ]
    }
    assert network.NO_SSH.check(SECURITY_GROUP, props) == [
        "inline ingress #1 opens SSH (port 22); remove it and use Session Manager",
        "inline ingress #2 opens SSH (port 22); remove it and use Session Manager",
    ]


def test_no_ssh_passes_a_security_group_without_inline_ingress() -> None:
    assert network.NO_SSH.check(SECURITY_GROUP, {"name": "kiln-prod-alb"}) == []


# ------------------------------------------------------------------ readiness


def test_readiness_passes_a_target_group_probing_ping() -> None:
    assert readiness.READINESS_HEALTH_CHECKS.check(TARGET_GROUP, {"healthCheck": {"enabled": True, "path": "/ping"}}) == []


def test_readiness_passes_a_health_check_that_does_not_say_enabled() -> None:
    assert readiness.READINESS_HEALTH_CHECKS.check(TARGET_GROUP, {"healthCheck": {"path": "/ping"}}) == []


def test_readiness_flags_a_disabled_health_check() -> None:
    props = {"healthCheck": {"enabled": False, "path": "/ping"}}
    assert readiness.READINESS_HEALTH_CHECKS.check(TARGET_GROUP, props) == [
        "the health check is disabled; enable it on /ping so instances that cannot answer get no traffic"
    ]


@pytest.mark.parametrize(("health_check", "shown"), [({"path": "/"}, "'/'"), ({}, "'/ (the ALB default)'"), (None, "'/ (the ALB default)'")])
def test_readiness_flags_a_target_group_probing_anything_but_ping(health_check: Any, shown: str) -> None:
    assert readiness.target_group_checks_readiness({"healthCheck": health_check}, {}) == [
        f"the health check probes {shown}, which answers before the model loads; set health_check.path='/ping'"
    ]


def test_readiness_follows_a_configured_readiness_path() -> None:
    config = {"readinessPath": "/ready"}
    rule = readiness.READINESS_HEALTH_CHECKS
    assert rule.check(TARGET_GROUP, {"healthCheck": {"path": "/ready"}}, config) == []
    [message] = rule.check(TARGET_GROUP, {"healthCheck": {"path": "/ping"}}, config)
    assert message.endswith("set health_check.path='/ready'")
    [message] = rule.check(TARGET_GROUP, {"healthCheck": {"enabled": False}}, config)
    assert "enable it on /ready" in message


def test_readiness_leaves_a_lambda_target_group_alone() -> None:
    assert readiness.target_group_checks_readiness({"targetType": "lambda", "healthCheck": {"enabled": False}}, {}) == []


@pytest.mark.parametrize("target_type", ["instance", "ip", None])
def test_readiness_checks_every_other_target_type(target_type: Any) -> None:
    assert readiness.target_group_checks_readiness({"targetType": target_type, "healthCheck": {"path": "/"}}, {}) != []


@pytest.mark.parametrize(("kind", "shown"), [("EC2", "'EC2'"), (None, "'EC2'"), ("elb", "'elb'")])
def test_readiness_flags_a_group_that_ignores_the_load_balancer(kind: Any, shown: str) -> None:
    props = {} if kind is None else {"healthCheckType": kind}
    assert readiness.group_trusts_load_balancer(props, {}) == [
        f"healthCheckType is {shown}: an instance whose model never loads stays in service; set health_check_type='ELB'"
    ]


def test_readiness_passes_a_group_on_elb_health_checks() -> None:
    assert readiness.group_trusts_load_balancer({"healthCheckType": "ELB"}, {}) == []


# ------------------------------------------------------------------ scale to zero


SERVED = {"endpoint": "fraud-scorer", "servedModelName": "champion"}


@pytest.mark.parametrize("enabled", [True, "true"])
def test_no_scale_to_zero_flags_every_spelling_of_scale_to_zero(enabled: Any) -> None:
    props = SERVED | {"scaleToZeroEnabled": enabled, "minInstances": 1}
    assert scaling.keeps_an_instance(props, {}) == [
        "fraud-scorer/champion scales to zero: the first request after idle waits for an instance to boot (minutes); "
        "set scaleToZeroEnabled: false"
    ]


@pytest.mark.parametrize(("minimum", "passes"), [(0, False), (1, True), (None, True)])
def test_no_scale_to_zero_needs_at_least_one_instance(minimum: Any, passes: bool) -> None:
    props = SERVED | {"scaleToZeroEnabled": "false"} | ({} if minimum is None else {"minInstances": minimum})
    expected = [] if passes else ["fraud-scorer/champion has minInstances 0; give it a minimum provisioned concurrency of at least 1"]
    assert scaling.keeps_an_instance(props, {}) == expected


# ------------------------------------------------------------------ instance refresh (min healthy at 100)


def refresh(**preferences: Any) -> dict[str, Any]:
    return {"instanceRefresh": {"strategy": "Rolling", "preferences": preferences}}


@pytest.mark.parametrize("rollback", [True, "true"])
def test_instance_refresh_passes_rollback_and_100_percent_healthy(rollback: Any) -> None:
    assert scaling.refresh_rolls_back(refresh(autoRollback=rollback, minHealthyPercentage=100), {}) == []


@pytest.mark.parametrize(("healthy", "passes"), [(99, False), (100, True)])
def test_instance_refresh_needs_min_healthy_at_100_percent(healthy: int, passes: bool) -> None:
    expected = [] if passes else [
        f"instanceRefresh.preferences.minHealthyPercentage is {healthy} (%); set 100 so new instances launch before "
        "old ones stop serving"
    ]
    assert scaling.refresh_rolls_back(refresh(autoRollback=True, minHealthyPercentage=healthy), {}) == expected


def test_instance_refresh_reads_an_absent_min_healthy_as_the_aws_default_90() -> None:
    [message] = scaling.refresh_rolls_back(refresh(autoRollback=True), {})
    assert message.startswith("instanceRefresh.preferences.minHealthyPercentage is 90 (%)")


@pytest.mark.parametrize("rollback", [False, "false", None])
def test_instance_refresh_flags_rollback_off_or_absent(rollback: Any) -> None:
    assert scaling.refresh_rolls_back(refresh(autoRollback=rollback, minHealthyPercentage=100), {}) == [
        "instanceRefresh.preferences.autoRollback is off; set auto_rollback=True so a model that never turns ready "
        "is rolled back"
    ]


def test_instance_refresh_flags_a_group_without_one() -> None:
    assert scaling.refresh_rolls_back({"maxSize": 4}, {}) == [
        "no instanceRefresh: a launch template change only reaches new instances and never rolls back; add "
        "instance_refresh with min_healthy_percentage=100 and auto_rollback=True"
    ]


# ------------------------------------------------------------------ zones (two or more)


@pytest.mark.parametrize(
    "props",
    [
        {"vpcZoneIdentifiers": ["subnet-a", "subnet-b"]},
        {"availabilityZones": ["us-east-1a", "us-east-1b"]},
        {"vpcZoneIdentifiers": ["subnet-a"], "availabilityZones": ["us-east-1a", "us-east-1b"]},
    ],
)
def test_multi_az_passes_two_subnets_or_two_zones(props: dict[str, Any]) -> None:
    assert scaling.spans_zones(props, {}) == []


@pytest.mark.parametrize(
    ("props", "count"),
    [
        ({"vpcZoneIdentifiers": ["subnet-a"]}, 1),
        # The same subnet twice is still one zone.
        ({"vpcZoneIdentifiers": ["subnet-a", "subnet-a"]}, 1),
        ({"availabilityZones": ["us-east-1a"]}, 1),
        ({}, 0),
    ],
)
def test_multi_az_advises_fewer_than_two(props: dict[str, Any], count: int) -> None:
    assert scaling.spans_zones(props, {}) == [
        f"the group launches into {count} subnet(s): one availability zone outage stops the served model; list "
        "private subnets in at least two zones in network.privateSubnetIds"
    ]


# ------------------------------------------------------------------ capacity (max at or above the peak)


@pytest.mark.parametrize(("peak", "passes"), [(11, True), (12, True), (13, False)])
def test_capacity_covers_a_peak_up_to_max_concurrency(peak: int, passes: bool) -> None:
    # 4 instances × 3 workers = 12 concurrent requests at most.
    props = {"maxInstances": 4, "workersPerInstance": 3, "expectedPeakConcurrency": peak}
    expected = [] if passes else [
        f"max concurrency 12 (= 4 instances × 3 workers) is below the expected peak {peak} (= QPS × latency); "
        "raise maxProvisionedConcurrency"
    ]
    assert scaling.covers_peak(props, {}) == expected


def test_capacity_without_an_expected_peak_passes() -> None:
    assert scaling.covers_peak({"maxInstances": 0, "workersPerInstance": 0}, {}) == []


@pytest.mark.parametrize("props", [{"workersPerInstance": 3}, {"maxInstances": 4}])
def test_capacity_counts_an_absent_size_as_zero(props: dict[str, Any]) -> None:
    [message] = scaling.covers_peak(props | {"expectedPeakConcurrency": 1}, {})
    assert message.startswith("max concurrency 0 ")


# ------------------------------------------------------------------ what the model says about itself


MODEL = {"endpoint": "fraud-scorer", "servedModelName": "champion", "modelUri": "models:/fraud-scorer/1"}
SIGNATURE = next(rule for rule in served_models.PACKAGING if rule.id == "model-signature")
UNSIGNED = {"id": "model-signature", "level": "error", "message": "the model has no signature; log it with …"}


def test_a_packaging_rule_reports_the_bakes_finding_of_its_id_under_the_served_models_name() -> None:
    assert SIGNATURE.check(SERVED_MODEL, MODEL | {"packagingFindings": [UNSIGNED]}) == [
        "fraud-scorer/champion (models:/fraud-scorer/1): the model has no signature; log it with …"
    ]


@pytest.mark.parametrize("findings", [[], None, [UNSIGNED | {"id": "input-example-missing"}]])
def test_a_packaging_rule_passes_without_a_finding_of_its_id(findings: Any) -> None:
    assert SIGNATURE.check(SERVED_MODEL, MODEL | {"packagingFindings": findings}) == []


def test_model_messages_name_the_resolved_version_when_there_is_one() -> None:
    props = MODEL | {"modelUri": "models:/fraud-scorer@champion", "resolvedModelUri": "models:/fraud-scorer/3",
                     "packagingFindings": [UNSIGNED]}
    [message] = SIGNATURE.check(SERVED_MODEL, props)
    assert message.startswith("fraud-scorer/champion (models:/fraud-scorer/3): ")


def forward(*weights: Any) -> dict[str, Any]:
    groups = [{"arn": f"arn:aws:elasticloadbalancing:tg/{i}"} | ({} if w is None else {"weight": w}) for i, w in enumerate(weights)]
    return {"type": "forward", "forward": {"targetGroups": groups}}


@pytest.mark.parametrize("weights", [(90, 10), (100, 0), (50, 25, 25)])
def test_traffic_weights_pass_when_they_sum_to_100(weights: tuple[int, ...]) -> None:
    assert served_models.weights_sum_to_100({"actions": [forward(*weights)]}, {}) == []


@pytest.mark.parametrize(("weights", "shown"), [((90, 9), "90 + 9 = 99"), ((90, 11), "90 + 11 = 101")])
def test_traffic_weights_flag_a_sum_one_off_100(weights: tuple[int, ...], shown: str) -> None:
    assert served_models.weights_sum_to_100({"actions": [forward(*weights)]}, {}) == [
        f"route weights {shown}, not 100; fix trafficConfig.routes"
    ]


def test_traffic_weights_read_an_absent_weight_as_the_providers_default_1() -> None:
    # terraform-provider-aws (under pulumi_aws) defaults forward.target_group.weight to 1.
    assert served_models.weights_sum_to_100({"actions": [forward(100, None)]}, {}) == [
        "route weights 100 + 1 = 101, not 100; fix trafficConfig.routes"
    ]
    assert served_models.weights_sum_to_100({"actions": [forward(99, None)]}, {}) == []


def test_traffic_weights_leave_a_single_target_group_alone() -> None:
    assert served_models.weights_sum_to_100({"actions": [forward(1)]}, {}) == []


def test_traffic_weights_check_the_actions_after_a_single_target_group() -> None:
    props = {"actions": [forward(1), forward(60, 60)]}
    assert served_models.weights_sum_to_100(props, {}) == ["route weights 60 + 60 = 120, not 100; fix trafficConfig.routes"]


def test_traffic_weights_check_every_action_of_a_listener_rule() -> None:
    props = {"actions": [forward(90, 10), forward(60, 60)]}
    assert served_models.TRAFFIC_WEIGHTS.check(LISTENER_RULE, props) == [
        "route weights 60 + 60 = 120, not 100; fix trafficConfig.routes"
    ]


@pytest.mark.parametrize(("from_port", "to_port", "flagged"), [(20, 21, False), (20, 22, True), (20, 25, True), (23, 30, False)])
def test_no_ssh_reads_an_inline_ingress_as_the_port_range_it_opens(from_port: int, to_port: int, flagged: bool) -> None:
    props = {"ingress": [{"protocol": "tcp", "fromPort": from_port, "toPort": to_port, "cidrBlocks": ["0.0.0.0/0"]}]}

    assert bool(network.NO_SSH.check(SECURITY_GROUP, props)) is flagged


def test_a_resource_rule_passes_resource_types_it_does_not_read() -> None:
    assert network.NO_SSH.check(LAUNCH_TEMPLATE, {"ingress": [{"protocol": "-1"}]}) == []

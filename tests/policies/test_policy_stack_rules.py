"""The stack rules (rules that span resources) on small hand-built stacks: what links a
setting to its resource, each threshold at its edge, every accepted spelling, and the
exact message and URN a person is pointed at.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.rules import budget, gateway, network, storage
from policies.rules.resource_types import (
    AUTOSCALING_GROUP,
    BUCKET,
    BUCKET_ENCRYPTION,
    BUCKET_ENCRYPTION_V2,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS_BLOCK,
    BUCKET_V2,
    BUCKET_VERSIONING,
    BUCKET_VERSIONING_V2,
    INGRESS_RULE,
    LAMBDA_FUNCTION,
    LAUNCH_TEMPLATE,
    LISTENER,
    LOAD_BALANCER,
    SECURITY_GROUP,
    SERVED_MODEL,
    VPC_ENDPOINT,
)
from policies.rules.rule import Resource, Violation


def resource(type_: str, name: str, props: dict[str, Any] | None = None, **links: list[str]) -> Resource:
    return Resource(type_, f"urn:pulumi:prod::kiln::{type_}::{name}", name, props or {}, property_dependencies=links)


# ------------------------------------------------------------------ cost at max scale (at or below the budget)


def priced_group(name: str, instance_type: Any, max_size: int | None) -> list[Resource]:
    template = resource(LAUNCH_TEMPLATE, f"{name}-lt", {"instanceType": instance_type})
    group = resource(AUTOSCALING_GROUP, f"{name}-asg", {} if max_size is None else {"maxSize": max_size}, launchTemplate=[template.urn])
    return [template, group]


@pytest.mark.parametrize(("budget_usd", "passes"), [(4.025, True), (4.024, True), (4.023, False)])
def test_cost_budget_passes_up_to_and_at_the_budget(budget_usd: float, passes: bool) -> None:
    stack = priced_group("scorer", "g5.xlarge", 4)  # 4 × $1.006 = $4.024 an hour
    violations = budget.COST_BUDGET.check(stack, {"maxHourlyCostUsd": budget_usd})
    assert (violations == []) is passes


def test_cost_budget_sums_every_group_and_names_each_part() -> None:
    stack = [*priced_group("scorer", "g5.xlarge", 4), *priced_group("router", "c7i.xlarge", 10)]
    # 4 × 1.006 + 10 × 0.1785 = 4.024 + 1.785 = 5.809 → $5.81
    assert budget.COST_BUDGET.check(stack, {"maxHourlyCostUsd": 5.8}) == [
        Violation(
            "max hourly cost $5.81 is over the $5.80 budget (scorer-asg 4 × g5.xlarge $1.006; "
            "router-asg 10 × c7i.xlarge $0.1785); lower maxProvisionedConcurrency / workload sizes or raise this "
            "policy's maxHourlyCostUsd"
        )
    ]


def vpc_endpoint(name: str, kind: str, zones: int) -> Resource:
    return resource(VPC_ENDPOINT, name, {"vpcEndpointType": kind, "subnetIds": [f"subnet-{i:08x}" for i in range(zones)]})


def test_cost_budget_counts_interface_vpc_endpoints_per_zone_and_not_gateway_ones() -> None:
    # 4 × $1.006 = $4.024, plus 2 interface endpoints × 3 AZs × $0.01 = $0.06: $4.084; the gateway one is free.
    stack = [*priced_group("scorer", "g5.xlarge", 4), vpc_endpoint("ecr-api", "Interface", 3),
             vpc_endpoint("logs", "Interface", 3), vpc_endpoint("s3", "Gateway", 0)]

    assert budget.COST_BUDGET.check(stack, {"maxHourlyCostUsd": 4.084}) == []
    [violation] = budget.COST_BUDGET.check(stack, {"maxHourlyCostUsd": 4.05})  # instances alone ($4.024) fit
    assert violation.message.startswith("max hourly cost $4.08 is over the $4.05 budget (scorer-asg 4 × g5.xlarge "
                                        "$1.006; 2 interface VPC endpoints in 6 AZ-hours × $0.01)")


def test_cost_budget_defaults_to_100_dollars_an_hour() -> None:
    # 99 × $1.006 = $99.594 fits; 100 × $1.006 = $100.60 does not.
    assert budget.COST_BUDGET.check(priced_group("scorer", "g5.xlarge", 99)) == []
    assert budget.cost_within_budget(priced_group("scorer", "g5.xlarge", 99), {}) == []
    [violation] = budget.cost_within_budget(priced_group("scorer", "g5.xlarge", 100), {})
    assert violation.message.startswith("max hourly cost $100.60 is over the $100.00 budget")


def test_cost_budget_shows_thousands_with_separators() -> None:
    # 100 × $16.288 = $1,628.80
    [violation] = budget.COST_BUDGET.check(priced_group("llm", "g5.48xlarge", 100), {"maxHourlyCostUsd": 1000})
    assert violation.message.startswith("max hourly cost $1,628.80 is over the $1,000.00 budget")


def test_cost_budget_counts_a_group_without_max_size_as_zero() -> None:
    assert budget.COST_BUDGET.check(priced_group("scorer", "g5.48xlarge", None), {"maxHourlyCostUsd": 0.01}) == []


# A list (hand-written props) is a violation like any other uncatalogued value, not a crash.
@pytest.mark.parametrize("instance_type", ["x9.huge", None, 7, ["g5.xlarge"]])
def test_cost_budget_flags_a_group_it_cannot_price(instance_type: Any) -> None:
    stack = priced_group("scorer", instance_type, 2)
    assert budget.COST_BUDGET.check(stack) == [
        Violation(
            f"cannot price this group: instance type {instance_type!r} has no price in infra/plan/catalog.py; use a "
            "catalogued instance type or add it there",
            stack[1].urn,
        )
    ]


def test_cost_budget_flags_a_group_without_a_launch_template() -> None:
    group = resource(AUTOSCALING_GROUP, "orphan-asg", {"maxSize": 2}, launchTemplate=["urn:elsewhere"])
    [violation] = budget.COST_BUDGET.check([group])
    assert violation.urn == group.urn and "instance type None has no price" in violation.message


def test_cost_budget_prices_the_groups_after_one_it_cannot_price() -> None:
    unpriced = priced_group("custom", "x9.huge", 2)
    unsized = priced_group("idle", "g5.xlarge", None)
    scorer = priced_group("scorer", "g5.xlarge", 4)
    # 0 × 1.006 + 4 × 1.006 = $4.024, over a $4 budget; the unpriced group is named on its own.
    assert budget.COST_BUDGET.check([*unpriced, *unsized, *scorer], {"maxHourlyCostUsd": 4}) == [
        Violation(
            "cannot price this group: instance type 'x9.huge' has no price in infra/plan/catalog.py; use a catalogued "
            "instance type or add it there",
            unpriced[1].urn,
        ),
        Violation(
            "max hourly cost $4.02 is over the $4.00 budget (idle-asg 0 × g5.xlarge $1.006; scorer-asg 4 × g5.xlarge "
            "$1.006); lower maxProvisionedConcurrency / workload sizes or raise this policy's maxHourlyCostUsd"
        ),
    ]


def test_cost_budget_prices_each_group_by_its_own_template() -> None:
    cheap = resource(LAUNCH_TEMPLATE, "cheap-lt", {"instanceType": "c7i.large"})
    dear = resource(LAUNCH_TEMPLATE, "dear-lt", {"instanceType": "g5.48xlarge"})
    group = resource(AUTOSCALING_GROUP, "cheap-asg", {"maxSize": 10}, launchTemplate=[cheap.urn])
    # 10 × $0.08925 = $0.8925, far under $1; priced as g5.48xlarge it would be $162.88.
    assert budget.COST_BUDGET.check([dear, cheap, group], {"maxHourlyCostUsd": 1}) == []


# ------------------------------------------------------------------ ALB idle timeout (strictly above the request timeout)


def idle_stack(idle: int | None, *timeouts: tuple[str, int | None]) -> list[Resource]:
    served = [resource(SERVED_MODEL, name, {} if t is None else {"requestTimeoutSeconds": t}) for name, t in timeouts]
    return [resource(LOAD_BALANCER, "gateway-alb", {} if idle is None else {"idleTimeout": idle}), *served]


@pytest.mark.parametrize(("idle", "passes"), [(596, False), (597, False), (598, True)])
def test_idle_timeout_must_be_strictly_above_the_request_timeout(idle: int, passes: bool) -> None:
    violations = gateway.IDLE_TIMEOUT.check(idle_stack(idle, ("fraud-scorer.champion", 597)))
    assert (violations == []) is passes


def test_idle_timeout_message_names_the_longest_request_timeout_and_its_model() -> None:
    stack = idle_stack(300, ("a-short", 120), ("b-none", None), ("c-long", 597), ("d-mid", 300))
    assert gateway.IDLE_TIMEOUT.check(stack) == [
        Violation(
            "idleTimeout 300 s is not above the longest request timeout 597 s (c-long); set idle_timeout to at least "
            "598 s",
            stack[0].urn,
        )
    ]


def test_idle_timeout_is_the_albs_60_seconds_when_unset() -> None:
    assert gateway.IDLE_TIMEOUT.check(idle_stack(None, ("scorer", 59))) == []
    [violation] = gateway.IDLE_TIMEOUT.check(idle_stack(None, ("scorer", 60)))
    assert violation.message.startswith("idleTimeout 60 s is not above the longest request timeout 60 s")


def test_idle_timeout_has_nothing_to_compare_without_request_timeouts() -> None:
    assert gateway.IDLE_TIMEOUT.check(idle_stack(1, ("scorer", None))) == []
    assert gateway.IDLE_TIMEOUT.check(idle_stack(1)) == []


def test_idle_timeout_checks_every_load_balancer() -> None:
    stack = [*idle_stack(600, ("scorer", 597)), resource(LOAD_BALANCER, "second-alb", {"idleTimeout": 30})]
    assert [v.urn for v in gateway.IDLE_TIMEOUT.check(stack)] == [stack[-1].urn]


# ------------------------------------------------------------------ TLS on an internet-facing gateway

HTTPS = {"protocol": "HTTPS", "port": 443, "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"}
REDIRECT = {"protocol": "HTTP", "port": 80, "defaultActions": [{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443"}}]}
PLAIN = {"protocol": "HTTP", "port": 80, "defaultActions": [{"type": "forward", "targetGroupArn": "arn:tg"}]}


def tls_stack(internal: Any, *listeners: dict[str, Any]) -> list[Resource]:
    balancer = resource(LOAD_BALANCER, "gateway-alb", {} if internal is None else {"internal": internal})
    return [balancer, *(resource(LISTENER, f"listener-{i}", props) for i, props in enumerate(listeners))]


def test_https_passes_an_internet_facing_gateway_with_https_and_a_redirect() -> None:
    assert gateway.TLS_WHEN_INTERNET_FACING.check(tls_stack(False, HTTPS, REDIRECT)) == []


def test_https_leaves_an_internal_gateway_on_plain_http_alone() -> None:
    assert gateway.TLS_WHEN_INTERNET_FACING.check(tls_stack(True, PLAIN)) == []


def test_https_treats_a_gateway_that_does_not_say_internal_as_internet_facing() -> None:
    stack = tls_stack(None, PLAIN)
    assert gateway.TLS_WHEN_INTERNET_FACING.check(stack) == [
        Violation(
            "listener on port 80 speaks HTTP on an internet-facing load balancer; serve HTTPS with an ACM "
            "certificate or redirect to HTTPS",
            stack[1].urn,
        ),
        Violation(
            "the load balancer is internet-facing without an HTTPS listener; set gateway.certificateArn to an ACM "
            "certificate (or internetFacing: false)",
            stack[0].urn,
        ),
    ]


def test_https_without_a_certificate_is_not_https() -> None:
    stack = tls_stack(False, {"protocol": "HTTPS", "port": 443, "certificateArn": ""}, REDIRECT)
    assert [v.urn for v in gateway.TLS_WHEN_INTERNET_FACING.check(stack)] == [stack[1].urn, stack[0].urn]


@pytest.mark.parametrize(
    "actions",
    [
        [],
        [{"type": "redirect", "redirect": {"protocol": "HTTP", "port": "8080"}}],
        [{"type": "redirect", "redirect": {"protocol": "HTTPS"}}, {"type": "forward", "targetGroupArn": "arn:tg"}],
        [{"type": "fixed-response", "redirect": {"protocol": "HTTPS"}}],
    ],
)
def test_https_flags_a_plain_listener_that_does_not_only_redirect_to_https(actions: list[dict[str, Any]]) -> None:
    stack = tls_stack(False, HTTPS, {"protocol": "HTTP", "port": 80, "defaultActions": actions})
    assert [v.urn for v in gateway.TLS_WHEN_INTERNET_FACING.check(stack)] == [stack[2].urn]


def test_https_flags_each_internet_facing_load_balancer_without_https() -> None:
    stack = [*tls_stack(False, REDIRECT), resource(LOAD_BALANCER, "second-alb", {"internal": False})]
    assert [v.urn for v in gateway.TLS_WHEN_INTERNET_FACING.check(stack)] == [stack[0].urn, stack[2].urn]


# ------------------------------------------------------------------ instance ingress only from the gateway


def group_urn(name: str) -> str:
    return f"urn:pulumi:prod::kiln::{SECURITY_GROUP}::{name}"


def ingress_stack(from_group: str | None = None, **source: str) -> list[Resource]:
    """An instance group, the ALB's and an activator's groups, and one ingress rule into the
    instances: from the security group named `from_group` (linked by dependency, as the engine
    links it) and/or from a CIDR or prefix list given in `source`."""
    instances, alb, activator = (resource(SECURITY_GROUP, n) for n in ("instances-sg", "alb-sg", "activator-sg"))
    props = {"ipProtocol": "tcp", "fromPort": 8080, "toPort": 8080, **source}
    links = {"securityGroupId": [instances.urn]}
    if from_group:
        props["referencedSecurityGroupId"] = f"sg-{from_group}"
        links["referencedSecurityGroupId"] = [group_urn(from_group)]
    return [
        instances, alb, activator,
        resource(LAUNCH_TEMPLATE, "scorer-lt", vpcSecurityGroupIds=[instances.urn]),
        resource(LOAD_BALANCER, "gateway-alb", securityGroups=[alb.urn]),
        resource(LAMBDA_FUNCTION, "scorer-activator", vpcConfig=[activator.urn]),
        resource(INGRESS_RULE, "instances-in", props, **links),
    ]


@pytest.mark.parametrize("source", ["alb-sg", "activator-sg"])
def test_instance_ingress_passes_the_gateways_and_the_activators_group(source: str) -> None:
    stack = ingress_stack(source)
    assert network.INSTANCE_INGRESS.check(stack) == []


def test_instance_ingress_flags_another_security_group() -> None:
    stack = ingress_stack("bastion-sg")
    assert network.INSTANCE_INGRESS.check(stack) == [
        Violation(
            "instances accept traffic from a security group that is neither the gateway's nor an activator's; "
            "reference the load balancer's security group instead",
            stack[-1].urn,
        )
    ]


@pytest.mark.parametrize(
    ("source", "shown"),
    [({"cidrIpv4": "0.0.0.0/0"}, "0.0.0.0/0"), ({"cidrIpv6": "::/0"}, "::/0"), ({"prefixListId": "pl-0123"}, "pl-0123"),
     ({"cidrIpv4": "10.0.0.0/16"}, "10.0.0.0/16")],
)
def test_instance_ingress_flags_any_cidr_or_prefix_list(source: dict[str, str], shown: str) -> None:
    stack = ingress_stack(**source)
    assert network.INSTANCE_INGRESS.check(stack) == [
        Violation(
            f"instances accept traffic from {shown}; allow only the gateway's security group "
            "(referenced_security_group_id) so nothing bypasses the load balancer",
            stack[-1].urn,
        )
    ]


def test_instance_ingress_names_every_cidr_a_rule_lists() -> None:
    [violation] = network.INSTANCE_INGRESS.check(ingress_stack(cidrIpv4="0.0.0.0/0", cidrIpv6="::/0"))
    assert violation.message.startswith("instances accept traffic from 0.0.0.0/0, ::/0;")


def test_instance_ingress_flags_a_cidr_even_next_to_the_gateways_group() -> None:
    stack = ingress_stack("alb-sg", cidrIpv4="0.0.0.0/0")
    [violation] = network.INSTANCE_INGRESS.check(stack)
    assert violation.message.startswith("instances accept traffic from 0.0.0.0/0;")


def test_instance_ingress_leaves_rules_on_other_groups_alone() -> None:
    stack = ingress_stack(cidrIpv4="0.0.0.0/0")
    alb_rule = resource(INGRESS_RULE, "alb-in-443", {"cidrIpv4": "0.0.0.0/0"}, securityGroupId=[stack[1].urn])
    assert network.INSTANCE_INGRESS.check([*stack, alb_rule]) == network.INSTANCE_INGRESS.check(stack)
    assert len(network.INSTANCE_INGRESS.check(stack)) == 1


def test_instance_ingress_flags_inline_ingress_on_the_instance_group_only() -> None:
    stack = ingress_stack("alb-sg")
    inline = [{"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "cidrBlocks": ["10.0.0.0/8"]}]
    instances = Resource(SECURITY_GROUP, stack[0].urn, stack[0].name, {"ingress": inline})
    alb = Resource(SECURITY_GROUP, stack[1].urn, stack[1].name, {"ingress": inline})
    assert network.INSTANCE_INGRESS.check([instances, alb, *stack[2:]]) == [
        Violation(
            "the instance security group has inline ingress rules; keep instance ingress to one "
            "SecurityGroupIngressRule from the gateway's security group",
            stack[0].urn,
        )
    ]


def test_instance_ingress_passes_an_instance_group_with_empty_inline_ingress() -> None:
    stack = ingress_stack("alb-sg")
    empty = Resource(SECURITY_GROUP, stack[0].urn, stack[0].name, {"ingress": []})
    assert network.INSTANCE_INGRESS.check([empty, *stack[1:]]) == []


# ------------------------------------------------------------------ the artifact bucket


def bucket_stack(bucket_type: str = BUCKET, *settings: tuple[str, dict[str, Any]]) -> list[Resource]:
    bucket = resource(bucket_type, "artifacts-bucket")
    return [bucket, *(resource(t, f"setting-{i}", props, bucket=[bucket.urn]) for i, (t, props) in enumerate(settings))]


ALL_BLOCKED = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}


@pytest.mark.parametrize("spelling", [True, "true"])
def test_public_access_passes_all_four_flags_in_either_spelling(spelling: Any) -> None:
    stack = bucket_stack(BUCKET, (BUCKET_PUBLIC_ACCESS_BLOCK, dict.fromkeys(ALL_BLOCKED, spelling)))
    assert storage.BLOCK_PUBLIC_ACCESS.check(stack) == []


def test_public_access_names_every_flag_left_off_in_order() -> None:
    stack = bucket_stack(BUCKET_V2, (BUCKET_PUBLIC_ACCESS_BLOCK, {"blockPublicAcls": "false", "ignorePublicAcls": True}))
    assert storage.BLOCK_PUBLIC_ACCESS.check(stack) == [
        Violation(
            "public access is not fully blocked (blockPublicAcls, blockPublicPolicy, restrictPublicBuckets off); "
            "set all four to true",
            stack[0].urn,
        )
    ]


def test_public_access_flags_a_bucket_without_a_block() -> None:
    stack = bucket_stack(BUCKET)
    assert storage.BLOCK_PUBLIC_ACCESS.check(stack) == [
        Violation("no BucketPublicAccessBlock for this bucket; add one with all four settings true", stack[0].urn)
    ]


@pytest.mark.parametrize("setting_type", [BUCKET_ENCRYPTION, BUCKET_ENCRYPTION_V2])
@pytest.mark.parametrize("algorithm", ["aws:kms", "aws:kms:dsse", "AES256"])
def test_encryption_passes_every_s3_algorithm_in_either_resource_version(setting_type: str, algorithm: str) -> None:
    rules = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}, "bucketKeyEnabled": True}]
    assert storage.ENCRYPTION.check(bucket_stack(BUCKET, (setting_type, {"rules": rules}))) == []


@pytest.mark.parametrize(
    "settings",
    [
        (),
        ((BUCKET_ENCRYPTION, {}),),
        ((BUCKET_ENCRYPTION, {"rules": [{"bucketKeyEnabled": True}]}),),
        ((BUCKET_ENCRYPTION, {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aes256"}}]}),),
    ],
)
def test_encryption_flags_a_bucket_without_a_default_algorithm(settings: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    stack = bucket_stack(BUCKET, *settings)
    assert storage.ENCRYPTION.check(stack) == [
        Violation(
            "no default server-side encryption for this bucket; add BucketServerSideEncryptionConfiguration with "
            "sse_algorithm 'aws:kms'",
            stack[0].urn,
        )
    ]


@pytest.mark.parametrize("setting_type", [BUCKET_VERSIONING, BUCKET_VERSIONING_V2])
def test_versioning_passes_enabled_in_either_resource_version(setting_type: str) -> None:
    stack = bucket_stack(BUCKET, (setting_type, {"versioningConfiguration": {"status": "Enabled"}}))
    assert storage.VERSIONING.check(stack) == []


@pytest.mark.parametrize("status", ["Suspended", "Disabled", None])
def test_versioning_flags_anything_but_enabled(status: Any) -> None:
    stack = bucket_stack(BUCKET_V2, (BUCKET_VERSIONING, {"versioningConfiguration": {"status": status}}))
    assert storage.VERSIONING.check(stack) == [
        Violation(
            "versioning is not enabled, so an overwritten model artifact cannot be recovered; add BucketVersioning "
            "with status 'Enabled'",
            stack[0].urn,
        )
    ]


DENY_PLAIN_HTTP = {
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Resource": ["arn:aws:s3:::kiln-prod-artifacts", "arn:aws:s3:::kiln-prod-artifacts/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"Principal": {"AWS": "*"}},
        {"Principal": {"AWS": ["*"]}},
        {"Action": ["s3:GetObject", "s3:*"]},
        {"Action": "*"},
        {"Condition": {"Bool": {"aws:SecureTransport": False}}},
        {"Condition": {"Bool": {"aws:SecureTransport": "False"}}},
    ],
)
def test_tls_only_passes_every_spelling_of_a_deny_without_tls(change: dict[str, Any]) -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": [DENY_PLAIN_HTTP | change]})
    assert storage.TLS_ONLY.check(bucket_stack(BUCKET, (BUCKET_POLICY, {"policy": policy}))) == []


def test_tls_only_reads_a_policy_given_as_an_object_with_a_single_statement() -> None:
    policy = {"Version": "2012-10-17", "Statement": DENY_PLAIN_HTTP}
    assert storage.TLS_ONLY.check(bucket_stack(BUCKET, (BUCKET_POLICY, {"policy": policy}))) == []


@pytest.mark.parametrize(
    "change",
    [
        {"Effect": "Allow"},
        {"Principal": {"AWS": "arn:aws:iam::123456789012:root"}},
        {"Principal": {"Service": "*"}},
        {"Action": "s3:GetObject"},
        {"Action": None},
        {"Condition": {"Bool": {"aws:SecureTransport": "true"}}},
        {"Condition": {}},
    ],
)
def test_tls_only_flags_a_statement_that_does_not_deny_everyone_everything_without_tls(change: dict[str, Any]) -> None:
    policy = json.dumps({"Statement": ["not a statement", DENY_PLAIN_HTTP | change]})
    stack = bucket_stack(BUCKET, (BUCKET_POLICY, {"policy": policy}))
    assert storage.TLS_ONLY.check(stack) == [
        Violation(
            "no bucket policy denies requests without TLS on the bucket and its objects; add a Deny s3:* statement "
            "for Principal '*' on Resource [<bucket ARN>, <bucket ARN>/*] with Condition "
            "{Bool: {aws:SecureTransport: 'false'}}",
            stack[0].urn,
        )
    ]


def test_tls_only_passes_when_any_of_the_buckets_policies_denies_plain_http() -> None:
    allow = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]})
    deny = json.dumps({"Statement": [DENY_PLAIN_HTTP]})
    assert storage.TLS_ONLY.check(bucket_stack(BUCKET, (BUCKET_POLICY, {"policy": allow}), (BUCKET_POLICY, {"policy": deny}))) == []


def test_tls_only_flags_a_policy_that_is_not_json() -> None:
    stack = bucket_stack(BUCKET, (BUCKET_POLICY, {"policy": "{Statement:"}))
    assert storage.TLS_ONLY.check(stack) == [
        Violation(
            "the bucket policy is not valid JSON; fix it and add a statement denying aws:SecureTransport=false",
            stack[0].urn,
        )
    ]


def test_bucket_settings_count_only_for_the_bucket_they_depend_on() -> None:
    stack = bucket_stack(BUCKET, (BUCKET_VERSIONING, {"versioningConfiguration": {"status": "Enabled"}}))
    other = resource(BUCKET_V2, "other-bucket")
    assert [v.urn for v in storage.VERSIONING.check([*stack, other])] == [other.urn]


def test_instance_ingress_still_checks_the_instances_rule_after_a_rule_on_another_group() -> None:
    stack = ingress_stack(cidrIpv4="0.0.0.0/0")
    alb_rule = resource(INGRESS_RULE, "alb-in-443", {"cidrIpv4": "0.0.0.0/0"}, securityGroupId=[stack[1].urn])

    assert network.INSTANCE_INGRESS.check([alb_rule, *stack]) == network.INSTANCE_INGRESS.check(stack)

"""The S3 artifact store: private, encrypted, versioned, reachable over TLS only.

Each bucket setting is its own resource in pulumi_aws 7; they are linked to their bucket
through the `bucket` property's dependency, which (unlike the bucket name) is known in preview.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from policies.rules.resource_types import (
    BUCKET,
    BUCKET_ENCRYPTION,
    BUCKET_ENCRYPTION_V2,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS_BLOCK,
    BUCKET_V2,
    BUCKET_VERSIONING,
    BUCKET_VERSIONING_V2,
)
from policies.rules.rule import MANDATORY, Config, Resource, StackRule, Violation, items, of_type, prop, truthy

PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
SSE_ALGORITHMS = ("aws:kms", "aws:kms:dsse", "AES256")


def _settings_of(bucket: Resource, resources: Sequence[Resource], *types: str) -> list[Resource]:
    return [r for r in of_type(resources, *types) if bucket.urn in r.depends_through("bucket")]


def _each_bucket(check: Callable[[Resource, Sequence[Resource]], str | None], resources: Sequence[Resource],
                 config: Config) -> list[Violation]:
    """One violation per bucket `check` finds wanting. The rules bind `check` with a partial, not
    a closure, so this loop runs (and can be tested) at check time rather than at import."""
    violations = []
    for bucket in of_type(resources, BUCKET, BUCKET_V2):
        message = check(bucket, resources)
        if message:
            violations.append(Violation(message, bucket.urn))
    return violations


def blocks_public_access(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    blocks = _settings_of(bucket, resources, BUCKET_PUBLIC_ACCESS_BLOCK)
    if not blocks:
        return "no BucketPublicAccessBlock for this bucket; add one with all four settings true"
    missing = [flag for flag in PUBLIC_ACCESS_FLAGS if not any(truthy(b.props.get(flag)) for b in blocks)]
    if missing:
        return f"public access is not fully blocked ({', '.join(missing)} off); set all four to true"
    return None


def encrypted(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    configs = _settings_of(bucket, resources, BUCKET_ENCRYPTION, BUCKET_ENCRYPTION_V2)
    algorithms = [
        prop(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")
        for config in configs
        for rule in items(config.props.get("rules"))
    ]
    if any(algorithm in SSE_ALGORITHMS for algorithm in algorithms):
        return None
    return ("no default server-side encryption for this bucket; add BucketServerSideEncryptionConfiguration "
            "with sse_algorithm 'aws:kms'")


def versioned(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    settings = _settings_of(bucket, resources, BUCKET_VERSIONING, BUCKET_VERSIONING_V2)
    if any(prop(s.props, "versioningConfiguration.status") == "Enabled" for s in settings):
        return None
    return "versioning is not enabled, so an overwritten model artifact cannot be recovered; add BucketVersioning with status 'Enabled'"


def _statements(policy: Any) -> list[Mapping[str, Any]]:
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements = prop(document, "Statement", [])
    return [statements] if isinstance(statements, Mapping) else [s for s in items(statements) if isinstance(s, Mapping)]


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else items(value)


def _covers(patterns: list[Any], arn: str) -> bool:
    """An ARN matched by one of a statement's Resource patterns (IAM's * and ? wildcards)."""
    return any(isinstance(pattern, str) and fnmatch.fnmatchcase(arn, pattern) for pattern in patterns)


def _denies_plain_http(statement: Mapping[str, Any], bucket_arn: str | None) -> bool:
    """A Deny of every S3 action to everyone without TLS, on the bucket and on its objects:
    bucket calls (ListBucket) name the bucket's ARN, object calls (GetObject) `<arn>/<key>`,
    so a Resource of the bucket alone leaves every object readable over plain HTTP."""
    principal = statement.get("Principal")
    everyone = principal == "*" or (isinstance(principal, Mapping) and principal.get("AWS") in ("*", ["*"]))
    secure = prop(statement, "Condition.Bool.aws:SecureTransport")
    resources = _listed(statement.get("Resource"))
    covers_both = bucket_arn is None or (_covers(resources, bucket_arn) and _covers(resources, f"{bucket_arn}/*"))
    return (
        statement.get("Effect") == "Deny"
        and everyone
        and any(action in ("s3:*", "*") for action in _listed(statement.get("Action")))
        and str(secure).lower() == "false"
        and covers_both
    )


def tls_only(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    arn = bucket.props.get("arn")
    for policy in _settings_of(bucket, resources, BUCKET_POLICY):
        try:
            if any(_denies_plain_http(s, arn) for s in _statements(policy.props.get("policy"))):
                return None
        except json.JSONDecodeError:
            return "the bucket policy is not valid JSON; fix it and add a statement denying aws:SecureTransport=false"
    return ("no bucket policy denies requests without TLS on the bucket and its objects; add a Deny s3:* statement "
            "for Principal '*' on Resource [<bucket ARN>, <bucket ARN>/*] with Condition "
            "{Bool: {aws:SecureTransport: 'false'}}")


BLOCK_PUBLIC_ACCESS = StackRule(
    id="s3-block-public-access",
    description="Artifact buckets block all public access.",
    levels=MANDATORY,
    resource_types=(BUCKET, BUCKET_V2, BUCKET_PUBLIC_ACCESS_BLOCK),
    run=partial(_each_bucket, blocks_public_access),
    fix="aws.s3.BucketPublicAccessBlock with block/ignore/restrict settings all true.",
)

ENCRYPTION = StackRule(
    id="s3-encryption",
    description="Artifact buckets encrypt objects by default.",
    levels=MANDATORY,
    resource_types=(BUCKET, BUCKET_V2, BUCKET_ENCRYPTION, BUCKET_ENCRYPTION_V2),
    run=partial(_each_bucket, encrypted),
    fix="aws.s3.BucketServerSideEncryptionConfiguration with sse_algorithm 'aws:kms'.",
)

VERSIONING = StackRule(
    id="s3-versioning",
    description="Artifact buckets keep object versions.",
    levels=MANDATORY,
    resource_types=(BUCKET, BUCKET_V2, BUCKET_VERSIONING, BUCKET_VERSIONING_V2),
    run=partial(_each_bucket, versioned),
    fix="aws.s3.BucketVersioning with versioning_configuration status 'Enabled'.",
)

TLS_ONLY = StackRule(
    id="s3-tls-only",
    description="Artifact buckets refuse requests that do not use TLS.",
    levels=MANDATORY,
    resource_types=(BUCKET, BUCKET_V2, BUCKET_POLICY),
    run=partial(_each_bucket, tls_only),
    fix="A bucket policy that denies s3:* to everyone when aws:SecureTransport is false.",
)

RULES = [BLOCK_PUBLIC_ACCESS, ENCRYPTION, VERSIONING, TLS_ONLY]

"""The rehearsal's gateway matches paths as the ALB does, and its instances read their
environment from the user data exactly as rendered."""

from __future__ import annotations

import pytest

from infra.components.user_data import Deployment, render_user_data, runtime_env_file
from infra.plan.config import parse_stack_config
from infra.plan.stack import plan_stack
from infra.rehearsal.gateway import path_pattern_matches, rule_matches
from tests.stack_values import valid_values


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("/serving-endpoints/fraud/invocations", "/serving-endpoints/fraud/invocations", True),
    ("/serving-endpoints/fraud/invocations", "/serving-endpoints/Fraud/invocations", False),  # case-sensitive
    ("/serving-endpoints/fraud/invocations", "/serving-endpoints/fraud/invocationsX", False),
    ("/serving-endpoints/*/invocations", "/serving-endpoints/a/b/invocations", True),
    ("/v?/x", "/v1/x", True),
    ("/v?/x", "/v10/x", False),
    ("/a.b", "/aXb", False),  # '.' is literal
])
def test_path_patterns_match_as_the_alb_matches_them(pattern: str, path: str, matches: bool) -> None:
    assert path_pattern_matches(pattern, path) is matches


HEADER_RULE = {"RuleArn": "rule/1", "Conditions": [
    {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/serving-endpoints/fraud/invocations"]}},
    {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Kiln-Served-Model", "Values": ["challenger"]}},
]}


@pytest.mark.parametrize(("headers", "matches"), [
    ({"x-kiln-served-model": "challenger"}, True),
    ({"x-kiln-served-model": "Challenger"}, True),  # header values compare case-insensitively
    ({"x-kiln-served-model": "champion"}, False),
    ({}, False),
])
def test_header_conditions_match_values_as_the_alb_does(headers: dict[str, str], matches: bool) -> None:
    assert rule_matches(HEADER_RULE, "/serving-endpoints/fraud/invocations", headers) is matches


def test_the_runtime_env_is_read_back_from_the_rendered_user_data() -> None:
    served = plan_stack("prod", parse_stack_config(valid_values(), "test")).endpoints[0].served_models[0]
    deployment = Deployment(registry="123.dkr.ecr.us-east-1.amazonaws.com", image="repo@sha256:abc",
                            model_artifact_uri="s3://bucket/models/d/", model_digest="d" * 64, log_group="/kiln/x")
    user_data = render_user_data(served, deployment)

    env = runtime_env_file(user_data)

    expected = served.runtime_settings("s3://bucket/models/d/", "d" * 64, "", "").as_env()
    assert {k: env[k] for k in expected} == expected
    assert env["KILN_MODEL_URI"] == "s3://bucket/models/d/"
    with pytest.raises(ValueError, match="/etc/kiln-runtime.env"):
        runtime_env_file(user_data.replace("kiln-runtime.env <<'ENV'", "other.env <<'ENV'"))

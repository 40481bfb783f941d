"""Physical names AWS would refuse are refused as they are declared: autonamed as pulumi-aws
does it (logical name + '-' + 7 characters, nothing cleaned), checked against botocore's
service models and the documented limits botocore does not encode."""

from __future__ import annotations

import asyncio

import botocore.session
import pulumi
import pytest

from infra.program.physical_names import limits, name_problem

ROLE = "aws:iam/role:Role"
FUNCTION = "aws:lambda/function:Function"


def test_a_dot_in_an_autonamed_lambda_function_is_refused_with_the_api_pattern() -> None:
    problem = name_problem(FUNCTION, "fraud-scorer.champion-fn", {})

    assert problem is not None
    assert "Lambda function name 'fraud-scorer.champion-fn-0000000'" in problem
    assert "[a-zA-Z0-9_-]+" in problem and "API_CreateFunction" in problem


def test_an_autonamed_role_may_be_56_characters_before_its_suffix_and_no_more() -> None:
    assert name_problem(ROLE, "r" * 56, {}) is None
    problem = name_problem(ROLE, "r" * 57, {})

    assert problem is not None and "is 65 characters; AWS takes 1-64 (botocore iam CreateRole.RoleName)" in problem


def test_a_given_name_is_checked_as_given() -> None:
    assert name_problem(ROLE, "x" * 80, {"name": "kiln-role"}) is None
    assert name_problem("aws:lb/targetGroup:TargetGroup", "tg", {"name": "t" * 33}) is not None
    assert name_problem("aws:lb/targetGroup:TargetGroup", "tg", {"name": "kiln-prod-"}) is not None  # ends in '-'


def test_a_name_prefix_leaves_room_for_its_26_unique_characters() -> None:
    assert name_problem(ROLE, "r", {"name_prefix": "p" * 38}) is None
    assert name_problem(ROLE, "r", {"name_prefix": "p" * 39}) is not None


def test_bucket_names_are_lower_case() -> None:
    assert name_problem("aws:s3/bucket:Bucket", "artifacts-bucket", {}) is None
    assert name_problem("aws:s3/bucket:Bucket", "Artifacts", {}) is not None


def test_names_known_only_later_and_unlisted_types_are_left_to_aws() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        later = pulumi.Output.from_input("later")
        assert name_problem(ROLE, "r", {"name": later}) is None
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert name_problem("aws:lb/listener:Listener", "x" * 500, {}) is None


@pytest.mark.parametrize(("type_", "service", "operation", "member"), [
    (ROLE, "iam", "CreateRole", "RoleName"),
    ("aws:cloudwatch/logGroup:LogGroup", "logs", "CreateLogGroup", "logGroupName"),
    ("aws:codebuild/project:Project", "codebuild", "CreateProject", "name"),
])
def test_limits_are_read_from_botocore(type_: str, service: str, operation: str, member: str) -> None:
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    metadata = shape.members[member].metadata

    assert (limits()[type_].min_length, limits()[type_].max_length) == (metadata["min"], metadata["max"])

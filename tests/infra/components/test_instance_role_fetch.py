"""An instance fetches its model with nothing but its role's policy: the upload resource's
code writes the model to S3, the runtime's fetch code downloads it with credentials from
assuming a role that holds exactly `instance_policy`, on a moto server that authorizes
every request against IAM (as AWS does) once the setup is done."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.components.permissions import group_arn, instance_policy, trust_policy
from infra.providers.model_artifact import ModelArtifactProvider
from infra.rehearsal.local_aws import local_aws
from runtime.capture import Exchange, InferenceCapture
from runtime.digest import tree_digest
from runtime.fetch import FetchError, fetch
from runtime.settings import RuntimeSettings
from tests.bake_support import save_pyfunc

REGION = "us-east-1"
BUCKET = "kiln-artifacts"
REPOSITORY = "arn:aws:ecr:us-east-1:123456789012:repository/kiln-images"
LOG_GROUP = "arn:aws:logs:us-east-1:123456789012:log-group:/kiln/dev/fraud-scorer"


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """(endpoint, model uri, digest, role_with(policy) → assumed-role env), setup unchecked."""
    with local_aws(REGION) as (aws, enforce):
        aws.client("s3").create_bucket(Bucket=BUCKET)
        model = save_pyfunc(tmp_path / "model")
        digest = tree_digest(model)
        prefix = f"models/{digest}/"
        ModelArtifactProvider(client_factory=lambda service, region: aws.client(service)).create(
            {"region": REGION, "bucket": BUCKET, "prefix": prefix, "digest": digest, "sourceDir": str(model)})
        iam = aws.client("iam")

        def assume_role_with(policy: str) -> None:
            role = iam.create_role(RoleName="instance", AssumeRolePolicyDocument=trust_policy("ec2.amazonaws.com"))
            iam.put_role_policy(RoleName="instance", PolicyName="least-privilege", PolicyDocument=policy)
            credentials = aws.assume_role(role["Role"]["Arn"], "instance")
            enforce()
            # boto3's default session keeps the credentials it first found; the runtime's
            # process starts with none, so neither may this test.
            monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
            for name, value in aws.process_env(credentials).items():
                monkeypatch.setenv(name, value)

        yield f"s3://{BUCKET}/{prefix}", digest, prefix, assume_role_with


def test_the_runtime_fetches_its_model_with_the_instance_policy(instance: Any, tmp_path: Path) -> None:
    uri, digest, prefix, assume_role_with = instance
    assume_role_with(instance_policy(f"arn:aws:s3:::{BUCKET}", REPOSITORY, LOG_GROUP, artifact_key=prefix,
                                     group_arn=group_arn(LOG_GROUP, "kiln-dev-fraud-scorer-champion")))

    assert fetch(uri, digest, tmp_path / "cache").digest == digest


def test_a_role_that_may_only_get_objects_cannot_list_the_model(instance: Any, tmp_path: Path) -> None:
    """The policy before the fix: GetObject alone. ListObjectsV2 needs s3:ListBucket."""
    uri, digest, prefix, assume_role_with = instance
    assume_role_with(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{BUCKET}/{prefix}*"}]}))

    with pytest.raises(FetchError, match="AccessDenied"):
        fetch(uri, digest, tmp_path / "cache")


def test_the_runtime_writes_inference_rows_under_its_endpoints_prefix_and_nowhere_else(
        instance: Any, caplog: pytest.LogCaptureFixture) -> None:
    uri, digest, prefix, assume_role_with = instance
    assume_role_with(instance_policy(f"arn:aws:s3:::{BUCKET}", REPOSITORY, LOG_GROUP, artifact_key=prefix,
                                     group_arn=group_arn(LOG_GROUP, "kiln-dev-fraud-scorer-champion"),
                                     capture_prefix="inference-tables/fraud-scorer/"))

    def capture_to(endpoint: str) -> InferenceCapture:
        capture = InferenceCapture(RuntimeSettings(model_uri=uri, endpoint=endpoint, served_model="champion",
                                                   capture_uri=f"s3://{BUCKET}/inference-tables/{endpoint}/"))
        capture.offer(Exchange("id-1", None, 1_764_200_000.0, 0.01, 200, b"{}", b"{}"))
        asyncio.run(capture.flush())
        return capture

    own, other = capture_to("fraud-scorer"), capture_to("ticket-router")

    assert (own.written, own.dropped["upload_failed"]) == (1, 0)
    assert (other.written, other.dropped["upload_failed"]) == (0, 1)
    assert "AccessDenied" in caplog.text

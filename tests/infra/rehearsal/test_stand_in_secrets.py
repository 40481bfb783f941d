"""The rehearsal's stand-in provider creates an endpoint's token-hash secret and its first
version in the stand-in account, so a rehearsed instance reads what a deployed one would."""

from __future__ import annotations

from infra.components.endpoint import EMPTY_TOKEN_HASHES
from infra.rehearsal.local_aws import local_aws
from infra.rehearsal.provider import StandInProvider


def test_the_token_secret_and_its_first_version_are_created_in_the_account() -> None:
    with local_aws() as (aws, _):
        provider = StandInProvider(aws)
        secret = provider.secret("fraud-scorer-token-hashes-1a2b3c4", {
            "description": "tokens", "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k", "tags": {"kiln:stack": "dev"}})
        version = provider.secret_version("fraud-scorer-token-hashes-initial-5d6e7f8", {
            "secretId": secret["id"], "secretString": {"4dabf18193072939515e22adba3388ea": "1b47061264138c4ac30d75fd1eb44270",
                                                       "value": EMPTY_TOKEN_HASHES}})

        assert version["arn"] == secret["arn"]
        stored = aws.client("secretsmanager").get_secret_value(SecretId=secret["arn"])
        assert stored["SecretString"] == EMPTY_TOKEN_HASHES
        assert stored["Name"] == "fraud-scorer-token-hashes-1a2b3c4"
        assert provider.skipped == ["secret fraud-scorer-token-hashes-1a2b3c4: encrypted with moto's default key, not "
                                    "arn:aws:kms:us-east-1:123456789012:key/k"]

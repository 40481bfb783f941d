"""Secrets on an instance: the runtime resolves its secret environment variables and its token
hashes at start with nothing but the instance role's policy (`instance_policy` with the served
model's references), on a moto server that authorizes every request against IAM, as AWS does.
A token added to or revoked from the secret takes effect without a restart."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra.components.permissions import group_arn, instance_policy, trust_policy
from infra.rehearsal.local_aws import local_aws
from runtime.auth import token_sha256
from runtime.secrets import SecretError, parse_reference, resolve_environment
from tests.runtime_models import Switchboard, save, switchboard_body
from tests.runtime_support import start_runtime

REGION = "us-east-1"
# moto's default account: the log group ARN places the role's secret grants in it.
LOG_GROUP = "arn:aws:logs:us-east-1:123456789012:log-group:/kiln/prod/fraud-scorer"
PASSWORD_REFERENCE = "{{secrets/fraud/db-password}}"
OLD_TOKEN, NEW_TOKEN = "old-token", "new-token"


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """(aws, token secret ARN, parameter ARN, instance env): secrets created and the instance
    role assumed before IAM is enforced; this process then holds the instance's credentials."""
    with local_aws(REGION) as (aws, enforce):
        secrets = aws.client("secretsmanager")
        secrets.create_secret(Name="fraud/db-password", SecretString="hunter2")
        secrets.create_secret(Name="fraud/other-team", SecretString="not yours")
        token_arn = secrets.create_secret(Name="kiln/prod/fraud-scorer/tokens",
                                          SecretString=f"# fraud-scorer\n{token_sha256(OLD_TOKEN)}\n")["ARN"]
        aws.client("ssm").put_parameter(Name="/fraud/api-key", Value="from-ssm", Type="SecureString")
        parameter_arn = f"arn:aws:ssm:{REGION}:123456789012:parameter/fraud/api-key"
        policy = instance_policy(
            "arn:aws:s3:::kiln-artifacts", "arn:aws:ecr:us-east-1:123456789012:repository/kiln", LOG_GROUP,
            artifact_key="models/abc/", group_arn=group_arn(LOG_GROUP, "kiln-prod-fraud-scorer-champion"),
            secrets=[token_arn, PASSWORD_REFERENCE, parameter_arn],
        )
        iam = aws.client("iam")
        role = iam.create_role(RoleName="instance", AssumeRolePolicyDocument=trust_policy("ec2.amazonaws.com"))
        iam.put_role_policy(RoleName="instance", PolicyName="least-privilege", PolicyDocument=policy)
        env = aws.process_env(aws.assume_role(role["Role"]["Arn"], "instance"))
        enforce()
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield aws, token_arn, parameter_arn, env


def test_the_instance_role_reads_its_own_secrets_in_both_reference_forms(account: Any) -> None:
    _, _, parameter_arn, _ = account
    pairs = (("DB_PASSWORD", PASSWORD_REFERENCE), ("API_KEY", parameter_arn))

    assert resolve_environment(pairs) == {"DB_PASSWORD": "hunter2", "API_KEY": "from-ssm"}


# AWS answers AccessDeniedException; moto's refusal is XML botocore cannot parse as JSON, so
# only its status is left.
DENIED = r"(AccessDenied|HTTP 403 Forbidden)"


def test_the_instance_role_is_denied_a_secret_it_does_not_reference(account: Any) -> None:
    with pytest.raises(SecretError, match=rf"cannot read secretsmanager secret fraud/other-team: {DENIED}"):
        resolve_environment((("OTHER", "{{secrets/fraud/other-team}}"),))
    with pytest.raises(SecretError, match=DENIED):
        resolve_environment((("OTHER", "arn:aws:ssm:us-east-1:123456789012:parameter/fraud/other"),))


def test_a_malformed_reference_names_the_accepted_forms() -> None:
    with pytest.raises(SecretError, match=r"'\{\{secret/fraud/x\}\}' is not a secret reference; write \{\{secrets/<scope>/<key>\}\}"):
        parse_reference("{{secret/fraud/x}}")


def _invoke(url: str, action: str, token: str | None) -> httpx.Response:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(f"{url}/invocations", content=switchboard_body(action), headers=headers, timeout=30)


def test_a_runtime_on_the_instance_role_requires_a_token_sees_its_secret_and_rotates_without_restart(
    account: Any, tmp_path: Path,
) -> None:
    aws, token_arn, _, env = account
    model = save(Switchboard(), tmp_path / "switchboard", example_action="ok")
    runtime = start_runtime(
        tmp_path, "runtime", KILN_MODEL_URI=str(model), KILN_AUTH_REQUIRED="true",
        KILN_AUTH_TOKEN_SHA256_SECRET=token_arn, KILN_AUTH_REFRESH_SECONDS="0.5",
        KILN_SECRET_ENVIRONMENT=f"DB_PASSWORD={PASSWORD_REFERENCE}", **env,
    )
    try:
        assert runtime.wait_for_ping()[-1:] == [200], runtime.log()
        assert _invoke(runtime.url, "ok", None).status_code == 401
        assert _invoke(runtime.url, "ok", "guess").status_code == 401
        answered = _invoke(runtime.url, "env:DB_PASSWORD", OLD_TOKEN)
        assert answered.status_code == 200 and answered.json() == {"predictions": [{"done": "hunter2"}]}

        aws.client("secretsmanager").put_secret_value(SecretId=token_arn, SecretString=token_sha256(NEW_TOKEN))
        deadline = time.monotonic() + 15
        while _invoke(runtime.url, "ok", OLD_TOKEN).status_code != 401 and time.monotonic() < deadline:
            time.sleep(0.2)

        assert _invoke(runtime.url, "ok", OLD_TOKEN).status_code == 401
        assert _invoke(runtime.url, "ok", NEW_TOKEN).status_code == 200
        assert runtime.process.poll() is None
    finally:
        runtime.stop()


def test_a_runtime_that_cannot_read_its_token_secret_never_becomes_ready(account: Any, tmp_path: Path) -> None:
    _, _, _, env = account
    model = save(Switchboard(), tmp_path / "switchboard", example_action="ok")
    runtime = start_runtime(tmp_path, "runtime", KILN_MODEL_URI=str(model), KILN_AUTH_REQUIRED="true",
                            KILN_AUTH_TOKEN_SHA256_SECRET="{{secrets/fraud/other-team}}", **env)
    try:
        assert runtime.process.wait(60) == 1
        assert re.search(rf"cannot serve .*: cannot read secretsmanager secret fraud/other-team: {DENIED}", runtime.log())
    finally:
        runtime.stop()

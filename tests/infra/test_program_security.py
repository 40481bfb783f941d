"""Auth and secrets in the real program, under mocks: an internet-facing prod stack gets a token
secret per endpoint, and its instances are told only where their secrets live (references),
read by a role that may read exactly those; nothing secret is written into user data."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infra.commands.cli import main
from infra.components.endpoint import EMPTY_TOKEN_HASHES
from infra.components.user_data import runtime_env_file
from infra.plan.config import ConfigError
from infra.preview.program import ProgramRun, Registration, run_program
from runtime.auth import parse_token_hashes
from tests.conftest import stack_config, write_stack

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PARAMETER = "arn:aws:ssm:us-east-1:123456789012:parameter/fraud/api-key"
PASSWORD = "{{secrets/fraud/db-password}}"


def internet_facing_prod(store: Any, **extra: Any) -> dict[str, Any]:
    """Prod open to everyone over HTTPS, its champion given two secret variables."""
    config = json.loads(json.dumps(stack_config("prod", store)))
    config["kiln:gateway"] = {**config["kiln:gateway"], "internetFacing": True, "allowedCidrs": ["0.0.0.0/0"]}
    config["kiln:endpoints"][0]["servedModels"][0]["environmentVars"] = {
        "LOG_LEVEL": "info", "DB_PASSWORD": PASSWORD, "API_KEY": PARAMETER}
    return {**config, **{f"kiln:{key}": value for key, value in extra.items()}}


@pytest.fixture(scope="module")
def run(example_store: Any) -> ProgramRun:
    return run_program("prod", internet_facing_prod(example_store, kmsKeyArn=KMS_KEY), preview=False)


def child(run: ProgramRun, type_: str, parent_name: str) -> Registration:
    parent = run.named(parent_name)
    return next(r for r in run.registrations if r.type == type_ and r.parent == parent.urn)


def user_data(run: ProgramRun, served_model: str) -> str:
    return base64.b64decode(child(run, LAUNCH_TEMPLATE, served_model).inputs["userData"]).decode()


def statement(run: ProgramRun, served_model: str, sid: str) -> dict[str, Any]:
    policy = json.loads(child(run, ROLE_POLICY, served_model).inputs["policy"])
    return next(s for s in policy["Statement"] if s["Sid"] == sid)


def test_each_endpoint_of_an_internet_facing_stack_gets_a_token_secret_that_accepts_no_token_yet(run: ProgramRun) -> None:
    secrets = {r.parent.rsplit("::", 1)[1]: r for r in run.of_type(SECRET)}

    assert sorted(secrets) == ["fraud-scorer", "ticket-router"]
    assert run.outputs["tokenHashSecrets"] == {name: secret.outputs["arn"] for name, secret in secrets.items()}
    # Instances read the secret only once its first version exists: they take the version's ARN.
    version = child(run, SECRET_VERSION, "fraud-scorer")
    assert version.outputs["arn"] == secrets["fraud-scorer"].outputs["arn"]
    template = child(run, LAUNCH_TEMPLATE, "fraud-scorer.champion")
    assert version.urn in template.property_dependencies.get("userData", template.dependencies)
    assert secrets["fraud-scorer"].inputs["kmsKeyId"] == KMS_KEY
    # pulumi-aws marks the value secret: the engine sees it wrapped, as in the state file.
    assert version.inputs["secretString"]["value"] == EMPTY_TOKEN_HASHES
    assert parse_token_hashes(EMPTY_TOKEN_HASHES.splitlines(), "initial") == ()
    assert "secretString" in version.options["ignoreChanges"]  # rotation is the team's, not the next `pulumi up`'s


def test_user_data_carries_where_the_secrets_live_and_never_their_values(run: ProgramRun) -> None:
    secret_arn = child(run, SECRET, "fraud-scorer").outputs["arn"]
    env = runtime_env_file(user_data(run, "fraud-scorer.champion"))

    assert env["KILN_AUTH_REQUIRED"] == "true"
    assert env["KILN_AUTH_TOKEN_SHA256_SECRET"] == secret_arn
    assert env["KILN_SECRET_ENVIRONMENT"] == f"API_KEY={PARAMETER},DB_PASSWORD={PASSWORD}"
    assert env["LOG_LEVEL"] == "info"
    assert "DB_PASSWORD" not in env and "API_KEY" not in env
    assert "KILN_AUTH_TOKEN_SHA256" not in env


def test_the_instance_role_reads_exactly_its_own_secrets(run: ProgramRun) -> None:
    secret_arn = child(run, SECRET, "fraud-scorer").outputs["arn"]
    log_group = child(run, "aws:cloudwatch/logGroup:LogGroup", "fraud-scorer.champion").outputs["arn"]
    account = log_group.split(":")[4]

    assert statement(run, "fraud-scorer.champion", "ReadOwnSecrets")["Resource"] == sorted(
        [secret_arn, f"arn:aws:secretsmanager:us-east-1:{account}:secret:fraud/db-password-??????"])
    assert statement(run, "fraud-scorer.champion", "ReadOwnParameters")["Resource"] == [PARAMETER]
    # The challenger references no variable: only its endpoint's token secret.
    assert statement(run, "fraud-scorer.challenger", "ReadOwnSecrets")["Resource"] == [secret_arn]
    decrypt = statement(run, "fraud-scorer.champion", "DecryptWithStackKey")
    assert decrypt["Resource"] == KMS_KEY
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == [
        "s3.us-east-1.amazonaws.com", "secretsmanager.us-east-1.amazonaws.com", "ssm.us-east-1.amazonaws.com"]


def test_session_manager_gets_its_own_calls_not_the_managed_policy_that_reads_every_parameter(run: ProgramRun) -> None:
    attachments = run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")

    assert not [a for a in attachments if "AmazonSSMManagedInstanceCore" in a.inputs.get("policyArn", "")]
    session = statement(run, "fraud-scorer.champion", "SessionManager")
    assert "ssmmessages:OpenDataChannel" in session["Action"]
    assert not [action for action in session["Action"] if action.startswith("ssm:GetParameter")]


def test_the_customer_key_encrypts_volumes_and_the_artifact_bucket(run: ProgramRun) -> None:
    [mapping] = child(run, LAUNCH_TEMPLATE, "fraud-scorer.champion").inputs["blockDeviceMappings"]
    encryption = child(run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       "artifacts")

    assert mapping["ebs"]["kmsKeyId"] == KMS_KEY
    [rule] = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KMS_KEY}


def test_prod_logs_gateway_access_to_its_own_sse_s3_bucket_and_protects_the_load_balancer(run: ProgramRun) -> None:
    balancer = run.of_type("aws:lb/loadBalancer:LoadBalancer")[0].inputs
    log_bucket = child(run, "aws:s3/bucket:Bucket", "gateway-access-logs").outputs
    encryption = child(run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       "gateway-access-logs").inputs
    policy = json.loads(child(run, "aws:s3/bucketPolicy:BucketPolicy", "gateway-access-logs").inputs["policy"])
    [delivery] = [s for s in policy["Statement"] if s["Sid"] == "LoadBalancerAccessLogs"]

    assert balancer["enableDeletionProtection"] is True
    assert balancer["accessLogs"] == {"bucket": log_bucket["bucket"], "prefix": "alb", "enabled": True}
    # ELB delivers access logs only to SSE-S3 buckets: not the artifact store's KMS key.
    assert encryption["rules"][0]["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    assert delivery["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}  # us-east-1's ELB account
    assert delivery["Resource"] == f"{log_bucket['arn']}/alb/AWSLogs/*"


def test_an_internal_stack_asks_no_token_and_reads_no_secret(example_store: Any) -> None:
    run = run_program("prod", stack_config("prod", example_store), preview=False)
    env = runtime_env_file(user_data(run, "fraud-scorer.champion"))

    assert run.of_type(SECRET) == []
    assert env["KILN_AUTH_REQUIRED"] == "false" and "KILN_AUTH_TOKEN_SHA256_SECRET" not in env
    policy = json.loads(child(run, ROLE_POLICY, "fraud-scorer.champion").inputs["policy"])
    assert not [s for s in policy["Statement"] if s["Sid"] in ("ReadOwnSecrets", "ReadOwnParameters")]


def test_user_data_over_16_kb_stops_the_plan_naming_the_served_model(example_store: Any, tmp_path: Path) -> None:
    config = stack_config("prod", example_store)
    config["kiln:endpoints"][0]["servedModels"][0]["environmentVars"] = {f"FEATURE_{i}": "x" * 200 for i in range(80)}

    with pytest.raises(ConfigError, match=r"servedModels \(champion\)\.environmentVars: the instance user data would be "
                                          r"[0-9,]+ bytes, over EC2's limit of 16,384"):
        run_program("prod", config, preview=False)

    result = CliRunner().invoke(main, ["plan", str(write_stack(tmp_path, config, stack="prod"))])
    assert result.exit_code == 2, result.output
    assert "over EC2's limit of 16,384" in result.stderr and "Traceback" not in result.output

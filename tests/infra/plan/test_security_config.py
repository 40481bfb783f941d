"""Auth and secrets in the stack file: what is accepted, what is refused (naming the file and
key path, with the form to write instead), and what the plan makes of it."""

from __future__ import annotations

from typing import Any

import pytest

from infra.plan.config import ConfigError, parse_stack_config
from infra.plan.stack import plan_stack
from tests.stack_values import valid_values

SOURCE = "stacks/Pulumi.test.yaml"
TOKENS = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kiln/fraud/tokens-AbCdEf"
PARAMETER = "arn:aws:ssm:us-east-1:123456789012:parameter/fraud/api-key"
ENV_PATH = "endpoints[0].servedModels[0].environmentVars"


def with_env(**env: str) -> dict[str, Any]:
    values = valid_values()
    values["endpoints"][0]["servedModels"][0]["environmentVars"] = env
    return values


def problems_for(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        parse_stack_config(values, SOURCE)
    assert str(refused.value).startswith(f"{SOURCE}: ")
    return refused.value.problems


def internet_facing(values: dict[str, Any]) -> dict[str, Any]:
    values["gateway"] = {"internetFacing": True, "allowedCidrs": ["0.0.0.0/0"],
                         "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"}
    values["network"]["publicSubnetIds"] = ["subnet-0a2b3c4d", "subnet-0b2c3d4e"]
    return values


@pytest.mark.parametrize(("name", "value", "why"), [
    ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", "holds an AWS access key id"),
    ("BOTO_CONFIG", "key=ASIAIOSFODNN7EXAMPLE", "holds an AWS access key id"),
    ("SIGNING_KEY", "-----BEGIN RSA PRIVATE KEY-----MIIE", "holds a private key"),
    ("DB_PASSWORD", "hunter2", "is named like a secret (DB_PASSWORD)"),
    ("HF_TOKEN", "hf_abc", "is named like a secret (HF_TOKEN)"),
    ("OPENAI_API_KEY", "sk-abc", "is named like a secret (OPENAI_API_KEY)"),
])
def test_a_credential_in_plain_text_is_refused_with_the_reference_form(name: str, value: str, why: str) -> None:
    [problem] = problems_for(with_env(**{name: value}))

    assert problem.startswith(f"{ENV_PATH}.{name}: {why}: a plain value is written into the instance's user data")
    assert "write a reference instead: {{secrets/<scope>/<key>}}" in problem


@pytest.mark.parametrize("value", ["{{secret/fraud/db}}", "{{secrets/fraud}}", "arn:aws:secretsmanager:us-east-1:12:secret:x",
                                   "arn:aws:ssm:us-east-1:123456789012:document/x"])
def test_a_malformed_reference_is_refused_naming_the_forms(value: str) -> None:
    [problem] = problems_for(with_env(DB_PASSWORD=value))

    assert problem == (f"{ENV_PATH}.DB_PASSWORD: {value!r} is not a secret reference; write {{{{secrets/<scope>/<key>}}}} "
                       "(the Secrets Manager secret <scope>/<key>), arn:aws:secretsmanager:<region>:<account>:secret:"
                       "<name>-<suffix> or arn:aws:ssm:<region>:<account>:parameter/<name>")


def test_plain_settings_that_only_look_close_pass() -> None:
    config = parse_stack_config(with_env(TOKENIZERS_PARALLELISM="false", LOG_LEVEL="info", KEYWORDS="a,b"), SOURCE)
    assert config.endpoints[0].served_models[0].plain_environment_vars == {
        "TOKENIZERS_PARALLELISM": "false", "LOG_LEVEL": "info", "KEYWORDS": "a,b"}


def test_references_reach_the_plan_apart_from_plain_values() -> None:
    values = with_env(LOG_LEVEL="info", DB_PASSWORD="{{ secrets/fraud/db-password }}", API_KEY=PARAMETER)
    champion = plan_stack("test", parse_stack_config(values, SOURCE)).served_models[0]

    assert champion.environment_vars == {"LOG_LEVEL": "info"}
    assert champion.secret_environment_vars == {"DB_PASSWORD": "{{ secrets/fraud/db-password }}", "API_KEY": PARAMETER}
    settings = champion.runtime_settings("s3://b/models/d/", "d" * 64)
    assert settings.secret_environment == (("API_KEY", PARAMETER), ("DB_PASSWORD", "{{ secrets/fraud/db-password }}"))


def test_auth_is_on_by_default_exactly_when_the_gateway_is_internet_facing() -> None:
    internal = plan_stack("test", parse_stack_config(valid_values(), SOURCE))
    public = plan_stack("test", parse_stack_config(internet_facing(valid_values()), SOURCE))

    assert [e.auth for e in internal.endpoints] == [None]
    [endpoint] = public.endpoints
    assert endpoint.auth is not None and endpoint.creates_token_secret
    assert all(served.runtime_settings("u", "d" * 64, created_token_secret=TOKENS).auth_required
               for served in endpoint.served_models)


def test_an_endpoint_may_name_its_token_secret_and_refresh_period() -> None:
    values = internet_facing(valid_values())
    values["endpoints"][0]["auth"] = {"tokenHashes": TOKENS, "refreshSeconds": 30}
    [endpoint] = plan_stack("test", parse_stack_config(values, SOURCE)).endpoints

    assert not endpoint.creates_token_secret
    settings = endpoint.served_models[0].runtime_settings("u", "d" * 64)
    assert (settings.auth_required, settings.auth_token_sha256_secret, settings.auth_refresh_seconds) == (True, TOKENS, 30)
    assert endpoint.served_models[0].secret_references() == [TOKENS]


def test_an_internal_endpoint_may_turn_auth_on_and_a_public_one_off() -> None:
    on = valid_values()
    on["endpoints"][0]["auth"] = {}
    off = internet_facing(valid_values())
    off["endpoints"][0]["auth"] = {"enabled": False}

    assert plan_stack("test", parse_stack_config(on, SOURCE)).endpoints[0].auth is not None
    # Allowed by the schema; the policy pack refuses it in prod (internet-facing-requires-auth).
    assert plan_stack("test", parse_stack_config(off, SOURCE)).endpoints[0].auth is None


@pytest.mark.parametrize(("auth", "expected"), [
    ({"enabled": False, "tokenHashes": TOKENS}, "endpoints[0].auth.tokenHashes: has no effect with enabled: false"),
    ({"tokenHashes": "my-tokens"}, "endpoints[0].auth.tokenHashes: 'my-tokens' is not a secret reference"),
    ({"refreshSeconds": 5}, "endpoints[0].auth.refreshSeconds: Input should be greater than or equal to 10"),
    ({"enabeld": True}, "endpoints[0].auth.enabeld: unknown key 'enabeld'; did you mean enabled?"),
])
def test_bad_auth_settings_name_their_key(auth: dict[str, Any], expected: str) -> None:
    values = valid_values()
    values["endpoints"][0]["auth"] = auth
    [problem] = problems_for(values)
    assert problem.startswith(expected)


def test_a_customer_key_must_be_a_kms_key_arn() -> None:
    values = valid_values()
    values["kmsKeyArn"] = "alias/kiln"
    [problem] = problems_for(values)
    assert problem.startswith("kmsKeyArn: String should match pattern")

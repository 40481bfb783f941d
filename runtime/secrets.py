"""Secret references: where a secret lives, written in the stack file instead of its value.

Two spellings are accepted (docs/security.md):

- Databricks' `{{secrets/<scope>/<key>}}`: the Secrets Manager secret named `<scope>/<key>`
  in the stack's own account and region;
- an ARN: of a Secrets Manager secret (`arn:aws:secretsmanager:…:secret:<name>-<6 chars>`) or
  of an SSM parameter (`arn:aws:ssm:…:parameter/<name>`, a SecureString).

The plan writes only references into the instance's user data (which anyone allowed
ec2:DescribeInstanceAttribute can read); the runtime resolves them at start, with the
instance role, which may read exactly the secrets its served model references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

# Databricks: "{{secrets/<scope-name>/<secret-name>}}"; both parts become one Secrets Manager
# name, whose characters are letters, digits and /_+=.@- (CreateSecret's Name).
DATABRICKS_REFERENCE = re.compile(r"^\{\{\s*secrets/([A-Za-z0-9_+=.@-]+)/([A-Za-z0-9_+=.@-]+)\s*\}\}$")
SECRETS_MANAGER_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$")
SSM_PARAMETER_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/[A-Za-z0-9/_.-]+$")

REFERENCE_FORMS = (
    "{{secrets/<scope>/<key>}} (the Secrets Manager secret <scope>/<key>), "
    "arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix> or arn:aws:ssm:<region>:<account>:parameter/<name>"
)


class SecretError(Exception):
    """A secret reference that is malformed or cannot be read; names the reference and why."""


@dataclass(frozen=True)
class SecretRef:
    """One secret: the service that holds it and the id that service's read call takes."""

    service: Literal["secretsmanager", "ssm"]
    # GetSecretValue's SecretId (a name or an ARN), or GetParameter's Name (an ARN).
    id: str

    def iam_resource(self, partition: str, region: str, account: str) -> str:
        """The ARN an IAM policy names to allow reading this secret and no other.

        Secrets Manager adds six random characters to a secret's ARN; a policy naming a secret
        by name matches them with `-??????`, as AWS documents
        (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html).
        """
        if self.id.startswith("arn:"):
            return self.id
        return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{self.id}-??????"

    def read(self, client: Any) -> str:
        """The secret's current value, with a boto3 client of this reference's service."""
        if self.service == "ssm":
            return client.get_parameter(Name=self.id, WithDecryption=True)["Parameter"]["Value"]
        return client.get_secret_value(SecretId=self.id)["SecretString"]


def is_reference_like(value: str) -> bool:
    """Written as a reference (perhaps a wrong one) rather than as a plain value."""
    stripped = value.strip()
    return stripped.startswith("{{") or re.match(r"^arn:aws[a-z-]*:(secretsmanager|ssm):", stripped) is not None


def parse_reference(value: str) -> SecretRef:
    """The reference `value` spells; SecretError says which forms are accepted."""
    stripped = value.strip()
    if match := DATABRICKS_REFERENCE.match(stripped):
        return SecretRef("secretsmanager", f"{match.group(1)}/{match.group(2)}")
    if SECRETS_MANAGER_ARN.match(stripped):
        return SecretRef("secretsmanager", stripped)
    if SSM_PARAMETER_ARN.match(stripped):
        return SecretRef("ssm", stripped)
    raise SecretError(f"{value!r} is not a secret reference; write {REFERENCE_FORMS}")


# What a credential looks like when pasted as a plain value: an AWS access key id (its
# documented prefixes), a PEM private key, or a variable whose name says it holds a secret.
ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
SECRET_NAME_WORDS = {"SECRET", "PASSWORD", "PASSWD", "TOKEN", "CREDENTIAL", "CREDENTIALS", "APIKEY"}


def credential_problem(name: str, value: str) -> str | None:
    """Why `value` looks like a credential written in plain text, or None."""
    if ACCESS_KEY_ID.search(value):
        return "holds an AWS access key id"
    if PRIVATE_KEY.search(value):
        return "holds a private key"
    words = set(name.upper().split("_"))
    if words & SECRET_NAME_WORDS or name.upper().endswith(("_API_KEY", "_ACCESS_KEY")):
        return f"is named like a secret ({name})"
    return None


def read_secret(ref: SecretRef, session: Any | None = None) -> str:
    """Read one secret with the process's AWS credentials (on an instance, its role)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    # boto3 honours AWS_ENDPOINT_URL, so the same code reads from moto on loopback in tests.
    client = (session or boto3.session.Session()).client(ref.service)
    try:
        return ref.read(client)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "")) or str(error)
        # A refusal whose body botocore cannot parse keeps only its HTTP status as the code.
        if code.isdigit():
            code = f"HTTP {code} {HTTPStatus(int(code)).phrase}"
        raise SecretError(f"cannot read {ref.service} secret {ref.id}: {code}") from None
    except BotoCoreError as error:
        raise SecretError(f"cannot read {ref.service} secret {ref.id}: {error}") from None


def resolve_environment(pairs: tuple[tuple[str, str], ...], session: Any | None = None) -> dict[str, str]:
    """Each (variable, reference) pair's variable with its secret's current value."""
    return {name: read_secret(parse_reference(reference), session) for name, reference in pairs}

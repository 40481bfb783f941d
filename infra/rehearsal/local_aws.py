"""A stand-in AWS account on 127.0.0.1: moto's server, in its own process, that authorizes
every request against IAM once told to, as AWS does, over TLS (the artifact bucket's policy
denies any request not sent over TLS, and moto applies that bucket policy).

IAM enforcement is process-wide in moto, so the server runs in a subprocess, not in a thread
of the rehearsal. moto checks actions and resources of identity policies; it does not
evaluate `Condition` blocks, so a condition that is too narrow shows only on AWS.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import boto3

from infra.local.stack import free_port

REGION = "us-east-1"
START_TIMEOUT_SECONDS = 30
# Who stands in for AWS's own services (EC2 starting instances, the ALB probing targets) and
# for the person running `pulumi up`: allowed everything, as those are in the account.
OPERATOR = "kiln-rehearsal-operator"
ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


class LocalAwsError(Exception):
    """moto is missing or its server did not come up."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def as_env(self) -> dict[str, str]:
        """The variables boto3 reads in a process that has no other credentials."""
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


@dataclass
class LocalAws:
    endpoint: str
    region: str
    operator: Credentials
    # The public CAs plus the server's self-signed certificate: what clients here trust.
    ca_bundle: Path

    def client(self, service: str, credentials: Credentials | None = None) -> Any:
        """A boto3 client for this account; the operator's credentials unless others are given.
        Each from its own session: boto3's default session is not safe across threads."""
        keys = credentials or self.operator
        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint, region_name=self.region, verify=str(self.ca_bundle),
            aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
            aws_session_token=keys.session_token)

    def assume_role(self, role_arn: str, session: str) -> Credentials:
        """Temporary credentials of a role (an hour's), as EC2 or Lambda get them for an
        instance or a function. Only before `enforce()`: the roles trust AWS services, not
        the operator, and moto checks that trust once enforcing."""
        found = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session)["Credentials"]
        return Credentials(found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"])

    def process_env(self, credentials: Credentials) -> dict[str, str]:
        """Environment for a process that should reach this account, and only it, as `credentials`."""
        return {**credentials.as_env(), "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region, "AWS_CA_BUNDLE": str(self.ca_bundle)}


def _self_signed_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1 and its key, valid for a day, and a CA bundle of the
    public CAs (certifi's, as requests and botocore use) with it added."""
    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path, bundle_path = directory / "moto.crt", directory / "moto.key", directory / "ca-bundle.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    bundle_path.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + cert_path.read_bytes())
    return cert_path, key_path, bundle_path


def _wait_until_up(endpoint: str, process: subprocess.Popen[bytes], tls: ssl.SSLContext) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1, context=tls).close()
            return
        except OSError as error:
            if process.poll() is not None:
                raise LocalAwsError(f"moto's server exited with code {process.returncode}") from error
            if time.monotonic() > deadline:
                raise LocalAwsError(f"moto's server did not answer within {START_TIMEOUT_SECONDS} s") from error
            time.sleep(0.1)


@contextmanager
def enforcing_moto_server() -> Iterator[tuple[str, Any, Path]]:
    """A moto server on https://127.0.0.1. Yields (endpoint, enforce, CA bundle): requests are
    unchecked until `enforce()`, then every one is authorized against the caller's IAM policies."""
    try:
        import moto.server  # noqa: F401 (present: the subprocess can run it)
    except ImportError as error:
        raise LocalAwsError("the rehearsal needs moto's server: pip install 'moto[server]>=5'") from error
    with TemporaryDirectory(prefix="kiln-moto-") as scratch:
        cert, key, bundle = _self_signed_certificate(Path(scratch))
        tls = ssl.create_default_context(cafile=str(cert))
        port = str(free_port())
        endpoint = f"https://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.rehearsal.moto_server", "-H", "127.0.0.1", "-p", port, "-c", str(cert), "-k", str(key)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def enforce() -> None:
            # INITIAL_NO_AUTH_ACTION_COUNT, set at run time: 0 more unchecked requests.
            request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                             headers={"Content-Type": "text/plain"})
            urllib.request.urlopen(request, timeout=10, context=tls).close()

        try:
            _wait_until_up(endpoint, process, tls)
            yield endpoint, enforce, bundle
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def local_aws(region: str = REGION) -> Iterator[tuple[LocalAws, Any]]:
    """A moto account with an operator who may do anything; yields (account, enforce).
    Until `enforce()` nothing is checked (what `pulumi up` creates); after it, every
    request is checked against the caller's policies."""
    with enforcing_moto_server() as (endpoint, enforce, ca_bundle):
        unchecked = LocalAws(endpoint, region, Credentials("unchecked", "unchecked"), ca_bundle).client("iam")
        unchecked.create_user(UserName=OPERATOR)
        unchecked.put_user_policy(UserName=OPERATOR, PolicyName="operator", PolicyDocument=ALLOW_ALL)
        key = unchecked.create_access_key(UserName=OPERATOR)["AccessKey"]
        yield LocalAws(endpoint, region, Credentials(key["AccessKeyId"], key["SecretAccessKey"]), ca_bundle), enforce

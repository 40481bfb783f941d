"""`kiln amis STACK` against moto's SSM on loopback, which serves AWS's public AMI parameters."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml
from click.testing import CliRunner

from infra.commands.cli import main
from infra.plan.catalog import CPU_AMI_PARAMETER, GPU_AMI_PARAMETER
from tests.fakes import moto_server


@pytest.fixture
def ssm_endpoint(monkeypatch: pytest.MonkeyPatch):
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield endpoint


def test_amis_prints_the_published_cpu_ami_as_the_block_to_pin(ssm_endpoint: str) -> None:
    published = boto3.client("ssm", region_name="us-east-1").get_parameter(Name=CPU_AMI_PARAMETER)["Parameter"]["Value"]

    result = CliRunner().invoke(main, ["amis", "dev"])

    assert result.exit_code == 0, result.output
    assert f"cpu: {published} ({CPU_AMI_PARAMETER}; not pinned)" in result.output
    block = result.output[result.output.index("kiln:amis:"):]
    assert yaml.safe_load(block) == {"kiln:amis": {"cpu": published}}


def test_amis_names_a_parameter_the_region_does_not_publish(ssm_endpoint: str) -> None:
    # moto's copy of the public parameters has the Amazon Linux ones, not the Deep Learning AMI's.
    result = CliRunner().invoke(main, ["amis", "prod"])

    assert result.exit_code == 2
    assert f"us-east-1 has no SSM parameter {GPU_AMI_PARAMETER}" in result.output


def test_amis_without_credentials_is_invalid_input_saying_how_to_give_them(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # as in a fresh `kiln` process: nothing cached

    result = CliRunner().invoke(main, ["amis", "dev"])

    assert result.exit_code == 2, result.output
    assert "no AWS credentials" in result.output and "AWS_PROFILE" in result.output

"""Inputs that used to crash a command with a traceback and exit 1, which CI reads as a policy
failure: each is now exit 2 naming the stack file and the key path, and a real crash is 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from mlflow.store.artifact import s3_artifact_repo

from infra.commands.cli import main
from infra.plan.config import STACKS_DIR, read_stack_file
from infra.plan.stack_file import MAX_ARG_STRLEN
from tests.conftest import write_stack


def dev_with(tmp_path: Path, change: Any) -> Path:
    config = read_stack_file(STACKS_DIR / "Pulumi.dev.yaml")
    change(config["kiln:endpoints"][0]["servedModels"][0])
    return write_stack(tmp_path, config, "dev")


def check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", str(path)])
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def test_a_utf16_stack_file_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_bytes((STACKS_DIR / "Pulumi.dev.yaml").read_text().encode("utf-16"))

    assert check(path) == (2, f"error: invalid stack config {path}: is UTF-16 text; save it as UTF-8, which is what "
                              "the Pulumi CLI reads")


def test_a_value_too_large_for_the_policy_pack_s_environment_is_exit_2(tmp_path: Path) -> None:
    path = dev_with(tmp_path, lambda served: served["environmentVars"].update(BLOB="x" * MAX_ARG_STRLEN))

    code, output = check(path)

    assert code == 2
    assert f"{path}: config.kiln:endpoints: 128 KiB of the stack's 128 KiB config" in output


def test_infinite_expected_qps_is_exit_2(tmp_path: Path) -> None:
    def infinite(served: dict[str, Any]) -> None:
        del served["workloadSize"]
        served.update(expectedQps=float("inf"), expectedLatencyMs=40)

    code, output = check(dev_with(tmp_path, infinite))

    assert code == 2
    assert "endpoints[0].servedModels[0].expectedQps: Input should be a finite number" in output


def test_an_instance_type_that_cannot_hold_one_worker_is_exit_2(tmp_path: Path) -> None:
    code, output = check(dev_with(tmp_path, lambda served: served.update(instanceType="c7i.xlarge")))

    assert code == 2
    assert ("endpoints[0].servedModels[0].instanceType: c7i.xlarge has 8 GiB, and one CPU_MEDIUM worker needs 8 GiB "
            "+ 2 GiB for the OS; choose one of c7i.2xlarge,") in output


def test_an_s3_model_without_aws_credentials_is_exit_2_naming_the_served_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # As in a fresh `kiln` process: no credentials cached by an earlier test's boto3 session
    # or MLflow's cached S3 client.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    s3_artifact_repo._cached_get_s3_client.cache_clear()

    code, output = check(dev_with(tmp_path, lambda served: served.update(modelUri="s3://kiln-models/fraud/model")))

    assert code == 2
    assert ("stacks/Pulumi.dev.yaml: endpoints[0].servedModels[0].modelUri: s3://kiln-models/fraud/model: cannot "
            "fetch it from S3 (Unable to locate credentials)") in output
    assert "register the model in the stack's MLflow registry" in output


def test_an_unexpected_exception_is_exit_3_never_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("infra.commands.check.build_plan_report", broken)
    monkeypatch.setattr("infra.commands.check.require_reachable_registry", lambda *args: None)

    result = CliRunner().invoke(main, ["check", "dev"])

    assert result.exit_code == 3
    assert "error: internal error (a bug in Kiln, not in your input): RuntimeError: a bug at " in result.output
    assert "Traceback" not in result.output

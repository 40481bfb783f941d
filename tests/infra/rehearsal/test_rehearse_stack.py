"""`kiln rehearse`: the dev stack deployed into moto with IAM enforced and served end to end,
and the two defects that would have left every served model unhealthy on a real `pulumi up`
(the instance role unable to list its model, the upload marker inside the digest) caught by
the rehearsal's report, with AWS's error, instead of by a user."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import infra.components.served_model as served_model_module
from infra.commands.cli import main
from infra.components.permissions import instance_policy
from infra.rehearsal.rehearsal import RehearsalReport, rehearse
from models.examples.seed import LocalStore
from tests.conftest import write_stack


def _step(report: RehearsalReport, name: str) -> Any:
    return next(step for step in report.steps if step.name == name)


def test_the_dev_stack_rehearses_end_to_end_through_a_registry_server(tmp_path: Path, example_store: LocalStore) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["rehearse", "dev", "--json", "--logs", str(tmp_path),
                                  "--mlflow-tracking-uri", example_store.tracking_uri])

    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    steps = {step["name"]: step for step in report["steps"]}
    assert all(step["ok"] for step in report["steps"])
    assert "models:/fraud-scorer@champion resolved over REST" in steps["registry"]["detail"]
    assert "via the activator" in steps["fraud-scorer/champion answers from zero"]["detail"]
    assert "via its target group" in steps["fraud-scorer/champion answers"]["detail"]
    assert '"predictions"' in steps["fraud-scorer/champion answers"]["detail"]
    assert "put with the instance role" in steps["fraud-scorer/champion publishes InFlightRequests"]["detail"]
    assert "set the group to 0" in steps["fraud-scorer/champion sleeps"]["detail"]
    # `kiln status` finds each served model by its tags in the account the program deployed.
    assert steps["kiln status"]["detail"] == "fraud-scorer/champion SCALED_TO_ZERO", steps["kiln status"]
    # Its inference-table rows, uploaded on drain with the instance role into the stand-in bucket.
    assert "put with the instance role" in steps["fraud-scorer/champion captures its requests"]["detail"]
    assert "/inference-tables/fraud-scorer/ put" in steps["fraud-scorer/champion captures its requests"]["detail"]
    # The TLS-only bucket rule moto cannot judge is named, not silently dropped.
    assert any("DenyInsecureTransport" in note for note in report["notes"])
    # The tracking server's artifacts went through the stand-in S3.
    assert "PUT /api/2.0/mlflow-artifacts/artifacts/" in (tmp_path / "mlflow-server.log").read_text()


def test_a_sampled_inference_table_and_an_always_on_group_rehearse_as_ready_with_their_rows(
        tmp_path: Path, example_store: LocalStore) -> None:
    """The prod stack's shape: a group that never scales to zero, capturing 10 % as Parquet.
    `kiln status` reads it READY from the program's own tags, and its rows show although the
    rehearsal sends it a single request (it captures every request here, and says so)."""
    stack = write_stack(tmp_path, {
        "aws:region": "us-east-1",
        "kiln:environment": "dev",
        "kiln:mlflowTrackingUri": example_store.tracking_uri,
        "kiln:network": {"vpcId": "vpc-0d3e0000000000001",
                         "privateSubnetIds": ["subnet-0d3e00000000000a1", "subnet-0d3e00000000000b1"]},
        "kiln:endpoints": [{"name": "scorer", "autoCaptureConfig": {"samplingPercentage": 10},
                            "servedModels": [{"name": "champion", "modelUri": "models:/fraud-scorer@champion",
                                              "computeType": "CPU_MEDIUM", "workloadSize": "Small"}]}],
    }, stack="sampled")

    report = rehearse(str(stack), tmp_path / "work", registry=False)

    assert report.ok, [(step.name, step.detail) for step in report.steps if not step.ok]
    assert _step(report, "kiln status").detail == "scorer/champion READY"
    assert "/inference-tables/scorer/ put with the instance role" in _step(report, "scorer/champion captures its requests").detail
    assert any("captured every request here (KILN_CAPTURE_SAMPLING_FRACTION 0.1 on AWS)" in note for note in report.notes)


def test_an_instance_role_that_may_only_get_objects_fails_the_rehearsal_with_access_denied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_store: LocalStore) -> None:
    """The instance policy before the fix: s3:GetObject on the model, no s3:ListBucket."""
    def get_object_only(*args: Any, **kwargs: Any) -> str:
        policy = json.loads(instance_policy(*args, **kwargs))
        policy["Statement"] = [s for s in policy["Statement"] if "s3:ListBucket" not in s["Action"]]
        return json.dumps(policy)

    monkeypatch.setattr(served_model_module, "instance_policy", get_object_only)

    report = rehearse("dev", tmp_path, example_store.tracking_uri, registry=False)

    assert not report.ok
    failed = _step(report, "fraud-scorer/champion answers from zero")
    assert not failed.ok
    assert "AccessDenied" in failed.detail and "ListObjectsV2" in failed.detail


def test_a_runtime_that_hashes_the_upload_marker_fails_the_rehearsal_with_a_digest_mismatch(
        tmp_path: Path, example_store: LocalStore) -> None:
    """The runtime before the fix: the completion marker the upload writes counted as model content."""
    hashes_the_marker = [sys.executable, "-c", "import runpy, runtime.fetch; runtime.fetch.UPLOAD_MARKER = "
                         "'not-the-marker'; runpy.run_module('runtime', run_name='__main__')"]

    report = rehearse("dev", tmp_path, example_store.tracking_uri, registry=False, runtime_command=hashes_the_marker)

    failed = _step(report, "fraud-scorer/champion answers from zero")
    assert not failed.ok
    assert "digest" in failed.detail and "exited with code" in failed.detail

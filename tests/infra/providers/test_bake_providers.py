"""The dynamic providers, called directly (Pulumi's mocks never call them), against moto's
server on 127.0.0.1, and with botocore's Stubber for build states moto cannot produce."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pulumi.dynamic.dynamic import serialize_provider

from infra.providers.image_build import BuildError, ImageBuildProvider
from infra.providers.model_artifact import ArtifactUploadError, ModelArtifactProvider
from runtime.contract import UPLOAD_MARKER
from runtime.digest import tree_digest
from runtime.fetch import fetch
from tests.bake_support import aws, moto_endpoint, save_pyfunc  # noqa: F401 (fixtures)
from tests.fakes import FakeClock

REGION = "us-east-1"
TAG = "env-0123456789abcdef0123"
MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": "sha256:" + "a" * 64},
     "layers": []}
)


def _props(repository: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "projectName": "kiln-images",
        "repositoryName": repository["repositoryName"],
        "repositoryUrl": repository["repositoryUri"],
        "imageTag": TAG,
        "contextBucket": "kiln-artifacts",
        "contextKey": f"build-contexts/{TAG}.zip",
        "contextSha256": "b" * 64,
        "buildspec": "version: 0.2\n",
        "timeoutSeconds": 3600,
        **overrides,
    }


@pytest.fixture
def repository(aws: str, request: pytest.FixtureRequest) -> dict[str, Any]:  # noqa: F811
    ecr = boto3.client("ecr", region_name=REGION)
    name = f"kiln-{request.node.name.replace('_', '-')[:40]}"
    repository = ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")["repository"]
    codebuild = boto3.client("codebuild", region_name=REGION)
    if not codebuild.batch_get_projects(names=["kiln-images"])["projects"]:
        # moto insists on a source location even where AWS takes NO_SOURCE; every build
        # overrides the source anyway (sourceLocationOverride).
        codebuild.create_project(
            name="kiln-images",
            source={"type": "S3", "location": "kiln-artifacts/build-contexts/"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/amazonlinux-x86_64-standard:5.0",
                         "computeType": "BUILD_GENERAL1_MEDIUM", "privilegedMode": True},
            serviceRole="arn:aws:iam::123456789012:role/kiln-build",
        )
    return repository


def _push(repository_name: str) -> str:
    """What the buildspec's `docker push` leaves in ECR; moto runs no Docker."""
    pushed = boto3.client("ecr", region_name=REGION).put_image(
        repositoryName=repository_name, imageManifest=MANIFEST, imageTag=TAG
    )
    return pushed["image"]["imageId"]["imageDigest"]


def _builds_started() -> int:
    return len(boto3.client("codebuild", region_name=REGION).list_builds_for_project(projectName="kiln-images")["ids"])


class PushingClients:
    """Real boto3 clients against moto; CodeBuild's start_build also performs the push the
    real build would do, so the success path runs end to end through the HTTP API."""

    def __init__(self, repository_name: str) -> None:
        self.repository_name = repository_name

    def __call__(self, service: str, region: str) -> Any:
        client = boto3.client(service, region_name=region)
        if service == "codebuild":
            client.meta.events.register("after-call.codebuild.StartBuild", lambda **_: _push(self.repository_name))
        return client


def test_create_builds_when_the_tag_is_missing_and_returns_the_pinned_digest(repository: dict[str, Any]) -> None:
    before = _builds_started()
    provider = ImageBuildProvider(client_factory=PushingClients(repository["repositoryName"]), sleep=lambda _: None)

    created = provider.create(_props(repository))

    digest = boto3.client("ecr", region_name=REGION).describe_images(
        repositoryName=repository["repositoryName"], imageIds=[{"imageTag": TAG}]
    )["imageDetails"][0]["imageDigest"]
    assert created.outs["built"] is True and created.outs["imageDigest"] == digest
    assert created.outs["imageUri"] == f"{repository['repositoryUri']}@{digest}"
    assert _builds_started() == before + 1


def test_create_starts_no_build_when_the_tag_already_exists(repository: dict[str, Any]) -> None:
    digest = _push(repository["repositoryName"])
    before = _builds_started()

    created = ImageBuildProvider().create(_props(repository))

    assert (created.outs["built"], created.outs["imageDigest"], _builds_started()) == (False, digest, before)


def test_a_build_that_succeeds_without_pushing_fails_naming_the_image(repository: dict[str, Any]) -> None:
    with pytest.raises(BuildError, match=f"SUCCEEDED but .*:{TAG} is not in ECR"):
        ImageBuildProvider(sleep=lambda _: None).create(_props(repository))


def test_update_with_the_same_tag_builds_nothing(repository: dict[str, Any]) -> None:
    _push(repository["repositoryName"])
    olds = _props(repository)
    before = _builds_started()

    updated = ImageBuildProvider().update(f"{repository['repositoryName']}:{TAG}", olds, {**olds, "timeoutSeconds": 1800})

    assert (updated.outs["built"], updated.outs["timeoutSeconds"], _builds_started()) == (False, 1800, before)


def test_delete_keeps_the_image_for_other_versions_and_rollbacks(repository: dict[str, Any]) -> None:
    _push(repository["repositoryName"])

    ImageBuildProvider().delete(f"{repository['repositoryName']}:{TAG}", _props(repository))

    images = boto3.client("ecr", region_name=REGION).list_images(repositoryName=repository["repositoryName"])["imageIds"]
    assert [image["imageTag"] for image in images] == [TAG]


def test_diff_replaces_on_a_new_tag_and_updates_in_place_otherwise() -> None:
    repository = {"repositoryName": "kiln", "repositoryUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln"}
    olds = _props(repository)
    provider = ImageBuildProvider()

    assert provider.diff("id", olds, {**olds, "imageTag": "env-ffff"}).replaces == ["imageTag"]
    timeout_only = provider.diff("id", olds, {**olds, "timeoutSeconds": 600})
    assert (timeout_only.changes, timeout_only.replaces) == (True, [])
    assert provider.diff("id", olds, dict(olds)).changes is False


def test_check_rejects_a_timeout_codebuild_does_not_accept() -> None:
    repository = {"repositoryName": "kiln", "repositoryUri": "u"}
    failures = ImageBuildProvider().check({}, _props(repository, timeoutSeconds=60)).failures

    assert [f.property for f in failures] == ["timeoutSeconds"]


def test_the_provider_is_pickled_by_reference_not_by_value() -> None:
    payload = base64.b64decode(serialize_provider(ImageBuildProvider()))

    assert b"infra.providers.image_build" in payload and len(payload) < 1024


# Build states moto does not produce: IN_PROGRESS, then FAILED / TIMED_OUT / our own deadline.

def _stubbed(build_states: list[dict[str, Any]], stop: bool = False) -> tuple[dict[str, Any], list[Stubber]]:
    ecr = boto3.client("ecr", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    codebuild = boto3.client("codebuild", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    ecr_stub, codebuild_stub = Stubber(ecr), Stubber(codebuild)
    ecr_stub.add_client_error("describe_images", service_error_code="ImageNotFoundException", http_status_code=400)
    codebuild_stub.add_response("start_build", {"build": {"id": "kiln-images:42", "buildStatus": "IN_PROGRESS"}})
    for state in build_states:
        codebuild_stub.add_response("batch_get_builds", {"builds": [{"id": "kiln-images:42", **state}]})
    if stop:
        codebuild_stub.add_response("stop_build", {"build": {"id": "kiln-images:42", "buildStatus": "STOPPED"}}, {"id": "kiln-images:42"})
    ecr_stub.activate()
    codebuild_stub.activate()
    return {"ecr": ecr, "codebuild": codebuild}, [ecr_stub, codebuild_stub]


IN_PROGRESS = {"buildStatus": "IN_PROGRESS", "currentPhase": "BUILD"}
LOGS = {"groupName": "/aws/codebuild/kiln-images", "streamName": "42",
        "deepLink": "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/kiln-42"}


def test_a_failed_build_reports_status_phase_reason_and_logs() -> None:
    failed = {
        "buildStatus": "FAILED",
        "currentPhase": "COMPLETED",
        "phases": [
            {"phaseType": "PRE_BUILD", "phaseStatus": "SUCCEEDED"},
            {"phaseType": "BUILD", "phaseStatus": "FAILED",
             "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command: docker build. Reason: exit status 1"}]},
        ],
        "logs": LOGS,
    }
    clients, stubs = _stubbed([IN_PROGRESS, IN_PROGRESS, failed])
    clock = FakeClock()
    provider = ImageBuildProvider(client_factory=lambda service, region: clients[service], clock=clock, sleep=clock.sleep)

    with pytest.raises(BuildError) as raised:
        provider.create(_props({"repositoryName": "kiln", "repositoryUri": "u"}))

    message = str(raised.value)
    assert "FAILED" in message and "BUILD FAILED" in message and "docker build" in message and LOGS["deepLink"] in message
    assert clock.slept == [10.0, 15.0]  # backs off between polls
    for stub in stubs:
        stub.assert_no_pending_responses()


def test_codebuild_timing_out_is_reported_as_timed_out() -> None:
    timed_out = {"buildStatus": "TIMED_OUT", "currentPhase": "BUILD", "logs": LOGS}
    clients, _ = _stubbed([IN_PROGRESS, timed_out])
    clock = FakeClock()
    provider = ImageBuildProvider(client_factory=lambda service, region: clients[service], clock=clock, sleep=clock.sleep)

    with pytest.raises(BuildError, match="TIMED_OUT in phase BUILD"):
        provider.create(_props({"repositoryName": "kiln", "repositoryUri": "u"}))


def test_our_deadline_stops_the_build_and_fails_with_its_phase() -> None:
    # timeoutSeconds 300, polls at t = 0, 10, 25, 47.5, 81.25, 131.9, 191.9, 251.9 and 300 s
    # (backoff ×1.5 capped at 60 s, the last sleep cut to the deadline): still in progress.
    clients, stubs = _stubbed([IN_PROGRESS] * 9, stop=True)
    clock = FakeClock()
    provider = ImageBuildProvider(
        client_factory=lambda service, region: clients[service], clock=clock, sleep=clock.sleep, max_poll_seconds=60
    )

    with pytest.raises(BuildError, match=r"still IN_PROGRESS after build.timeoutMinutes \(5 min\), stopped"):
        provider.create(_props({"repositoryName": "kiln", "repositoryUri": "u"}, timeoutSeconds=300))

    assert clock.now == 300
    stubs[1].assert_no_pending_responses()


# The model artifact upload, against moto's S3.
@pytest.fixture
def bucket(aws: str, request: pytest.FixtureRequest) -> str:  # noqa: F811
    name = f"kiln-artifacts-{abs(hash(request.node.name)) % 10**8}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    return name


def _artifact_props(bucket: str, model: Path) -> dict[str, Any]:
    digest = tree_digest(model)
    return {"region": REGION, "bucket": bucket, "prefix": f"models/{digest}/", "digest": digest, "sourceDir": str(model)}


def _keys(bucket: str) -> list[str]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(obj["Key"] for obj in listed)


def test_the_upload_puts_every_file_under_the_digest_and_a_marker_last(bucket: str, tmp_path: Path) -> None:
    model = save_pyfunc(tmp_path / "model")
    props = _artifact_props(bucket, model)

    created = ModelArtifactProvider().create(props)

    files = sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file())
    assert _keys(bucket) == sorted([props["prefix"] + f for f in files] + [props["prefix"] + UPLOAD_MARKER])
    assert (created.outs["uploaded"], created.outs["fileCount"]) == (True, len(files))
    assert created.outs["uri"] == f"s3://{bucket}/{props['prefix']}"


def test_the_runtime_fetches_what_the_upload_wrote_and_it_matches_the_digest(bucket: str, tmp_path: Path) -> None:
    """Upload with the provider, fetch with the runtime's own code, as an instance does: the
    completion marker is the upload's bookkeeping, so it is neither downloaded nor hashed."""
    model = save_pyfunc(tmp_path / "model")
    props = _artifact_props(bucket, model)
    ModelArtifactProvider().create(props)

    local = fetch(f"s3://{bucket}/{props['prefix']}", props["digest"], tmp_path / "cache")

    assert local.digest == props["digest"]
    assert not (local.directory / UPLOAD_MARKER).exists()


def test_a_second_upload_of_the_same_digest_sends_nothing(bucket: str, tmp_path: Path) -> None:
    model = save_pyfunc(tmp_path / "model")
    props = _artifact_props(bucket, model)
    ModelArtifactProvider().create(props)
    s3 = boto3.client("s3", region_name=REGION)
    first = s3.head_object(Bucket=bucket, Key=props["prefix"] + "MLmodel")["LastModified"]

    again = ModelArtifactProvider().update("id", props, {**props, "sourceDir": str(tmp_path / "elsewhere")})

    assert again.outs["uploaded"] is False
    assert s3.head_object(Bucket=bucket, Key=props["prefix"] + "MLmodel")["LastModified"] == first


def test_files_that_no_longer_match_their_digest_are_not_uploaded(bucket: str, tmp_path: Path) -> None:
    model = save_pyfunc(tmp_path / "model")
    props = _artifact_props(bucket, model)
    (model / "MLmodel").write_text((model / "MLmodel").read_text() + "# edited\n")

    with pytest.raises(ArtifactUploadError, match="hashes to"):
        ModelArtifactProvider().create(props)
    assert _keys(bucket) == []


def test_artifact_diff_replaces_on_a_new_digest_and_ignores_the_cache_path(tmp_path: Path) -> None:
    olds = {"region": REGION, "bucket": "b", "prefix": "models/d1/", "digest": "d1", "sourceDir": "/a"}
    provider = ModelArtifactProvider()

    assert provider.diff("id", olds, {**olds, "digest": "d2", "prefix": "models/d2/"}).replaces == ["prefix", "digest"]
    assert provider.diff("id", olds, {**olds, "sourceDir": "/b"}).replaces == []


def test_deleting_the_artifact_resource_keeps_the_files_for_rollbacks(bucket: str, tmp_path: Path) -> None:
    props = _artifact_props(bucket, save_pyfunc(tmp_path / "model"))
    ModelArtifactProvider().create(props)
    before = _keys(bucket)

    ModelArtifactProvider().delete("id", props)

    assert _keys(bucket) == before

"""Build an environment image in CodeBuild, only when its tag is not in ECR yet.

Why a dynamic provider: pulumi-aws can create a CodeBuild project but has no "run a build
and wait" resource. Why the timeout is ours: the dynamic provider host ignores Pulumi's
customTimeouts (docs/sources.md, "Pulumi dynamic providers"), so `create` keeps its own deadline
(`timeoutSeconds`, from kiln:build.timeoutMinutes), stops the build when it passes, and
raises, which leaves no resource behind, so the next `pulumi up` tries again.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

TERMINAL_FAILURES = ("FAILED", "FAULT", "STOPPED", "TIMED_OUT")
# CodeBuild accepts 5-2160 minutes per build.
MIN_TIMEOUT_SECONDS = 5 * 60
MAX_TIMEOUT_SECONDS = 2160 * 60
# The engine replaces (never updates) on these: another tag is another image.
REPLACE_KEYS = ("imageTag", "repositoryName", "region")
REQUIRED_KEYS = (
    "region", "projectName", "repositoryName", "repositoryUrl", "imageTag",
    "contextBucket", "contextKey", "buildspec", "timeoutSeconds",
)
OUTPUT_KEYS = ("imageDigest", "imageUri", "buildId", "built")

ClientFactory = Callable[[str, str], Any]


class BuildError(Exception):
    """A build that did not produce the image: status, phase, reason and where its logs are."""


def _boto3_client(service: str, region: str) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


def describe_build(build: dict[str, Any]) -> str:
    """One line a person can act on: status, the phase that failed and why, the log location."""
    status = build.get("buildStatus", "UNKNOWN")
    phase = build.get("currentPhase", "UNKNOWN")
    failed = [p for p in build.get("phases", []) if p.get("phaseStatus") not in (None, "SUCCEEDED")]
    reasons = [
        f"{p['phaseType']} {p['phaseStatus']}: " + "; ".join(c.get("message", "") for c in p.get("contexts", []) if c.get("message"))
        for p in failed
    ]
    logs = build.get("logs", {})
    location = logs.get("deepLink") or (
        f"CloudWatch {logs['groupName']}/{logs['streamName']}" if logs.get("groupName") else "no logs recorded"
    )
    detail = f" ({' | '.join(reasons)})" if reasons else ""
    return f"build {build.get('id', '?')} {status} in phase {phase}{detail}; logs: {location}"


class ImageBuildProvider(ResourceProvider):
    """create/update: ensure the tagged image exists (build if missing); delete: keep the image."""

    serialize_as_secret_always = False

    def __init__(
        self,
        client_factory: ClientFactory | None = None,
        poll_seconds: float = 10.0,
        max_poll_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        # Injected only by tests (botocore Stubber, a fake clock); None means boto3 with the
        # host's credential chain. Never a live client: those cannot be pickled.
        self.client_factory = client_factory
        self.poll_seconds = poll_seconds
        self.max_poll_seconds = max_poll_seconds
        self.clock = clock
        self.sleep = sleep

    def _client(self, service: str, region: str) -> Any:
        return (self.client_factory or _boto3_client)(service, region)

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(key, f"{key} is required") for key in REQUIRED_KEYS if news.get(key) in (None, "")]
        timeout = news.get("timeoutSeconds")
        if isinstance(timeout, (int, float)) and not MIN_TIMEOUT_SECONDS <= timeout <= MAX_TIMEOUT_SECONDS:
            failures.append(
                CheckFailure("timeoutSeconds", f"{timeout} s is outside CodeBuild's 5-2160 minutes")
            )
        tag = news.get("imageTag")
        if isinstance(tag, str) and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
            failures.append(CheckFailure("imageTag", f"{tag!r} is not a valid image tag"))
        return CheckResult(news, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in REQUIRED_KEYS if olds.get(key) != news.get(key)]
        replaces = [key for key in changed if key in REPLACE_KEYS]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['repositoryName']}:{props['imageTag']}", self._ensure_image(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # Same tag (a tag change replaces): usually nothing to build, unless the image was
        # deleted behind Pulumi's back, in which case it is built again.
        return UpdateResult(self._ensure_image(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        digest = self._existing_digest(props)
        if digest is None:
            return ReadResult(None, {})
        return ReadResult(id_, {**props, **self._image_outputs(props, digest), "buildId": props.get("buildId"), "built": props.get("built", False)})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # Deliberately keeps the image: tags are content hashes shared by every model version
        # with this environment, and an instance refresh may roll back to it after this
        # resource is gone. ECR's lifecycle policy expires only untagged layers.
        return None

    def _existing_digest(self, props: dict[str, Any]) -> str | None:
        ecr = self._client("ecr", props["region"])
        try:
            found = ecr.describe_images(repositoryName=props["repositoryName"], imageIds=[{"imageTag": props["imageTag"]}])
        except ecr.exceptions.ImageNotFoundException:
            return None
        details = found.get("imageDetails", [])
        return details[0]["imageDigest"] if details else None

    @staticmethod
    def _image_outputs(props: dict[str, Any], digest: str) -> dict[str, Any]:
        return {"imageDigest": digest, "imageUri": f"{props['repositoryUrl']}@{digest}"}

    def _ensure_image(self, props: dict[str, Any]) -> dict[str, Any]:
        digest = self._existing_digest(props)
        if digest is not None:
            return {**props, **self._image_outputs(props, digest), "buildId": None, "built": False}
        build_id = self._run_build(props)
        digest = self._existing_digest(props)
        if digest is None:
            raise BuildError(
                f"build {build_id} SUCCEEDED but {props['repositoryUrl']}:{props['imageTag']} is not in ECR; "
                "check the buildspec's push step in the build log"
            )
        return {**props, **self._image_outputs(props, digest), "buildId": build_id, "built": True}

    def _run_build(self, props: dict[str, Any]) -> str:
        codebuild = self._client("codebuild", props["region"])
        timeout = float(props["timeoutSeconds"])
        started = codebuild.start_build(
            projectName=props["projectName"],
            sourceTypeOverride="S3",
            sourceLocationOverride=f"{props['contextBucket']}/{props['contextKey']}",
            buildspecOverride=props["buildspec"],
            # CodeBuild's own limit is the backstop should this process die while waiting.
            timeoutInMinutesOverride=max(5, math.ceil(timeout / 60)),
            environmentVariablesOverride=[
                {"name": "REPOSITORY_URI", "value": props["repositoryUrl"], "type": "PLAINTEXT"},
                {"name": "REPOSITORY_NAME", "value": props["repositoryName"], "type": "PLAINTEXT"},
                {"name": "IMAGE_TAG", "value": props["imageTag"], "type": "PLAINTEXT"},
            ],
        )["build"]
        build_id = started["id"]
        deadline = self.clock() + timeout
        delay = self.poll_seconds
        while True:
            build = codebuild.batch_get_builds(ids=[build_id])["builds"][0]
            status = build.get("buildStatus")
            if status == "SUCCEEDED":
                return build_id
            if status in TERMINAL_FAILURES:
                raise BuildError(f"image {props['imageTag']}: {describe_build(build)}")
            remaining = deadline - self.clock()
            if remaining <= 0:
                codebuild.stop_build(id=build_id)
                raise BuildError(
                    f"image {props['imageTag']}: still {status} after build.timeoutMinutes "
                    f"({timeout / 60:g} min), stopped; {describe_build(build)}"
                )
            self.sleep(min(delay, remaining))
            delay = min(delay * 1.5, self.max_poll_seconds)


class ImageBuild(pulumi.dynamic.Resource, module="kiln", name="ImageBuild"):
    """The environment image `repositoryUrl:imageTag`, built in CodeBuild if ECR lacks it."""

    imageDigest: pulumi.Output[str]
    imageUri: pulumi.Output[str]
    buildId: pulumi.Output[str]
    built: pulumi.Output[bool]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        # Output keys must be present (as None) for the engine to resolve them (§4.1).
        super().__init__(ImageBuildProvider(), name, {**props, **dict.fromkeys(OUTPUT_KEYS)}, opts)

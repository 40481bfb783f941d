"""Environment images: the CodeBuild project that builds them and one build per environment.

docs/decisions.md, decision 2: builds run in CodeBuild, started by a dynamic resource only when the
environment's tag has no image in ECR yet, bounded by kiln:build.timeoutMinutes. The
build context (Dockerfile, requirements, runtime) is uploaded to the artifact store under
build-contexts/<tag>.zip; the project has no source of its own and every build names its
context, so one project serves every environment of the stack.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.artifact_store import ArtifactStore
from infra.components.iam import service_role
from infra.components.image_registry import ImageRegistry
from infra.components.permissions import build_policy
from infra.plan.catalog import LOG_RETENTION_DAYS
from infra.providers.image_build import ImageBuild
from models.build_context import BuildContext, render_buildspec

# CodeBuild's curated Amazon Linux image: Docker, the AWS CLI and privileged mode support.
BUILD_IMAGE = "aws/codebuild/amazonlinux-x86_64-standard:5.0"


class ImageBuilder(pulumi.ComponentResource):
    """CodeBuild project (privileged, sized by the disk estimate) with a push-only role."""

    def __init__(
        self,
        name: str,
        registry: ImageRegistry,
        artifact_store: ArtifactStore,
        compute_type: str,
        timeout_minutes: int,
        region: str,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kiln:images:ImageBuilder", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.registry = registry
        self.artifact_store = artifact_store
        self.region = region
        self.timeout_minutes = timeout_minutes
        self.buildspec = render_buildspec()
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-build-logs", retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child
        )
        self.role, self.role_policy = service_role(
            f"{name}-build-role",
            f"{name}-build-least-privilege",
            "codebuild.amazonaws.com",
            pulumi.Output.all(artifact_store.bucket.arn, registry.repository.arn, self.log_group.arn).apply(
                lambda arns: build_policy(*arns)
            ),
            tags,
            child,
        )
        self.project = aws.codebuild.Project(
            f"{name}-project",
            description="Kiln environment images: docker build + push of one rendered context per build",
            service_role=self.role.arn,
            build_timeout=timeout_minutes,
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "compute_type": compute_type,
                "image": BUILD_IMAGE,
                "type": "LINUX_CONTAINER",
                # Docker-in-Docker needs a privileged build container.
                "privileged_mode": True,
            },
            source={"type": "NO_SOURCE", "buildspec": self.buildspec},
            logs_config={"cloudwatch_logs": {"group_name": self.log_group.name, "status": "ENABLED"}},
            tags=tags,
            opts=child,
        )
        self.register_outputs({"projectName": self.project.name, "computeType": compute_type})


class EnvironmentImage(pulumi.ComponentResource):
    """One environment image: its uploaded context and the build that exists only if ECR lacks the tag."""

    def __init__(self, name: str, context: BuildContext, builder: ImageBuilder, tags: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        environment = context.environment
        super().__init__(
            "kiln:images:EnvironmentImage",
            name,
            {"imageTag": environment.image_tag, "baseImage": environment.base_image, "gpu": environment.gpu},
            opts,
        )
        self.context_object = aws.s3.BucketObjectv2(
            f"{name}-context",
            bucket=builder.artifact_store.bucket.id,
            key=context.s3_key,
            source=pulumi.FileAsset(str(context.archive)),
            content_type="application/zip",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.build = ImageBuild(
            f"{name}-build",
            {
                "region": builder.region,
                "projectName": builder.project.name,
                "repositoryName": builder.registry.repository.name,
                "repositoryUrl": builder.registry.repository.repository_url,
                "imageTag": environment.image_tag,
                "contextBucket": builder.artifact_store.bucket.bucket,
                "contextKey": self.context_object.key,
                "contextSha256": context.archive_sha256,
                "buildspec": builder.buildspec,
                "timeoutSeconds": builder.timeout_minutes * 60,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.context_object, builder.project, builder.role_policy]),
        )
        # Digest-pinned (repo@sha256:…): instances run exactly the image that was checked.
        self.image_uri = self.build.imageUri
        self.register_outputs({"imageUri": self.image_uri, "imageDigest": self.build.imageDigest})

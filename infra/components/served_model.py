"""One served model: instance role, launch template, target group, autoscaling group, scaling."""

from __future__ import annotations

import base64

import pulumi
import pulumi_aws as aws

from infra.components.autoscaling import ServedModelScaling, group_scaling_arguments, rollout_alarm
from infra.components.foundation import Foundation, Release
from infra.components.iam import service_role
from infra.components.monitoring import ServedModelAlarms
from infra.components.permissions import group_arn, instance_policy
from infra.components.user_data import Deployment, render_user_data
from infra.plan.catalog import (
    HEALTH_CHECK_INTERVAL_SECONDS,
    HEALTH_CHECK_TIMEOUT_SECONDS,
    HEALTHY_THRESHOLD,
    LOG_RETENTION_DAYS,
    UNHEALTHY_THRESHOLD,
    ami_class,
    ami_parameter,
)
from infra.plan.launch_timing import root_volume_throughput_mib
from infra.plan.stack import ServedModelPlan
from infra.plan.tags import IMAGE_TAG, MODEL_TAG
from models.artifacts import registry_version
from runtime.contract import READINESS_PATH, RUNTIME_PORT


class ServedModel(pulumi.ComponentResource):
    """An autoscaling group of identical instances, each running one Kiln runtime.

    The ALB health check is the runtime's readiness path, and the group trusts it (ELB
    health checks), so an instance whose model cannot load is replaced, and an instance
    refresh that never becomes healthy rolls back while the old instances keep serving.
    """

    def __init__(
        self,
        name: str,
        plan: ServedModelPlan,
        release: Release,
        foundation: Foundation,
        token_secret: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`token_secret`: the ARN of the token-hash secret the stack created for the endpoint."""
        sizing = plan.capacity.sizing
        baked, image, gateway = release.baked, release.image, foundation.gateway
        artifact_store, registry = foundation.artifact_store, foundation.registry
        # Registered as the component's inputs so the policy pack and the review see the
        # served model as a whole: its plan, its model and what the model says about itself.
        super().__init__("kiln:serving:ServedModel", name, served_model_properties(plan, release), opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = plan.tags

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", retention_in_days=LOG_RETENTION_DAYS, tags=tags, opts=child
        )
        self.role, self.role_policy = service_role(
            f"{name}-role",
            f"{name}-least-privilege",
            "ec2.amazonaws.com",
            # Session Manager instead of SSH (no key pairs, no port 22, every session audited),
            # with only the calls it needs: see session_manager_statement.
            pulumi.Output.all(artifact_store.bucket.arn, registry.repository.arn, self.log_group.arn,
                              token_secret or "").apply(
                lambda arns: instance_policy(
                    *arns[:3], artifact_key=baked.artifact_key, group_arn=group_arn(arns[2], plan.group_name),
                    capture_prefix=plan.capture.prefix if plan.capture else None,
                    secrets=plan.secret_references(arns[3] or None), kms_key_arn=plan.kms_key_arn,
                    session_manager=plan.session_manager,
                )
            ),
            tags,
            child,
        )
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, tags=tags, opts=child)

        model_name, model_version = registry_version(baked.resolved_uri) or ("", "")
        # `image` is the build resource's digest-pinned reference (repo@sha256:…), so an
        # instance never runs an image other than the one built and checked for this plan.
        deployment = pulumi.Output.all(
            registry.repository.repository_url, image, artifact_store.bucket.bucket, self.log_group.name,
            token_secret or "",
        ).apply(
            lambda values: Deployment(
                registry=values[0].split("/", 1)[0],
                image=values[1],
                model_artifact_uri=f"s3://{values[2]}/{baked.artifact_key}",
                model_digest=baked.artifact_digest,
                log_group=values[3],
                artifact_bucket=values[2],
                model_name=model_name,
                model_version=model_version,
                token_secret=values[4] or None,
            )
        )
        user_data = deployment.apply(lambda d: base64.b64encode(render_user_data(plan, d).encode()).decode())
        image_id = plan.ami_id or unpinned_ami(self, plan)

        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            image_id=image_id,
            instance_type=sizing.instance.name,
            iam_instance_profile={"arn": self.instance_profile.arn},
            vpc_security_group_ids=[gateway.instance_security_group.id],
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                # 2 hops: the runtime container reaches IMDS through the Docker bridge.
                "http_put_response_hop_limit": 2,
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": plan.profile.root_volume_gib,
                        "volume_type": "gp3",
                        # GPU images are several GiB: more than the 125 MiB/s baseline to write them.
                        **({"throughput": throughput} if (throughput := root_volume_throughput_mib(plan.profile)) else {}),
                        "encrypted": "true",
                        **({"kms_key_id": plan.kms_key_arn} if plan.kms_key_arn else {}),
                        "delete_on_termination": "true",
                    },
                }
            ],
            monitoring={"enabled": True},
            user_data=user_data,
            update_default_version=True,
            tag_specifications=[
                # What this version launches, for `kiln status` to report what each group runs.
                {"resource_type": "instance", "tags": {**tags, **release_tags(baked.resolved_uri, image)}},
                {"resource_type": "volume", "tags": tags},
            ],
            tags=tags,
            opts=child,
        )
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            name=plan.target_group_name,
            port=RUNTIME_PORT,
            protocol="HTTP",
            target_type="instance",
            vpc_id=foundation.vpc_id,
            deregistration_delay=plan.deregistration_delay_seconds,
            # Model latency varies per request; send work to the least busy instance.
            load_balancing_algorithm_type="least_outstanding_requests",
            health_check={
                "enabled": True,
                "path": READINESS_PATH,
                "port": "traffic-port",
                "protocol": "HTTP",
                "matcher": "200",
                "interval": HEALTH_CHECK_INTERVAL_SECONDS,
                "timeout": HEALTH_CHECK_TIMEOUT_SECONDS,
                "healthy_threshold": HEALTHY_THRESHOLD,
                "unhealthy_threshold": UNHEALTHY_THRESHOLD,
            },
            tags=tags,
            opts=child,
        )
        grace = plan.health_check_grace_seconds
        self.rollout_alarm = rollout_alarm(name, plan, gateway, self.target_group, child)
        self.group = aws.autoscaling.Group(
            f"{name}-asg",
            name=plan.group_name,
            min_size=sizing.min_instances,
            max_size=sizing.max_instances,
            vpc_zone_identifiers=foundation.subnet_ids,
            target_group_arns=[self.target_group.arn],
            health_check_type="ELB",
            health_check_grace_period=grace,
            # Counted from InService, which the launch hook holds back until the runtime is
            # ready: the planned ready time's remainder (infra/plan/launch_timing.py).
            default_instance_warmup=plan.scaling.instance_warmup_seconds,
            # A concrete version (not $Latest) is what lets an instance refresh roll back to it.
            launch_template={"id": self.launch_template.id, "version": self.launch_template.latest_version.apply(str)},
            # Instance refresh (launch before terminate, auto rollback), warm pool, group
            # metrics, and the launch hook that holds an instance until its runtime is ready.
            **group_scaling_arguments(plan),
            tags=[{"key": key, "value": value, "propagate_at_launch": True} for key, value in tags.items()],
            # Scaling policies own the desired capacity once the group exists. Instances fetch
            # the model at start, so its upload must be complete before any can launch.
            # The instance refresh names the rollout alarm, and a booting instance uses its role,
            # and, with the stack's VPC endpoints, reaches AWS only through them.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"],
                                        depends_on=[release.artifact, self.rollout_alarm, self.role_policy,
                                                    *filter(None, [foundation.vpc_endpoints])]),
        )
        self.scaling = ServedModelScaling(name, plan, self.group, self.target_group, gateway, opts=child)
        self.alarms = ServedModelAlarms(
            name, plan, gateway.load_balancer.arn_suffix, self.target_group.arn_suffix, opts=child
        )
        self.image = pulumi.Output.from_input(image)
        self.register_outputs(
            {
                **plan.capacity_outputs(),
                # Read by the policy pack's stack rules, which see component outputs (not inputs).
                "requestTimeoutSeconds": plan.request_timeout_seconds,
                "authRequired": plan.auth is not None,
                "targetGroupArn": self.target_group.arn,
                "image": self.image,
            }
        )


def release_tags(resolved_uri: str, image: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    """The model and image a launch template version starts, as instance tags."""
    return {MODEL_TAG: resolved_uri, IMAGE_TAG: image}


def unpinned_ami(served_model: ServedModel, plan: ServedModelPlan) -> pulumi.Output[str]:
    """The AMI the compute class's public SSM parameter names at this `pulumi up`, with a
    warning: the next AMI release changes it, and with it every group's launch template."""
    parameter = ami_parameter(plan.profile)
    pulumi.log.warn(
        f"{plan.resource_name} boots whatever AMI {parameter} names at each `pulumi up`, so a new AMI "
        f"release rolls its group; pin kiln:amis.{ami_class(plan.profile)} (`kiln amis {plan.tags['kiln:stack']}` "
        "prints the current id)",
        resource=served_model,
    )
    found = aws.ssm.get_parameter_output(name=parameter, opts=pulumi.InvokeOutputOptions(parent=served_model))
    return found.value


def served_model_properties(plan: ServedModelPlan, release: Release) -> dict:
    """The plan's own properties plus what the bake found: the component's inputs, which the
    policy pack and the review read."""
    baked = release.baked
    return {
        **plan.as_properties(),
        "environment": plan.tags["kiln:environment"],
        "resolvedModelUri": baked.resolved_uri,
        "artifactDigest": baked.artifact_digest,
        "imageTag": baked.image_tag,
        "manifest": baked.manifest.as_properties(),
        # Warnings too (errors stop the program before this point): the review lists them.
        "packagingFindings": [{"id": f.id, "level": f.level, "message": f.message} for f in release.findings],
        # The SSM parameter the launch template's AMI comes from (or its pin was read from):
        # the AMI id says nothing about its drivers, the parameter does.
        "amiParameter": ami_parameter(plan.profile),
        # The pinned id; None while the parameter is read at each `pulumi up`.
        "amiId": plan.ami_id,
    }

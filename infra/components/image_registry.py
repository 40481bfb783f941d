"""The ECR repository that holds Kiln's environment images (one tag per environment hash)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

# Tagged images are never expired by age or count: any of them may still be what a served
# model (or the configuration an instance refresh rolls back to) runs.


class ImageRegistry(pulumi.ComponentResource):
    """ECR repository: scan on push, immutable tags (a tag is a content hash), lifecycle for untagged layers."""

    def __init__(self, name: str, tags: dict[str, str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kiln:images:ImageRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-repository",
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="IMMUTABLE",
            encryption_configurations=[{"encryption_type": "KMS"}],
            tags=tags,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "drop untagged layers after a day",
                            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1},
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
            opts=child,
        )
        self.register_outputs({"repositoryUrl": self.repository.repository_url})

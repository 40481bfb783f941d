"""The tags Kiln puts on what it deploys: how `kiln status` finds a stack's resources in an
account (by tag, not by guessing names) and what each group runs."""

STACK_TAG = "kiln:stack"
ENVIRONMENT_TAG = "kiln:environment"
ENDPOINT_TAG = "kiln:endpoint"
SERVED_MODEL_TAG = "kiln:served-model"
# On the instances a launch template version starts: the resolved model URI and the image.
MODEL_TAG = "kiln:model"
IMAGE_TAG = "kiln:image"

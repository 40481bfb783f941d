"""What the infrastructure and the runtime agree on: port, readiness path, default timeout,
and the in-flight metric the runtime publishes for target tracking.

The Pulumi program (target groups, health checks, user-data, scaling policies, the instance
role) imports these from here, so the runtime package stays free of infrastructure code
inside the image and the two sides cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping

RUNTIME_PORT = 8080
# Written last under models/<digest>/ by the upload (infra/providers/model_artifact.py): the
# prefix is whole. Bookkeeping, not model content: the runtime's fetch leaves it out.
UPLOAD_MARKER = ".kiln-complete.json"
READINESS_PATH = "/ping"
# Databricks' model execution timeout for custom models (custom-models page, May 2026).
DATABRICKS_REQUEST_TIMEOUT_SECONDS = 597

# The in-flight metric the runtime publishes every 10 s, and the only metric the instance
# role may put (cloudwatch:PutMetricData with condition cloudwatch:namespace).
METRIC_NAMESPACE = "Kiln/Serving"
IN_FLIGHT_METRIC = "InFlightRequests"
# Dimension names, in the order the runtime sends them; values come from the plan.
METRIC_DIMENSIONS = ("Stack", "Endpoint", "ServedModel")
# CloudWatch high-resolution metrics go down to 1 s; target tracking reads them at 10 s at
# best (docs.aws.amazon.com/autoscaling/ec2/userguide/policy-creating-high-resolution-metrics.html).
HIGH_RESOLUTION_PERIOD_SECONDS = 10
# StorageResolution 1 marks a datum high-resolution; 60 would be rolled up to 1 minute.
STORAGE_RESOLUTION_SECONDS = 1
# CloudWatch's limit on a dimension value (docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html).
MAX_DIMENSION_VALUE_LENGTH = 1024


def format_metric_dimensions(values: Mapping[str, str]) -> str:
    """The dimensions as the runtime reads them (`Stack=dev,Endpoint=x,ServedModel=y`), in contract order."""
    return ",".join(f"{name}={values[name]}" for name in METRIC_DIMENSIONS)


def parse_metric_dimensions(text: str) -> tuple[tuple[str, str], ...]:
    """`Stack=dev,Endpoint=x,ServedModel=y` → ((name, value), …) in contract order; ValueError says what is wrong.

    Exactly the contract's names, each once: target tracking matches a metric by its full
    dimension set, so a missing or extra dimension would publish a metric no policy reads.
    """
    values: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"{item.strip()!r} is not Name=value")
        if name in values:
            raise ValueError(f"{name} is given twice")
        if len(value) > MAX_DIMENSION_VALUE_LENGTH:
            raise ValueError(f"the value of {name} is longer than {MAX_DIMENSION_VALUE_LENGTH} characters")
        values[name] = value
    if set(values) != set(METRIC_DIMENSIONS):
        raise ValueError(f"needs exactly the dimensions {', '.join(METRIC_DIMENSIONS)}; got {', '.join(values)}")
    return tuple((name, values[name]) for name in METRIC_DIMENSIONS)

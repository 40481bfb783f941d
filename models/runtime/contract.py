"""What the infrastructure and the runtime agree on: port, readiness path, default timeout.

The Pulumi program (target groups, health checks, user-data) imports these from here, so
the runtime package stays free of infrastructure code inside the image.
"""

RUNTIME_PORT = 8080
READINESS_PATH = "/ping"
# Databricks' model execution timeout for custom models (custom-models page, May 2026).
DATABRICKS_REQUEST_TIMEOUT_SECONDS = 597

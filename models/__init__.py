"""MLflow model packaging: what a model needs to serve, and the runtime that serves it."""

RUNTIME_VERSION = "0.1.0"

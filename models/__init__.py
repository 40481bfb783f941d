"""MLflow model packaging: what a model needs to serve, checked and baked into an environment image."""

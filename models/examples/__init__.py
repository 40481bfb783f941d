"""Example models that the dev stack serves and the tests deploy: real MLflow models, logged
with a signature, an input example and pinned requirements, as data scientists should."""

"""Fill an MLflow store with the example models, registered with the aliases the stacks use.

This is what the first README command runs against the embedded default store
(.kiln/mlflow); the tests run it against a temporary store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.plan.config import PROJECT_ROOT

DEFAULT_STORE = PROJECT_ROOT / ".kiln" / "mlflow"


@dataclass(frozen=True)
class LocalStore:
    root: Path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return (self.root / "artifacts").as_uri()


EXAMPLE_MODELS = ("fraud-scorer", "ticket-router")


def pinned(*packages: str) -> list[str]:
    """Exact pins of what is installed here: what the model was trained and tested with."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in packages]


def seed(store: LocalStore) -> list[str]:
    """Log and register the examples unless already there; returns the model URIs it created."""
    import cloudpickle
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from models.examples import fraud_scorer, ticket_router

    store.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    client = MlflowClient()
    existing = {model.name for model in client.search_registered_models()}
    if all(name in existing for name in EXAMPLE_MODELS):
        return []
    experiment = client.get_experiment_by_name("kiln-examples")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("kiln-examples", artifact_location=store.artifact_location)
    )
    created = []
    if "fraud-scorer" not in existing:
        for alias, regularization in (("champion", 1.0), ("challenger", 0.3)):
            model, example = fraud_scorer.train(regularization)
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"fraud-scorer-{alias}"):
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    pip_requirements=pinned("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops"),
                    signature=infer_signature(example, model.predict(example)),
                    input_example=example,
                    registered_model_name="fraud-scorer",
                )
            client.set_registered_model_alias("fraud-scorer", alias, info.registered_model_version)
            created.append(f"models:/fraud-scorer/{info.registered_model_version}")
    if "ticket-router" not in existing:
        example = ticket_router.input_example()
        router = ticket_router.TicketRouter()
        # Pickle the class by value so the model loads without Kiln's `models` package.
        cloudpickle.register_pickle_by_value(ticket_router)
        with mlflow.start_run(experiment_id=experiment_id, run_name="ticket-router"):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=router,
                signature=infer_signature(example, router.predict(None, example)),
                input_example=example,
                pip_requirements=pinned("mlflow", "pandas"),
                registered_model_name="ticket-router",
            )
        client.set_registered_model_alias("ticket-router", "champion", info.registered_model_version)
        created.append(f"models:/ticket-router/{info.registered_model_version}")
    return created

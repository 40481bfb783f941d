"""The example fraud scorer saved straight to a folder, for the in-process runtime tests.

`fraud_model_dir` (tests/runtime_support.py) goes through a seeded sqlite MLflow store, which
takes tens of seconds; mutation testing sets up a module's fixtures again for every mutant, so
the in-process tests save the same model (same training code, flavour, signature and serving
input example) with mlflow.sklearn.save_model, which takes a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import pytest
from mlflow.models import infer_signature

from models.examples import fraud_scorer

COLUMNS = ["amount", "merchant_risk", "hour", "card_age_days"]
# The model's saved serving input example: the first three rows of its training data.
EXAMPLE_ROWS = [
    [100.09531753808622, 0.7331411521185218, 5.0, 970.4701846813552],
    [80.23294174225843, 0.042661604947846654, 19.0, 691.9067889389519],
    [68.75407191520164, 0.09185499813063258, 14.0, 517.7806354542072],
]
# The training labels follow 0.01 * amount + 3 * merchant_risk - 0.001 * card_age_days > 1.5:
#   row 1: 1.00 + 2.20 - 0.97 = 2.23 → fraud; row 2: 0.80 + 0.13 - 0.69 = 0.24 → not;
#   row 3: 0.69 + 0.28 - 0.52 = 0.45 → not. All three are far from the boundary.
EXAMPLE_PREDICTIONS = [1, 0, 0]


def save_fraud_scorer(directory: Path) -> Path:
    model, example = fraud_scorer.train(regularization=1.0)
    mlflow.sklearn.save_model(
        model, str(directory), pip_requirements=["mlflow", "scikit-learn"],
        signature=infer_signature(example, model.predict(example)), input_example=example,
    )
    return directory


@pytest.fixture(scope="session")
def fraud_scorer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_fraud_scorer(tmp_path_factory.mktemp("fraud-scorer") / "model")

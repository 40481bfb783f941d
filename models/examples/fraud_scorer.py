"""A fraud scorer: logistic regression over four transaction features (scikit-learn flavour)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

FEATURES = ["amount", "merchant_risk", "hour", "card_age_days"]


def training_data(seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 60.0, 600),
            "merchant_risk": rng.uniform(0, 1, 600),
            "hour": rng.integers(0, 24, 600).astype(float),
            "card_age_days": rng.uniform(1, 2000, 600),
        }
    )
    risk = 0.01 * frame["amount"] + 3 * frame["merchant_risk"] - 0.001 * frame["card_age_days"]
    labels = (risk + rng.normal(0, 0.5, 600) > 1.5).astype(int).to_numpy()
    return frame, labels


def train(regularization: float) -> tuple[LogisticRegression, pd.DataFrame]:
    features, labels = training_data()
    model = LogisticRegression(C=regularization, max_iter=500).fit(features, labels)
    return model, features.head(3)

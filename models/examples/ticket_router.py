"""A support-ticket router: a custom pyfunc model with its own Python code (pyfunc flavour)."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

KEYWORDS = {
    "billing": ("invoice", "charge", "refund", "payment"),
    "access": ("password", "login", "locked", "mfa"),
    "outage": ("down", "error", "timeout", "unavailable"),
}


class TicketRouter(mlflow.pyfunc.PythonModel):
    """Routes a ticket to the queue whose keywords it mentions most."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        def route(text: str) -> str:
            words = text.lower()
            scores = {queue: sum(word in words for word in keys) for queue, keys in KEYWORDS.items()}
            best = max(scores, key=scores.get)
            return best if scores[best] else "general"

        return model_input["text"].map(route).rename("queue")


def input_example() -> pd.DataFrame:
    return pd.DataFrame({"text": ["I was charged twice, please refund", "cannot login after password reset"]})

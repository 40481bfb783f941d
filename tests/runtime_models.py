"""Test-only MLflow models that misbehave on purpose, saved into temp dirs by fixtures.

The Switchboard does what its `action` column says, so one model covers the runtime's
error paths: "ok" echoes, "raise" raises in predict, "sleep:<s>" holds the worker,
"env:<NAME>" answers what the model sees in that environment variable.
RowsPerCall shows batching.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import mlflow.pyfunc
import pandas as pd


class Switchboard(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        results = []
        for action in model_input["action"]:
            if action == "raise":
                raise RuntimeError("switchboard was told to fail")
            if action.startswith("sleep:"):
                time.sleep(float(action.split(":", 1)[1]))
            if action.startswith("env:"):
                results.append(os.environ.get(action.split(":", 1)[1], "<unset>"))
                continue
            results.append(action)
        return pd.Series(results, name="done")


class RowsPerCall(mlflow.pyfunc.PythonModel):
    """Like the Switchboard's "sleep:<s>", but answers each row with how many rows its predict
    call had: shows which requests the runtime merged into one call."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        for action in model_input["action"]:
            if action.startswith("sleep:"):
                time.sleep(float(action.split(":", 1)[1]))
            if action == "exit":  # the process dies, as under the OOM killer
                os._exit(3)
        return pd.Series([len(model_input)] * len(model_input), name="done").astype(str)


class FailsToLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        raise RuntimeError("weights are corrupt")

    def predict(self, context, model_input, params=None):
        return model_input


def save(model: mlflow.pyfunc.PythonModel, directory: Path, example_action: str) -> Path:
    """Save with a signature and a serving input example, as the packaging checks require."""
    import sys

    import cloudpickle
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # By value, so the runtime's worker loads it without this test module on its path.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    signature = ModelSignature(inputs=Schema([ColSpec("string", "action")]), outputs=Schema([ColSpec("string", "done")]))
    mlflow.pyfunc.save_model(
        str(directory), python_model=model, signature=signature,
        input_example=pd.DataFrame({"action": [example_action]}),
    )
    return directory


def switchboard_body(*actions: str) -> str:
    """An invocation of the Switchboard model: one row per action, in dataframe_split form."""
    return json.dumps({"dataframe_split": {"columns": ["action"], "data": [[a] for a in actions]}})

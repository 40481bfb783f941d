"""`kiln serve` honours an endpoint's auth as an instance does: without a token, 401 through the
router; with one of the hashes given by --token-hashes, the prediction."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from runtime.auth import token_sha256
from tests.conftest import stack_config, write_stack
from tests.runtime_support import free_port, start

BODY = json.dumps({"dataframe_split": {"columns": ["amount", "merchant_risk", "hour", "card_age_days"],
                                       "data": [[100.0, 0.7, 5.0, 970.0]]}})
TOKEN = "local-token"


def test_an_endpoint_with_auth_asks_for_a_token_locally(tmp_path: Path, example_store: Any) -> None:
    config = stack_config("staging", example_store)
    endpoint = config["kiln:endpoints"][0]
    endpoint["auth"] = {"enabled": True}
    hashes = tmp_path / "token-hashes"
    hashes.write_text(f"# the local test's token\n{token_sha256(TOKEN)}\n")
    port = free_port()
    process = start([sys.executable, "-m", "infra.commands.cli", "serve", str(write_stack(tmp_path, config, "authtest")),
                     "--port", str(port), "--endpoint", endpoint["name"], "--token-hashes", str(hashes),
                     "--mlflow-tracking-uri", example_store.tracking_uri], {}, tmp_path / "serve.log", port)
    url = f"{process.url}/serving-endpoints/{endpoint['name']}/invocations"
    try:
        assert process.wait_for_ping(timeout=180)[-1:] == [200], process.log()
        anonymous = httpx.post(url, content=BODY, headers={"content-type": "application/json"}, timeout=30)
        wrong = httpx.post(url, content=BODY, headers={"content-type": "application/json",
                                                       "authorization": "Bearer guess"}, timeout=30)
        allowed = httpx.post(url, content=BODY, headers={"content-type": "application/json",
                                                         "authorization": f"Bearer {TOKEN}"}, timeout=30)

        assert (anonymous.status_code, wrong.status_code, allowed.status_code) == (401, 401, 200), process.log()
        assert anonymous.headers["www-authenticate"].lower().startswith("bearer")
        assert "predictions" in allowed.json()
    finally:
        process.stop()

"""The MLflow registry a stack command resolves its models against, and a quick look that it answers.

The shipped staging and prod stacks name registries inside a company network
(`http://mlflow.internal:5000`). Unreached, MLflow retries, then raises a urllib3 error of
several hundred characters that never says how to point elsewhere; one TCP connect first
turns that into one line naming the stack key and the flag.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import click

from infra.plan.config import read_stack

# The store `kiln examples` fills; a relative sqlite path in a stack or on the command line
# means the project folder (infra/plan/config.py), so this works from any directory.
EXAMPLE_STORE_URI = "sqlite:///.kiln/mlflow/mlflow.db"

# Long enough for a registry across a VPN, short enough that a typo does not hang the command.
CONNECT_TIMEOUT_S = 3.0

tracking_uri_option = click.option(
    "--mlflow-tracking-uri",
    help="Resolve models against this MLflow store instead of the stack's kiln:mlflowTrackingUri "
    f"(e.g. {EXAMPLE_STORE_URI}, the example models of `kiln examples`, or a registry mirror).",
)


class RegistryUnreachable(Exception):
    """The stack's MLflow registry does not accept connections; says which and how to use another."""


def require_reachable_registry(stack: str, tracking_uri: str | None) -> None:
    """Raise RegistryUnreachable when the registry a stack command would use is an HTTP server
    that cannot be connected to (sqlite and file stores are checked where they are opened)."""
    stack_file = read_stack(stack, tracking_uri)
    uri = stack_file.config.mlflow_tracking_uri
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        where = "--mlflow-tracking-uri" if tracking_uri else f"kiln:mlflowTrackingUri in {stack_file.path.name}"
        raise RegistryUnreachable(
            f"cannot reach the MLflow registry {uri} ({where}: {reason}); resolve the models elsewhere with "
            f"--mlflow-tracking-uri URI, e.g. --mlflow-tracking-uri {EXAMPLE_STORE_URI} for the example models "
            "(`kiln examples` fills it)"
        ) from None

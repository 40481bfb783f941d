"""`kiln runtime` and `kiln serve`: the serving runtime on this machine.

`kiln runtime` is the container's entrypoint with flags on top of the KILN_* env: the same
settings parser and the same `serve()`, so what works here works on the instance.
`kiln serve STACK` runs every served model of a stack that way behind a weighted router.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from infra.commands.output import errors, fail, user_errors
from infra.commands.registry import require_reachable_registry, tracking_uri_option
from infra.local.stack import ROUTER_HOST
from runtime.auth import TokenHashError, parse_token_hashes

# Model URIs `kiln runtime` resolves through MLflow before the runtime sees them.
REGISTRY_SCHEMES = ("models:/", "runs:/")


def require_free_port(host: str, port: int) -> None:
    """Fail before any model is fetched or loaded (a minute for a large one) when the port is
    taken: the server would only find out once everything else had started."""
    with socket.socket() as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            fail(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another with --port")


@click.command("runtime", help="Start one serving runtime for a model (what the image's entrypoint runs). "
               "KILN_* environment variables apply; flags override them.")
@click.option("--model-uri", required=True, help="s3://bucket/models/<digest>/, models:/name/version, models:/name@alias, "
              "runs:/…, or a local model directory.")
@click.option("--model-digest", help="Refuse to start unless the model files hash to this sha256 (KILN_MODEL_DIGEST).")
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1 here, 0.0.0.0 in the image).")
@click.option("--port", type=int, default=None, help="Port (default 8080, KILN_PORT).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes, one per unit of provisioned concurrency (KILN_WORKERS).")
@click.option("--mlflow-tracking-uri", help="Resolve models:/ and runs:/ URIs against this MLflow store.")
def runtime_command(model_uri: str, model_digest: str | None, host: str | None, port: int | None,
                    workers: int | None, mlflow_tracking_uri: str | None) -> None:
    import os

    from models.artifacts import ModelResolutionError, fetch_model, local_model_uri, registry_version
    from models.examples.seed import DEFAULT_STORE, LocalStore
    from runtime.server import serve
    from runtime.settings import SettingsError, settings_from_env

    with user_errors({SettingsError: "invalid settings: "}):
        settings = settings_from_env(require_model=False).with_overrides(
            model_digest=model_digest.lower() if model_digest else None,
            host=host or os.environ.get("KILN_HOST") or "127.0.0.1", port=port, workers=workers,
        )
    require_free_port(settings.host, settings.port)
    if model_uri.startswith(REGISTRY_SCHEMES) and not (mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        # MLflow would fall back to ./mlflow.db, which `kiln examples` never fills.
        fail(f"{model_uri} is resolved through an MLflow registry and none was given: pass --mlflow-tracking-uri URI "
             f"or set MLFLOW_TRACKING_URI (the example models of `kiln examples`: {LocalStore(DEFAULT_STORE).tracking_uri})")
    with user_errors({ModelResolutionError: ""}):
        if model_uri.startswith(REGISTRY_SCHEMES):
            # Fetched here, the runtime gets a directory: name the registry version for /version.
            files = fetch_model(model_uri, mlflow_tracking_uri or os.environ["MLFLOW_TRACKING_URI"])
            name, version = registry_version(files.resolved_uri) or (None, None)
            settings = settings.with_overrides(model_uri=str(files.directory), model_name=name, model_version=version)
        else:
            settings = settings.with_overrides(model_uri=local_model_uri(model_uri, mlflow_tracking_uri))
    sys.exit(serve(settings))


@click.command("serve", help="Start a stack's served models locally and route /serving-endpoints/<name>/invocations "
               "by the stack's traffic weights, to test clients before anything is deployed.")
@click.argument("stack")
@click.option("--endpoint", help="Serve only this endpoint.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port of the router.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes per served model.")
@click.option("--token-hashes", "token_hashes_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of sha256 token hashes (one per line) that endpoints with auth accept here, as the "
                   "token-hash secret does once deployed.")
@tracking_uri_option
def serve_command(stack: str, endpoint: str | None, port: int, workers: int, token_hashes_file: Path | None,
                  mlflow_tracking_uri: str | None) -> None:
    from infra.local.stack import LocalServeError, run_router, start_stack

    require_free_port(ROUTER_HOST, port)
    token_hashes: tuple[str, ...] = ()
    if token_hashes_file:
        with user_errors({TokenHashError: ""}):
            token_hashes = parse_token_hashes(token_hashes_file.read_text().splitlines(), str(token_hashes_file))
    with user_errors({LocalServeError: ""}):
        require_reachable_registry(stack, mlflow_tracking_uri)
    with user_errors({LocalServeError: ""}), errors.status("starting served models…") as status:
        local = start_stack(stack, mlflow_tracking_uri, endpoint, workers, progress=status.update,
                            token_hashes=token_hashes)
    table = Table("endpoint", "served model", "traffic %", "runtime", "device",
                  title=f"kiln serve {stack} on http://127.0.0.1:{port}")
    for runtime in local.runtimes:
        table.add_row(runtime.endpoint, runtime.served_model, str(runtime.traffic_percentage), runtime.url,
                      str(runtime.device.get("device", "?")))
    errors.print(table)
    for runtime in local.runtimes:
        if note := runtime.cpu_fallback_note():
            errors.print(f"[yellow]note:[/] {escape(note)}")
    if local.created_secret_endpoints and not token_hashes:
        errors.print(f"[yellow]note:[/] {escape(', '.join(local.created_secret_endpoints))}: auth is on and its "
                     "token-hash secret exists only once deployed, so every request gets 401 here; give "
                     "--token-hashes FILE (sha256 hashes, one per line) to accept tokens")
    run_router(local, port)

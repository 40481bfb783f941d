"""`kiln serve STACK`: the stack's served models as local runtimes behind a weighted router.

Each served model runs in the very runtime the image runs (`python -m runtime`,
configured by the same KILN_* variables the user-data writes), on a free loopback port;
the router splits /serving-endpoints/<name>/invocations by the stack's traffic routes. So
a client can be tested against the real formats, errors and split before any deploy.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from infra.plan.config import PROJECT_ROOT, ConfigError, load_stack
from infra.plan.stack import plan_stack
from models.artifacts import fetch_model, registry_version
from runtime.auth import token_sha256

READY_TIMEOUT_SECONDS = 300
# The router serves this machine only: `kiln serve` is for trying clients before anything is deployed.
ROUTER_HOST = "127.0.0.1"
LOCAL_DRAIN_SECONDS = 5


class LocalServeError(Exception):
    """A served model that cannot be started locally; names it and why."""


@dataclass
class LocalRuntime:
    endpoint: str
    served_model: str
    traffic_percentage: int
    port: int
    process: subprocess.Popen[bytes]
    # The served model's compute type asks for a GPU.
    gpu_compute: bool = False
    # What the runtime's first worker reported once ready (/version "devices"): runtime.device.
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_fallback_note(self) -> str | None:
        """Why a GPU model is answering on this machine's CPU, or None when it is not."""
        if not self.gpu_compute or self.device.get("device") == "cuda":
            return None
        return (f"{self.endpoint}/{self.served_model} is served on a GPU compute type but runs on the CPU here "
                f"({self.device.get('reason') or 'no device reported'}); on its instance the runtime refuses to "
                "become ready without a usable GPU")


@dataclass
class LocalStack:
    runtimes: list[LocalRuntime] = field(default_factory=list)
    # Endpoints whose auth reads a token-hash secret the stack creates at `pulumi up`: here
    # they accept only the hashes `kiln serve --token-hashes` gives.
    created_secret_endpoints: list[str] = field(default_factory=list)

    def stop(self, grace_seconds: float = 10) -> None:
        """SIGTERM every runtime (they drain and exit 0); kill what outlives the grace time."""
        for runtime in self.runtimes:
            if runtime.process.poll() is None:
                runtime.process.terminate()
        deadline = time.monotonic() + grace_seconds
        for runtime in self.runtimes:
            try:
                runtime.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                runtime.process.kill()
                runtime.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model_identity(resolved_uri: str) -> tuple[str, str]:
    """Registry name and version for /version; locally, a URI without one names itself."""
    return registry_version(resolved_uri) or (resolved_uri, "")


def start_stack(stack: str, tracking_uri: str | None = None, endpoint: str | None = None, workers: int = 1,
                progress: Callable[[str], None] = lambda _: None,
                token_hashes: tuple[str, ...] = ()) -> LocalStack:
    """Fetch every served model (of one endpoint, if named) and start a runtime for each;
    returns once all answer 200 on /ping. Raises ConfigError, ModelResolutionError or LocalServeError.

    An endpoint with auth asks for a token here as on an instance. Its token hashes come from
    the secret the stack file names (read with the developer's AWS credentials), plus
    `token_hashes`: the only ones there are for a secret the stack creates at `pulumi up`."""
    name, config = load_stack(stack)
    plan = plan_stack(name, config)
    endpoints = [e for e in plan.endpoints if endpoint is None or e.name == endpoint]
    if not endpoints:
        names = ", ".join(e.name for e in plan.endpoints)
        raise ConfigError(stack, [f"endpoints: no endpoint {endpoint!r}; endpoints here: {names}"])
    local = LocalStack(created_secret_endpoints=[e.name for e in endpoints if e.creates_token_secret])
    # Lets `kiln serve` itself read /version from runtimes that require a token; never shown.
    own_token = secrets.token_urlsafe(32)
    try:
        for planned_endpoint in endpoints:
            for served in planned_endpoint.served_models:
                progress(f"fetching {served.endpoint}/{served.name} ({served.model_uri})")
                files = fetch_model(served.model_uri, tracking_uri or config.mlflow_tracking_uri)
                model_name, model_version = _model_identity(files.resolved_uri)
                port = free_port()
                # As on an instance, but on loopback with the asked worker count, a short drain,
                # never the in-flight metric (with the developer's AWS credentials it would feed
                # the deployed stack's scaling policy), and on whatever device this machine has:
                # a GPU model serves on the CPU here, and says so (LocalRuntime.device).
                settings = replace(
                    served.runtime_settings(str(files.directory), files.digest, model_name, model_version),
                    host="127.0.0.1", port=port, workers=workers, drain_seconds=LOCAL_DRAIN_SECONDS,
                    metric_dimensions=(), gpus=0, require_gpu=False,
                    auth_token_sha256=(*token_hashes, token_sha256(own_token)) if served.auth else (),
                )
                inherited = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
                env = {
                    **inherited,
                    **served.environment_vars,
                    **settings.as_env(),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
                }
                process = subprocess.Popen([sys.executable, "-m", "runtime"], env=env)
                local.runtimes.append(LocalRuntime(served.endpoint, served.name, served.traffic_percentage, port, process,
                                                   gpu_compute=served.profile.has_gpu))
        for runtime in local.runtimes:
            progress(f"waiting for {runtime.endpoint}/{runtime.served_model} to load and warm up")
            wait_ready(runtime)
            runtime.device = reported_device(runtime, own_token)
    except BaseException:
        local.stop()
        raise
    return local


def wait_ready(runtime: LocalRuntime, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
    """Poll /ping until 200; fail as soon as the runtime exits (it logged why)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if runtime.process.poll() is not None:
            raise LocalServeError(f"{runtime.endpoint}/{runtime.served_model}: the runtime exited with code "
                                  f"{runtime.process.returncode} before it was ready (its log is above)")
        try:
            with urllib.request.urlopen(f"{runtime.url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise LocalServeError(f"{runtime.endpoint}/{runtime.served_model}: not ready after {timeout_seconds} s")


def reported_device(runtime: LocalRuntime, token: str) -> dict[str, Any]:
    """The first worker's device report, from the ready runtime's /version."""
    request = urllib.request.Request(f"{runtime.url}/version", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        devices = json.loads(response.read()).get("devices") or [{}]
    return devices[0]


def run_router(local: LocalStack, port: int) -> None:
    """Serve the router until SIGINT/SIGTERM, then stop the runtimes (they drain, exit 0)."""
    import uvicorn

    class RouterServer(uvicorn.Server):
        # uvicorn re-raises a captured SIGTERM once it stops, which would end this process
        # before the runtimes are stopped; note the request to exit and nothing more.
        def handle_exit(self, sig: int, frame: object) -> None:
            self.force_exit = self.should_exit
            self.should_exit = True

    router = router_for(local)
    from infra.local.router import access_log

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    try:
        RouterServer(uvicorn.Config(router, host=ROUTER_HOST, port=port, log_level="warning", lifespan="off")).run()
    finally:
        local.stop()


def router_for(local: LocalStack):  # type: ignore[no-untyped-def]
    """The weighted router over the started runtimes, one backend list per endpoint."""
    from infra.local.router import Backend, TrafficRouter

    endpoints: dict[str, list[Backend]] = {}
    for runtime in local.runtimes:
        endpoints.setdefault(runtime.endpoint, []).append(
            Backend(runtime.served_model, runtime.url, runtime.traffic_percentage))
    return TrafficRouter(endpoints)

"""Issue 18 GPU check, one step per call (gpu_check.sh runs each under `timeout`).

    python3 benchmarks/gpu_check/gpu_check.py env
    python3 benchmarks/gpu_check/gpu_check.py models
    python3 benchmarks/gpu_check/gpu_check.py reload
    python3 benchmarks/gpu_check/gpu_check.py serve NAME --model pt2|pickle [--workers N|gpus] [--gpus] [--require-gpu]
        [--env K=V ...] [--timed N] [--rows N] [--concurrent N]
    python3 benchmarks/gpu_check/gpu_check.py summary

Every step writes $WORK/results/<step>.json (rewritten as it goes, so a step killed by its
timeout still leaves what it had) and prints a few lines for the log. `summary` merges them
into $OUT/gpu_check.json. Runs with CUDA absent too: CUDA-only facts then say so.
Only the standard library at module level: torch and mlflow are imported inside steps.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/kiln-gpu"))
RESULTS = WORK / "results"
MODELS = {"pt2": WORK / "models" / "mlp_default", "pickle": WORK / "models" / "mlp_pickle"}


def say(*parts: object) -> None:
    print("[gpu_check]", *parts, flush=True)


def write(name: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / f".{name}.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(RESULTS / f"{name}.json")


def run_cmd(cmd: list[str], timeout: float = 20) -> dict:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return {"rc": done.returncode, "out": done.stdout.strip()[-4000:], "err": done.stderr.strip()[-2000:]}
    except FileNotFoundError:
        return {"rc": None, "error": f"{cmd[0]} not found"}
    except subprocess.TimeoutExpired:
        return {"rc": None, "error": f"timed out after {timeout} s"}


def version_of(name: str) -> dict:
    try:
        module = __import__(name)
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {error}"}
    return {"version": getattr(module, "__version__", None), "file": getattr(module, "__file__", None)}


def _term_to_exit() -> None:
    # `timeout` sends SIGTERM: turn it into SystemExit so `finally` blocks stop the runtime.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# ---------------------------------------------------------------- step 1: environment
def step_env(_: argparse.Namespace) -> None:
    result: dict = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
                    "pythonpath": os.environ.get("PYTHONPATH"),
                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    result["nvidia_smi"] = run_cmd(["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total,memory.used",
                                    "--format=csv"])
    write("env", result)
    for name in ("numpy", "pandas", "pyarrow", "pydantic", "pydantic_core", "typing_extensions", "fastapi",
                 "starlette", "uvicorn", "httptools", "uvloop", "cloudpickle", "mlflow"):
        result[name] = version_of(name)
    try:
        import google.protobuf
        result["protobuf"] = google.protobuf.__version__
    except Exception as error:  # noqa: BLE001
        result["protobuf"] = f"{type(error).__name__}: {error}"
    try:
        import torch
    except Exception as error:  # noqa: BLE001 - the rest of the facts are still worth having
        torch = None
        result["torch"] = {"error": f"{type(error).__name__}: {error}"}
    else:
        result["torch"] = {"version": torch.__version__, "cuda_build": torch.version.cuda,
                           "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count()}
    if torch is not None and torch.cuda.is_available():
        try:
            props = torch.cuda.get_device_properties(0)
            x = torch.ones(256, 256, device="cuda")
            result["torch"].update(device_name=props.name, total_memory_gib=round(props.total_memory / 2**30, 1),
                                   capability=f"{props.major}.{props.minor}",
                                   matmul_ok=bool((x @ x).sum().item() == 256**3))
        except Exception as error:  # noqa: BLE001
            result["torch"]["cuda_error"] = f"{type(error).__name__}: {error}"
    probe = {}
    for module in ("mlflow.pyfunc.scoring_server", "mlflow.pytorch", "runtime.server", "runtime.worker",
                   "runtime.device", "models.reload"):
        try:
            __import__(module)
            probe[module] = "ok"
        except Exception as error:  # noqa: BLE001
            probe[module] = f"{type(error).__name__}: {error}"
    result["imports"] = probe
    # Batching: say what the code shows rather than fake a toggle; the serve steps time requests of
    # 5 and of --rows rows instead (a batch the client sends, the only batching there is).
    hits = []
    for path in sorted((REPO / "runtime").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "batch" in line.lower():
                hits.append(f"{path.name}:{number}: {line.strip()}")
    result["batching"] = {"mentions_in_runtime": hits,
                          "note": ("runtime/ has no server-side batching setting (no KILN_*BATCH* variable, no "
                                   "'batch' in its code): each worker predicts one request at a time. Measured "
                                   "instead: the same model with 5 rows and with --rows rows per request (client "
                                   "batches), on the GPU and with CUDA hidden") if not hits else "see mentions"}
    write("env", result)
    say("python", result["python"], "| torch", result["torch"], "| mlflow", result["mlflow"].get("version"),
        "from", result["mlflow"].get("file"), "| protobuf", result["protobuf"])
    say("nvidia-smi:", result["nvidia_smi"].get("out") or result["nvidia_smi"])
    say("imports:", probe)
    say("batching:", result["batching"]["note"])


# ---------------------------------------------------------------- step 2: two models, logged on CPU
def _mlmodel_facts(model_dir: Path) -> dict:
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    pytorch = mlmodel.get("flavors", {}).get("pytorch", {})
    data = model_dir / pytorch.get("model_data", "data")
    files = sorted(p.name for p in data.iterdir()) if data.is_dir() else []
    fmt = "pt2" if "model.pt2" in files else ("pickle" if "model.pth" in files else "unknown")
    return {"format": fmt, "data_files": files, "pytorch_flavor": pytorch,
            "pyfunc_model_config": mlmodel.get("flavors", {}).get("python_function", {}).get("config"),
            "saved_input_example_info": mlmodel.get("saved_input_example_info"),
            "signature_inputs": (mlmodel.get("signature") or {}).get("inputs"),
            "mlflow_version": mlmodel.get("mlflow_version"),
            "serving_input_example": (model_dir / "serving_input_example.json").read_text()
            if (model_dir / "serving_input_example.json").is_file() else None}


def step_models(_: argparse.Namespace) -> None:
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    result: dict = {"cuda_available_while_logging": torch.cuda.is_available(), "models": {}}
    write("models", result)
    # MLflow 3.17 refuses the file store unless told; skinny has no SQL store (no sqlalchemy).
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    tracking = f"file://{WORK / 'mlruns'}"
    mlflow.set_tracking_uri(tracking)
    result["tracking_uri"] = tracking
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3)).eval()  # built and exported on CPU
    example = np.random.default_rng(0).random((5, 4), dtype=np.float32)  # batch > 1: dynamic batch dim in pt2
    with torch.no_grad():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    result["signature"] = signature.to_dict()
    try:
        mlflow.set_experiment("kiln-gpu-check")
    except Exception as error:  # noqa: BLE001 - log_model below then falls back to save_model
        result["set_experiment_error"] = f"{type(error).__name__}: {error}"
    import logging

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.records: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(f"{record.name}: {record.getMessage()}"[:1500])

    for key, kwargs in (("pt2", {}), ("pickle", {"serialization_format": "pickle"})):
        target = MODELS[key]
        entry: dict = {"log_model_kwargs": kwargs, "path": str(target)}
        collect = Collect()
        logging.getLogger("mlflow").addHandler(collect)
        entry["mlflow_warnings"] = collect.records  # e.g. log_model's own serving-input validation on cuda
        started = time.perf_counter()
        try:
            with mlflow.start_run(run_name=f"mlp-{key}"):
                # pip_requirements given only to skip requirement inference (a subprocess that
                # loads the model once more); it does not change how the model is saved or loaded.
                info = mlflow.pytorch.log_model(model, name=f"mlp_{key}", signature=signature, input_example=example,
                                                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                                                **kwargs)
            entry["model_uri"] = info.model_uri
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(target))
            entry["method"] = "mlflow.pytorch.log_model (file store) + download_artifacts"
            if Path(local).resolve() != target.resolve():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(local, target)
        except Exception as error:  # noqa: BLE001 - fall back to save_model: same serialization defaults
            entry["log_model_error"] = f"{type(error).__name__}: {error}"
            entry["log_model_traceback"] = traceback.format_exc()[-3000:]
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            mlflow.pytorch.save_model(model, str(target), signature=signature, input_example=example,
                                      pip_requirements=["torch"], **kwargs)
            entry["method"] = "mlflow.pytorch.save_model (log_model failed)"
        logging.getLogger("mlflow").removeHandler(collect)
        entry["seconds"] = round(time.perf_counter() - started, 2)
        entry.update(_mlmodel_facts(target))
        result["models"][key] = entry
        write("models", result)
        say(f"model {key}: format={entry['format']} files={entry['data_files']} via {entry['method']} "
            f"in {entry['seconds']} s; mlflow warnings: {len(collect.records)}")
        for line in collect.records:
            if "validate serving input" in line:
                say(f"model {key}: log_model's serving-input validation failed: {line[-400:]}")
    with torch.no_grad():
        result["expected_predictions"] = model(torch.from_numpy(example)).numpy().round(5).tolist()
    write("models", result)


# ---------------------------------------------------------------- step 3: the reload check's probe on the GPU
def step_reload(_: argparse.Namespace) -> None:
    """models/reload_probe.py as `kiln bake` runs it for a GPU compute type (target cuda), here on
    a real GPU: without pip or a network there is no fresh virtualenv, so it runs in this Python."""
    result: dict = {}
    for key, model_dir in MODELS.items():
        if not (model_dir / "MLmodel").is_file():
            result[key] = {"error": "model not there (the models step failed)"}
            continue
        done = run_cmd([sys.executable, str(REPO / "models" / "reload_probe.py"), str(model_dir), "cuda"], timeout=100)
        lines = [line for line in (done.get("out") or "").splitlines() if line.startswith("KILN_RELOAD_RESULT ")]
        entry: dict = {"probe_rc": done.get("rc")}
        if not lines:
            entry["error"] = done
        else:
            outcome = json.loads(lines[-1].removeprefix("KILN_RELOAD_RESULT "))
            entry["outcome"] = outcome
            try:
                from models.reload import result_from_probe

                finding = result_from_probe(outcome).finding()
                entry["finding"] = finding.as_dict() if finding else None
            except Exception as error:  # noqa: BLE001 - the outcome above is still worth having
                entry["finding_error"] = f"{type(error).__name__}: {error}"
        result[key] = entry
        write("reload", result)
        say(f"reload probe {key} on cuda: ok={_get(entry, 'outcome', 'ok')} device={_get(entry, 'outcome', 'device')} "
            f"emulated={_get(entry, 'outcome', 'emulated')} finding={_get(entry, 'finding', 'id')}")


# ---------------------------------------------------------------- step 4/5: the runtime
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        if own:
            conn.close()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _gpu_apps(worker_pids: list[int]) -> dict:
    apps = run_cmd(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader"])
    gpu = run_cmd(["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader"])
    rows = []
    for line in (apps.get("out") or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if parts and parts[0].isdigit():
            rows.append({"pid": int(parts[0]), "name": parts[1] if len(parts) > 1 else "",
                         "used_memory": parts[2] if len(parts) > 2 else "", "is_worker": int(parts[0]) in worker_pids})
    return {"raw": apps, "apps": rows, "gpu_memory_used_and_util": gpu.get("out") or gpu,
            "workers_on_gpu": sorted(r["pid"] for r in rows if r["is_worker"]),
            "workers_not_listed": sorted(set(worker_pids) - {r["pid"] for r in rows})}


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 3), "p90_ms": pick(0.90),
            "p99_ms": pick(0.99), "mean_ms": round(statistics.fmean(ordered), 3), "min_ms": round(ordered[0], 3),
            "max_ms": round(ordered[-1], 3)}


def _rows_body(body: bytes, rows: int) -> bytes:
    """The serving input example with its rows repeated to `rows` (a batch sent by the client)."""
    data = json.loads(body)
    key = "inputs" if "inputs" in data else "instances"
    examples = data[key]
    data[key] = [examples[i % len(examples)] for i in range(rows)]
    return json.dumps(data).encode()


def _gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _timed(port: int, body: bytes, count: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # kept alive, as the ALB does
    samples, statuses = [], {}
    started = time.perf_counter()
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            status, _, _ = _request(port, "POST", "/invocations", body, conn=conn)
            samples.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    except Exception as error:  # noqa: BLE001
        return {"error": f"{type(error).__name__}: {error}", "done": len(samples), "statuses": statuses,
                **_percentiles(samples)}
    finally:
        conn.close()
    return {"statuses": statuses, "seconds": round(time.perf_counter() - started, 3), **_percentiles(samples)}


def _concurrent(port: int, body: bytes, threads: int, each: int) -> dict:
    results: list[dict] = [{} for _ in range(threads)]

    def client(i: int) -> None:
        results[i] = _timed(port, body, each)

    started = time.perf_counter()
    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    seconds = time.perf_counter() - started
    total = sum(sum(r.get("statuses", {}).values()) for r in results)
    return {"threads": threads, "each": each, "seconds": round(seconds, 3),
            "requests_per_second": round(total / seconds, 1) if seconds else None, "per_thread": results}


def step_serve(args: argparse.Namespace) -> None:
    _term_to_exit()
    name = args.name
    model_dir = MODELS[args.model]
    extra = dict(item.split("=", 1) for item in args.env)
    gpus = _gpu_count()
    # One worker per GPU as the plan gives MULTIGPU types (at least 2, so one GPU is shared and shown)
    workers = max(2, gpus) if args.workers == "gpus" else int(args.workers)
    if args.gpus:
        extra["KILN_GPUS"] = str(max(1, gpus))
    if args.require_gpu:
        extra["KILN_REQUIRE_GPU"] = "true"
    result: dict = {"case": name, "model": args.model, "model_dir": str(model_dir), "workers": workers,
                    "gpus_seen_by_harness": gpus, "extra_env": extra, "phase": "starting"}
    if not (model_dir / "MLmodel").is_file():
        result["error"] = "model not there (the models step failed)"
        write(f"serve_{name}", result)
        say(name, result["error"])
        return
    port = _free_port()
    env = {**os.environ, **extra, "KILN_MODEL_URI": str(model_dir), "KILN_PORT": str(port), "KILN_HOST": "127.0.0.1",
           "KILN_WORKERS": str(workers), "KILN_CACHE_DIR": str(WORK / "cache"),
           "KILN_LOAD_TIMEOUT_SECONDS": str(args.start_timeout), "KILN_DRAIN_SECONDS": "5",
           "KILN_SERVED_MODEL": f"gpu-check-{name}", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
    log_path = WORK / f"runtime_{name}.log"
    body = (model_dir / "serving_input_example.json").read_bytes()
    result.update(port=port, runtime_log=str(log_path), request_body=body.decode()[:500])
    write(f"serve_{name}", result)
    started = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "runtime"], cwd=REPO, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    result["runtime_pid"] = proc.pid
    try:
        ready = False
        last = None
        while time.perf_counter() - started < args.start_timeout:
            if proc.poll() is not None:
                break
            try:
                last = _request(port, "GET", "/ping", timeout=2)[0]
                if last == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.25)
        result.update(ready=ready, seconds_to_ready=round(time.perf_counter() - started, 2), last_ping=last,
                      exited_before_ready=proc.returncode)
        workers = [pid for pid in _children(proc.pid) if "runtime.worker" in _cmdline(pid)]
        result["worker_pids"] = workers
        result["phase"] = "ready" if ready else "not ready"
        write(f"serve_{name}", result)
        say(f"{name}: ready={ready} in {result['seconds_to_ready']} s, exit={proc.returncode}, workers={workers}")
        if ready:
            status, headers, answer = _request(port, "POST", "/invocations", body)
            result["invocation"] = {"status": status, "body": answer.decode(errors="replace")[:2000],
                                    "x-kiln-served-model": headers.get("x-kiln-served-model")}
            say(f"{name}: POST /invocations -> {status} {answer[:200]!r}")
            version = _request(port, "GET", "/version")[2].decode(errors="replace")
            result["version"] = json.loads(version) if version.startswith("{") else version
            result["health"] = _request(port, "GET", "/health")[2].decode(errors="replace")
            result["gpu_while_serving"] = _gpu_apps(workers)
            say(f"{name}: nvidia-smi apps {result['gpu_while_serving']['apps']} "
                f"(workers on GPU: {result['gpu_while_serving']['workers_on_gpu']})")
            write(f"serve_{name}", result)
            if args.timed:
                _timed(port, body, 10)  # warm the connection and the worker
                result["timed_sequential"] = _timed(port, body, args.timed)
                say(f"{name}: {args.timed} sequential requests: {result['timed_sequential']}")
                write(f"serve_{name}", result)
            if args.timed and args.rows:
                batch = _rows_body(body, args.rows)
                _timed(port, batch, 5)
                result["timed_rows"] = {"rows_per_request": args.rows, **_timed(port, batch, args.timed)}
                say(f"{name}: {args.timed} requests of {args.rows} rows: {result['timed_rows']}")
                write(f"serve_{name}", result)
            if args.concurrent:
                result["timed_concurrent"] = _concurrent(port, body, args.concurrent, max(args.timed, 100))
                result["gpu_after_concurrent"] = _gpu_apps(workers)
                say(f"{name}: {args.concurrent} concurrent clients: "
                    f"{result['timed_concurrent']['requests_per_second']} req/s")
                write(f"serve_{name}", result)
            metrics = _request(port, "GET", "/metrics")[2].decode(errors="replace")
            result["metrics"] = [line for line in metrics.splitlines() if line and not line.startswith("#")
                                 and "_bucket" not in line]
            # Issue 18 item 6: the runtime names each worker's device and GPU memory in /version and /metrics
            version = result["version"] if isinstance(result["version"], dict) else {}
            result["version_device"] = version.get("device")
            result["version_devices"] = version.get("devices")
            result["metrics_device"] = [line for line in result["metrics"] if line.startswith("kiln_worker_")]
            result["runtime_names_device"] = bool(version.get("device")) and bool(result["metrics_device"])
            say(f"{name}: /version device {result['version_device']}: "
                + "; ".join(f"worker {d.get('worker')} {d.get('device')} CUDA_VISIBLE_DEVICES="
                            f"{d.get('cuda_visible_devices')} {[g.get('name') for g in d.get('gpus', [])]}"
                            for d in result["version_devices"] or []))
    except Exception as error:  # noqa: BLE001
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                result["exit_code_after_sigterm"] = proc.wait(15)
            except subprocess.TimeoutExpired:
                result["exit_code_after_sigterm"] = "killed after 15 s"
        else:
            result["exit_code"] = proc.returncode
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers and anything left in the session
        except ProcessLookupError:
            pass
        proc.wait()
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        lines = text.splitlines()
        result["runtime_log_tail"] = lines[-40:]
        result["runtime_log_errors"] = [line[:600] for line in lines if "can't be loaded on" in line
                                        or "cannot serve" in line or line.startswith(("RuntimeError", "MlflowException",
                                                                                     "mlflow.exceptions"))][:10]
        result["runtime_log_devices"] = [line[:400] for line in lines if " device cuda (" in line
                                         or " device cpu (" in line or "no usable GPU" in line][:10]
        result["phase"] = "done"
        write(f"serve_{name}", result)
        say(f"{name}: stopped, exit {result.get('exit_code_after_sigterm', result.get('exit_code'))}; "
            f"errors: {result['runtime_log_errors'][:3]}")
        if not result.get("ready"):
            say(f"{name}: runtime log tail:\n" + "\n".join(line[:400] for line in lines[-15:]))


# ---------------------------------------------------------------- step 5: summary
def _get(data: dict, *keys: str, default=None):
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def step_summary(_: argparse.Namespace) -> None:
    out = Path(os.environ.get("OUT") or WORK)
    merged: dict = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": {}}
    for path in sorted(RESULTS.glob("*.json")):
        try:
            merged["results"][path.stem] = json.loads(path.read_text())
        except ValueError as error:
            merged["results"][path.stem] = {"unreadable": str(error)}
    steps = RESULTS / "steps.jsonl"
    if steps.exists():
        merged["steps"] = [json.loads(line) for line in steps.read_text().splitlines() if line.strip()]
    r = merged["results"]
    env = r.get("env", {})

    def case(name: str) -> dict:
        c = r.get(f"serve_{name}", {})
        return {"ready": c.get("ready"), "seconds_to_ready": c.get("seconds_to_ready"),
                "exit_code": c.get("exit_code", c.get("exit_code_after_sigterm")),
                "invocation_status": _get(c, "invocation", "status"), "workers": c.get("workers"),
                "worker_pids": c.get("worker_pids"), "workers_on_gpu": _get(c, "gpu_while_serving", "workers_on_gpu"),
                "gpu_apps": _get(c, "gpu_while_serving", "apps"),
                "runtime_names_device": c.get("runtime_names_device"), "version_device": c.get("version_device"),
                "worker_devices": [(d.get("worker"), d.get("device"), d.get("cuda_visible_devices"),
                                    [(g.get("name"), g.get("memory_used_bytes")) for g in d.get("gpus", [])])
                                   for d in c.get("version_devices") or []],
                "metrics_device": c.get("metrics_device"), "log_devices": c.get("runtime_log_devices"),
                "errors": c.get("runtime_log_errors"), "timed_sequential": c.get("timed_sequential"),
                "timed_rows": c.get("timed_rows"),
                "timed_concurrent": {k: v for k, v in (c.get("timed_concurrent") or {}).items() if k != "per_thread"}
                or None} if c else {"ran": False}

    merged["summary"] = {
        "gpu": _get(env, "nvidia_smi", "out"),
        "torch": env.get("torch"), "mlflow": _get(env, "mlflow", "version"), "python": env.get("python"),
        "imports": env.get("imports"),
        "default_format": _get(r, "models", "models", "pt2", "format"),
        "pickle_format": _get(r, "models", "models", "pickle", "format"),
        "log_model_warnings": {k: [w[-500:] for w in v.get("mlflow_warnings", []) if "serving input" in w]
                               for k, v in (_get(r, "models", "models") or {}).items()},
        "reload_probe_on_cuda": {k: {"ok": _get(v, "outcome", "ok"), "device": _get(v, "outcome", "device"),
                                     "emulated": _get(v, "outcome", "emulated"), "finding": v.get("finding"),
                                     "error": v.get("error") or v.get("finding_error")}
                                 for k, v in (r.get("reload") or {}).items()},
        "pt2_on_cuda_require_gpu": case("pt2_cuda"),
        "pickle_on_cuda_require_gpu": case("pickle_cuda_w1"),
        "pickle_worker_per_gpu": case("pickle_per_gpu"),
        "pickle_cuda_hidden_cpu_baseline": case("pickle_cpu_w1"),
        "pickle_cuda_hidden_require_gpu_refused": case("pickle_refused"),
        "batching": _get(env, "batching", "note"),
    }
    gpu_p50 = _get(r, "serve_pickle_cuda_w1", "timed_sequential", "p50_ms")
    cpu_p50 = _get(r, "serve_pickle_cpu_w1", "timed_sequential", "p50_ms")
    merged["summary"]["p50_ms_gpu_vs_cuda_hidden"] = [gpu_p50, cpu_p50]
    merged["summary"]["p50_ms_rows_gpu_vs_cuda_hidden"] = [_get(r, "serve_pickle_cuda_w1", "timed_rows", "p50_ms"),
                                                           _get(r, "serve_pickle_cpu_w1", "timed_rows", "p50_ms")]
    (out / "gpu_check.json").write_text(json.dumps(merged, indent=2, default=str))
    say("summary:", json.dumps(merged["summary"], indent=1, default=str))
    say("wrote", out / "gpu_check.json")


def main() -> None:
    sys.path.insert(0, str(REPO))  # runtime/ and models/ from this checkout, as `python -m runtime` finds them
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("env")
    sub.add_parser("models")
    sub.add_parser("reload")
    serve = sub.add_parser("serve")
    serve.add_argument("name")
    serve.add_argument("--model", choices=sorted(MODELS), required=True)
    serve.add_argument("--workers", default="1", help="a number, or 'gpus': one per GPU, at least 2")
    serve.add_argument("--gpus", action="store_true", help="KILN_GPUS = the GPUs torch sees (the plan's workerPerGpu)")
    serve.add_argument("--require-gpu", action="store_true", help="KILN_REQUIRE_GPU=true, as the instance's user data")
    serve.add_argument("--env", action="append", default=[])
    serve.add_argument("--timed", type=int, default=0)
    serve.add_argument("--rows", type=int, default=0, help="also time requests of this many rows")
    serve.add_argument("--concurrent", type=int, default=0)
    serve.add_argument("--start-timeout", type=float, default=60)
    sub.add_parser("summary")
    args = parser.parse_args()
    {"env": step_env, "models": step_models, "reload": step_reload, "serve": step_serve,
     "summary": step_summary}[args.step](args)


if __name__ == "__main__":
    main()

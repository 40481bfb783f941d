#!/usr/bin/env bash
# Issue 18 GPU check for Kiln's runtime (runtime/), run once on a lent GPU machine
# from the repository root:   bash benchmarks/gpu_check/gpu_check.sh
# Writes $OUT/gpu_check.log and $OUT/gpu_check.json. Every step runs under `timeout` and the
# steps together under GPU_CHECK_BUDGET seconds (default 300); a failing step does not stop
# the rest. Needs mlflow-skinny & co. importable: if they are not, installs .gpu/whl/*.whl (see README.md)
# into /tmp/site (and .gpu/whl-extra/*.whl only if the import probe still fails).
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/gpuout}
mkdir -p "$OUT"
export GPU_CHECK_WORK=${GPU_CHECK_WORK:-/tmp/kiln-gpu}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
BUDGET=${GPU_CHECK_BUDGET:-300}
START=$SECONDS
rm -rf "$GPU_CHECK_WORK"
mkdir -p "$GPU_CHECK_WORK/results"
STEPS="$GPU_CHECK_WORK/results/steps.jsonl"

step() {  # step NAME LIMIT_SECONDS COMMAND...: bounded by its limit and by what is left of the budget
  local name=$1 limit=$2 left t0 rc
  shift 2
  left=$((BUDGET - (SECONDS - START)))
  if ((left < 20)); then
    echo "== $name: SKIPPED, only ${left}s of the ${BUDGET}s budget left"
    echo "{\"step\": \"$name\", \"rc\": null, \"skipped\": true}" >>"$STEPS"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s, t=$((SECONDS - START))s)"
  t0=$SECONDS
  timeout -k 5 "$limit" "$@"
  rc=$?
  ((rc == 124 || rc == 137)) && echo "== $name: TIMED OUT after ${limit}s"
  echo "== $name: rc=$rc in $((SECONDS - t0))s"
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"limit\": $limit}" >>"$STEPS"
}

PROBE='import mlflow.pyfunc.scoring_server, mlflow.pytorch, uvicorn, runtime.server, runtime.worker, runtime.device'

deps() {
  if "$PY" -c "$PROBE" 2>/dev/null; then
    echo "import probe ok without installing"
  else
    echo "installing .gpu/whl into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl/*.whl
    case ":${PYTHONPATH:-}:" in *":$SITE:"*) ;; *) export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" ;; esac
    if ! "$PY" -c "$PROBE" && compgen -G ".gpu/whl-extra/*.whl" >/dev/null; then
      echo "import probe failed: adding .gpu/whl-extra: $(ls .gpu/whl-extra | tr '\n' ' ')"
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/whl-extra/*.whl
    fi
    "$PY" -c "$PROBE" && echo "import probe ok"
  fi
}

main() {
  echo "== kiln issue-18 GPU check, $(date -u +%FT%TZ), $(hostname 2>/dev/null), repo $(git rev-parse --short HEAD 2>/dev/null)"
  echo "PYTHONPATH=${PYTHONPATH:-}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 || echo "no nvidia-smi"
  # deps runs in this shell (not under `step`) so an export of PYTHONPATH reaches the steps.
  local t0=$SECONDS
  deps
  echo "{\"step\": \"deps\", \"rc\": $?, \"seconds\": $((SECONDS - t0))}" >>"$STEPS"
  step env 45 "$PY" benchmarks/gpu_check/gpu_check.py env
  step models 75 "$PY" benchmarks/gpu_check/gpu_check.py models
  # 3. the reload check's probe, target cuda: pt2 fails with the finding that says how to fix it
  step reload 60 "$PY" benchmarks/gpu_check/gpu_check.py reload
  # 4. the real runtime, as the image starts it on a GPU compute type (python -m runtime, KILN_* only,
  #    KILN_REQUIRE_GPU on): it names each worker's device in its log, /version and /metrics
  step serve_pt2_cuda 60 "$PY" benchmarks/gpu_check/gpu_check.py serve pt2_cuda --model pt2 --require-gpu \
    --start-timeout 50
  step serve_pickle_cuda_w1 75 "$PY" benchmarks/gpu_check/gpu_check.py serve pickle_cuda_w1 --model pickle \
    --require-gpu --timed 200 --rows 64 --start-timeout 50
  # one worker per GPU (CUDA_VISIBLE_DEVICES per worker; at least 2 workers, so one GPU shows sharing too)
  step serve_pickle_per_gpu 75 "$PY" benchmarks/gpu_check/gpu_check.py serve pickle_per_gpu --model pickle \
    --workers gpus --gpus --require-gpu --concurrent 2 --start-timeout 50
  # 5. CPU baseline in the same run: CUDA hidden, nothing required (what `kiln serve` does locally)
  step serve_pickle_cpu_w1 75 "$PY" benchmarks/gpu_check/gpu_check.py serve pickle_cpu_w1 --model pickle \
    --timed 200 --rows 64 --start-timeout 50 --env CUDA_VISIBLE_DEVICES=
  # ...and the same with KILN_REQUIRE_GPU: no silent CPU fallback, /ping never 200
  step serve_pickle_refused 45 "$PY" benchmarks/gpu_check/gpu_check.py serve pickle_refused --model pickle \
    --require-gpu --start-timeout 30 --env CUDA_VISIBLE_DEVICES=
  timeout -k 5 30 "$PY" benchmarks/gpu_check/gpu_check.py summary
  echo "== done in $((SECONDS - START))s"
}

main 2>&1 | tee "$OUT/gpu_check.log"

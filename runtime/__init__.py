"""The Kiln serving runtime: the process inside every environment image.

The ALB talks to it on each instance. Flow at start: settings (KILN_* env) → fetch the
model by digest (fetch) → one worker process per unit of provisioned concurrency loads it and predicts
the input example (worker, scoring) → only then /ping answers 200 (app). Requests are
admitted into a bounded queue in front of the workers (workers); anything beyond it is
refused at once with 503 + Retry-After, never left to hang.

Entry points: `python -m runtime` (the image's ENTRYPOINT, reads KILN_* env) and
`kiln runtime` (the same `serve()` with flags on top of the env).
"""

RUNTIME_VERSION = "0.1.0"

"""Get the model's files onto local disk and prove they are the ones the plan named.

S3 layout (the artifact store, written by bake): a model "artifact" is the model
directory's files, unchanged, under the prefix `models/<digest>/`, where <digest> is
runtime.digest.tree_digest of that directory. So `s3://bucket/models/<digest>/MLmodel`
is the MLmodel file, and the digest can be recomputed from what was downloaded.

A local model directory is served in place (`kiln runtime` and `kiln serve` resolve
registry and run URIs to one first). The runtime carries no MLflow resolver of its own.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from runtime.contract import UPLOAD_MARKER
from runtime.digest import tree_digest

log = logging.getLogger("kiln.runtime")
# Where the image's non-root user may write; the cache_dir setting overrides it.
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "kiln"


class FetchError(Exception):
    """The model could not be fetched or is not the one asked for; says which and why."""


@dataclass(frozen=True)
class LocalModel:
    directory: Path
    digest: str


def fetch(model_uri: str, expected_digest: str | None, cache_dir: Path | None = None) -> LocalModel:
    """Download (or reuse from the cache) and verify; raises FetchError on any mismatch."""
    if model_uri.startswith("s3://"):
        model = _fetch_s3(model_uri, expected_digest, cache_dir or DEFAULT_CACHE_DIR)
    else:
        model = _local_directory(model_uri)
    if expected_digest and model.digest != expected_digest:
        raise FetchError(
            f"{model_uri}: digest mismatch, expected {expected_digest} but the files hash to {model.digest}; "
            "refusing to serve a model other than the one planned"
        )
    if not expected_digest:
        log.warning("no KILN_MODEL_DIGEST given for %s: serving unverified files (digest %s)", model_uri, model.digest)
    return model


def _local_directory(model_uri: str) -> LocalModel:
    """A model directory served in place; hashing it still names what runs."""
    path = Path(model_uri).expanduser()
    if not path.is_dir():
        raise FetchError(f"{model_uri}: neither s3://bucket/models/<digest>/ nor a local model directory "
                         "(`kiln runtime --model-uri` resolves models:/ and runs:/ URIs first)")
    if not (path / "MLmodel").is_file():
        raise FetchError(f"{model_uri}: no MLmodel file in this directory; is it an MLflow model?")
    return LocalModel(path.resolve(), tree_digest(path))


def _fetch_s3(model_uri: str, expected_digest: str | None, cache: Path) -> LocalModel:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(model_uri)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    if expected_digest:
        cached = cache / expected_digest
        if (cached / "MLmodel").is_file():
            digest = tree_digest(cached)
            if digest == expected_digest:
                log.info("model %s already in cache %s", expected_digest, cached)
                return LocalModel(cached, digest)
            log.warning("cached %s does not match its digest (got %s); downloading again", cached, digest)
            shutil.rmtree(cached, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    try:
        # boto3 honours AWS_ENDPOINT_URL, so the same code talks to moto on loopback in tests.
        s3 = boto3.client("s3")
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):]
                if not relative or relative.endswith("/") or relative == UPLOAD_MARKER:
                    continue
                target = (staging / relative).resolve()
                if staging.resolve() not in target.parents:
                    raise FetchError(f"{model_uri}: object key {item['Key']!r} escapes the model directory")
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
                count += 1
        if count == 0:
            raise FetchError(f"{model_uri}: no objects under s3://{bucket}/{prefix}")
        if not (staging / "MLmodel").is_file():
            raise FetchError(f"{model_uri}: no MLmodel file under s3://{bucket}/{prefix}; is it an MLflow model?")
        digest = tree_digest(staging)
        cached = cache / digest
        if cached.exists():
            shutil.rmtree(cached)
        staging.rename(cached)
        log.info("fetched %d files of %s into %s", count, model_uri, cached)
        return LocalModel(cached, digest)
    except (BotoCoreError, ClientError) as error:
        raise FetchError(f"{model_uri}: cannot download from S3 ({error})") from None
    except OSError as error:
        raise FetchError(f"{model_uri}: cannot write the model to {cache} ({error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

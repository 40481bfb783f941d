"""Upload a model's files to the artifact store under their content digest.

The key is the digest (models/<digest>/), so an upload is idempotent: a completion marker
written last says the prefix is whole, and a second upload of the same model (another
stack run, another served model) sends nothing. Before sending, the local files are
hashed again, so a corrupted cache is never published under a digest it does not match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from infra.providers.image_build import ClientFactory, _boto3_client
from runtime.contract import UPLOAD_MARKER
from runtime.digest import tree_digest

REPLACE_KEYS = ("region", "bucket", "prefix", "digest")
OUTPUT_KEYS = ("uri", "fileCount", "uploaded")


class ArtifactUploadError(Exception):
    """The model files cannot be uploaded as they are; says which files and why."""


class ModelArtifactProvider(ResourceProvider):
    serialize_as_secret_always = False

    def __init__(self, client_factory: ClientFactory | None = None) -> None:
        super().__init__()
        self.client_factory = client_factory

    def _s3(self, region: str) -> Any:
        return (self.client_factory or _boto3_client)("s3", region)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # sourceDir is where this machine's cache holds the files: a different path with the
        # same digest is the same artifact, so it is an in-place update that uploads nothing.
        changed = [k for k in (*REPLACE_KEYS, "sourceDir") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k in REPLACE_KEYS], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"s3://{props['bucket']}/{props['prefix']}", self._upload(props))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._upload(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # Kept on purpose: an instance refresh that rolls back runs the previous launch
        # template, which fetches the previous model by this digest. The bucket's
        # lifecycle expires overwritten versions; deleting a model is a deliberate act.
        return None

    def _complete(self, s3: Any, props: dict[str, Any]) -> dict[str, Any] | None:
        try:
            body = s3.get_object(Bucket=props["bucket"], Key=props["prefix"] + UPLOAD_MARKER)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        marker = json.loads(body)
        return marker if marker.get("digest") == props["digest"] else None

    def _upload(self, props: dict[str, Any]) -> dict[str, Any]:
        s3 = self._s3(props["region"])
        uri = f"s3://{props['bucket']}/{props['prefix']}"
        marker = self._complete(s3, props)
        if marker is not None:
            return {**props, "uri": uri, "fileCount": len(marker["files"]), "uploaded": False}
        source = Path(props["sourceDir"])
        if not source.is_dir():
            raise ArtifactUploadError(f"model files for {props['digest']} are not at {source} (the local model cache)")
        actual = tree_digest(source)
        if actual != props["digest"]:
            raise ArtifactUploadError(
                f"{source} hashes to {actual}, not {props['digest']}: the model cache changed since the plan; "
                "delete that folder and run again"
            )
        files = sorted(p for p in source.rglob("*") if p.is_file())
        listing = {}
        for path in files:
            relative = path.relative_to(source).as_posix()
            checksum = hashlib.sha256(path.read_bytes()).hexdigest()
            s3.upload_file(str(path), props["bucket"], props["prefix"] + relative, ExtraArgs={"Metadata": {"kiln-sha256": checksum}})
            listing[relative] = checksum
        # Written last: the runtime and later runs trust a prefix only once this exists.
        s3.put_object(
            Bucket=props["bucket"],
            Key=props["prefix"] + UPLOAD_MARKER,
            Body=json.dumps({"digest": props["digest"], "files": listing}, sort_keys=True).encode(),
            ContentType="application/json",
        )
        return {**props, "uri": uri, "fileCount": len(files), "uploaded": True}


class ModelArtifact(pulumi.dynamic.Resource, module="kiln", name="ModelArtifact"):
    """A model's files at s3://<bucket>/models/<digest>/, uploaded once."""

    uri: pulumi.Output[str]
    fileCount: pulumi.Output[int]
    uploaded: pulumi.Output[bool]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ModelArtifactProvider(), name, {**props, **dict.fromkeys(OUTPUT_KEYS)}, opts)

"""The image build context: Dockerfile, requirements and the Kiln runtime, rendered with jinja2.

The context is a function of the Environment alone (never of the model's weights), written
deterministically (sorted zip entries, fixed timestamps and modes), so the same environment
renders byte-identical archives on any machine and the uploaded context never shows a
spurious diff.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from infra.plan.catalog import health_check_grace_seconds
from models import artifacts
from models import environment as environment_module
from models.environment import TEMPLATES_DIR, Environment
from runtime import RUNTIME_VERSION
from runtime.contract import READINESS_PATH, RUNTIME_PORT

# uv only provides a standalone CPython on CUDA bases; pinned so the recipe is reproducible
# (and pinned to the same version in pyproject's dev extras, whose uv the image test runs).
UV_IMAGE = "ghcr.io/astral-sh/uv:0.5.11"
# A fixed non-root uid, so file ownership in volumes is the same on every instance.
RUNTIME_UID = 10001
# zip's epoch: entries carry no build-machine timestamp.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


# Where build contexts live in the artifact store; the build role may read only these.
CONTEXT_PREFIX = "build-contexts/"


class BuildContextError(Exception):
    """The build context cannot be rendered; says what is missing and where."""


@dataclass(frozen=True)
class BuildContext:
    environment: Environment
    directory: Path
    archive: Path
    archive_sha256: str

    @property
    def s3_key(self) -> str:
        """Where the context archive lives in the artifact store (named by the image tag)."""
        return f"{CONTEXT_PREFIX}{self.environment.image_tag}.zip"


def render_buildspec() -> str:
    """The CodeBuild buildspec: log in to ECR, build and push unless the tag exists."""
    return _TEMPLATES.get_template("buildspec.yml.j2").render()


def render_files(environment: Environment, runtime_dir: Path | None = None) -> dict[str, bytes]:
    """Relative path → content of every file in the context."""
    # Looked up at call time so tests (and the lead, when merging) can point it elsewhere.
    runtime_dir = runtime_dir or environment_module.RUNTIME_PACKAGE_DIR
    if not (runtime_dir / "__main__.py").is_file():
        raise BuildContextError(
            f"the Kiln runtime package is missing: {runtime_dir}/__main__.py (the image's entrypoint is "
            "`python -m runtime`)"
        )
    dockerfile = _TEMPLATES.get_template("Dockerfile.j2").render(
        image_tag=environment.image_tag,
        environment_hash=environment.hash,
        base_image=environment.base_image,
        python=environment.python_version,
        gpu=environment.gpu,
        system_cuda=environment.system_cuda,
        uv_image=UV_IMAGE,
        uid=RUNTIME_UID,
        port=RUNTIME_PORT,
        readiness_path=READINESS_PATH,
        start_period=health_check_grace_seconds(environment.gpu),
        runtime_version=RUNTIME_VERSION,
    )
    files: dict[str, bytes] = {
        "Dockerfile": dockerfile.encode(),
        ".dockerignore": _TEMPLATES.get_template("dockerignore.j2").render().encode(),
        "model-requirements.txt": ("\n".join(environment.requirements) + "\n").encode(),
        "runtime-requirements.txt": ("\n".join(environment.runtime_requirements) + "\n").encode(),
        "kiln-environment.json": (
            json.dumps(
                {
                    "imageTag": environment.image_tag,
                    "environmentHash": environment.hash,
                    "baseImage": environment.base_image,
                    "python": environment.python_version,
                    "gpu": environment.gpu,
                    "requirements": list(environment.requirements),
                    "runtimeRequirements": list(environment.runtime_requirements),
                    "runtimeVersion": RUNTIME_VERSION,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        ).encode(),
    }
    for path in sorted(runtime_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files[f"runtime/{path.relative_to(runtime_dir).as_posix()}"] = path.read_bytes()
    return files


def write_archive(files: dict[str, bytes], archive: Path) -> str:
    """A deterministic zip (CodeBuild's S3 source format); returns its sha256."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, files[name])
    partial.replace(archive)
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def render_build_context(
    environment: Environment, destination: Path | None = None, runtime_dir: Path | None = None
) -> BuildContext:
    """Write the context as a folder (to read and `docker build` by hand) and as a zip (to upload)."""
    root = destination or artifacts.CACHE_DIR / "contexts"
    directory = root / environment.image_tag
    files = render_files(environment, runtime_dir)
    shutil.rmtree(directory, ignore_errors=True)
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    archive = root / f"{environment.image_tag}.zip"
    return BuildContext(environment, directory, archive, write_archive(files, archive))

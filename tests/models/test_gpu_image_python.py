"""The GPU image's Python, installed by the rendered Dockerfile's own steps and run as the runtime user.

A CUDA base has no Python, so the Dockerfile installs one with uv and builds the virtualenv
on it; the runtime then runs as uid 10001. If the virtualenv's `python` links into a
directory that user cannot enter, every container exits 126 at its entrypoint. There is no
Docker here, so the test runs the same steps in a scratch root: the RUN and ENV lines are
read from the rendered Dockerfile (not copied), every absolute path in them is moved under
the scratch root, HOME is a 0700 folder as root's is, PATH holds only uv (as on the CUDA
base), and the same uv version as the image's runs them. Then the virtualenv's python is
started as uid 10001.

python-build-standalone downloads come from GitHub, which this machine cannot reach, so the
download is stood in for: where uv itself says it would install a Python it cannot find
(`uv python dir` under the step's own environment), the test places a copy of an interpreter
of the same version laid out as uv's managed installs are. Which directory that is, and
whether the step looks there at all, stays uv's decision.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from models.build_context import RUNTIME_UID, UV_IMAGE, render_files
from models.environment import SUPPORTED_PYTHON, environment_for
from tests.manifests import SKLEARN_MANIFEST

# Base-image package management in the same RUN line: not part of installing Python.
SKIPPED_PROGRAMS = frozenset({"apt-get", "rm"})
# This machine's network settings (CA bundle, proxies) for uv's seed-package download.
NETWORK_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
STEP_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Interpreter:
    executable: Path
    version: str
    stdlib: Path

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def _as_runtime_user() -> None:
    os.setgroups([])
    os.setgid(RUNTIME_UID)
    os.setuid(RUNTIME_UID)


def _runtime_user_can_run(executable: Path) -> Interpreter | None:
    """The interpreter's version and stdlib if uid 10001 can start it (pyenv's, under /root, it cannot)."""
    query = "import sys, sysconfig; print(sys.version.split()[0]); print(sysconfig.get_paths()['stdlib'])"
    result = subprocess.run(
        [str(executable), "-c", query], capture_output=True, text=True, preexec_fn=_as_runtime_user, timeout=60
    )
    if result.returncode != 0:
        return None
    version, stdlib = result.stdout.split()
    return Interpreter(executable, version, Path(stdlib))


def _stand_in_interpreter() -> Interpreter:
    for folder in ("/usr/bin", "/usr/local/bin"):
        for minor in SUPPORTED_PYTHON:
            executable = Path(folder) / f"python{minor}"
            if executable.is_file() and (found := _runtime_user_can_run(executable)):
                return found
    pytest.skip("no Python that uid 10001 can run in /usr/bin or /usr/local/bin to stand in for the download")


def _uv() -> Path:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.fail(f"uv is not installed beside {sys.executable}: pip install -e '.[dev]' (it pins the image's uv)")
    return Path(uv)


def _instructions(dockerfile: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    for line in dockerfile.replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            yield instruction, arguments.strip()


def _in_root(value: str, root: Path) -> str:
    """An absolute path moved under the scratch root; anything else as it is."""
    return f"{root}{value}" if value.startswith("/") else value


def _assignment(token: str) -> tuple[str, str] | None:
    """`NAME=value` (an ENV pair or a step's inline variable) as (NAME, value)."""
    match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", token)
    return (match.group(1), match.group(2)) if match else None


def _python_request(argv: list[str]) -> str | None:
    """The Python a uv step may download: `uv python install X` or `uv venv --python X`."""
    if argv[1:3] == ["python", "install"]:
        return argv[3]
    if argv[1] == "venv" and "--python" in argv:
        return argv[argv.index("--python") + 1]
    return None


def _stage_download(uv: Path, request: str, env: dict[str, str], root: Path, source: Interpreter) -> None:
    """Stand in for the download uv would make: only if uv finds no such Python, and where uv says.
    (From the scratch root, as the build's steps run from `/`: uv also looks for a `.venv` in
    the working directory.)"""
    offline = {**env, "UV_PYTHON_DOWNLOADS": "never"}
    found = subprocess.run([str(uv), "python", "find", request], env=offline, cwd=root, capture_output=True, timeout=60)
    if found.returncode == 0:
        return
    install_dir = Path(subprocess.run([str(uv), "python", "dir"], env=env, cwd=root, capture_output=True, text=True,
                                      check=True, timeout=60).stdout.strip())
    managed = install_dir / f"cpython-{source.version}-linux-{platform.machine()}-gnu"
    (managed / "bin").mkdir(parents=True)
    shutil.copy2(source.executable, managed / "bin" / f"python{source.minor}")
    for alias in ("python3", "python"):
        (managed / "bin" / alias).symlink_to(f"python{source.minor}")
    (managed / "lib").mkdir()
    (managed / "lib" / f"python{source.minor}").symlink_to(source.stdlib)


def _install_python_as_the_dockerfile_does(dockerfile: str, root: Path, source: Interpreter) -> Path:
    """Run the Dockerfile's Python install steps under `root`; returns the virtualenv (ENV VIRTUAL_ENV)."""
    uv = _uv()
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    shutil.copy2(uv, root / "usr" / "local" / "bin" / "uv")
    home = root / "root"
    home.mkdir(mode=0o700)
    env = {name: os.environ[name] for name in NETWORK_VARIABLES if name in os.environ}
    env |= {"HOME": str(home), "PATH": str(root / "usr" / "local" / "bin")}
    virtual_env = None
    install_steps = [arguments for instruction, arguments in _instructions(dockerfile)
                     if instruction == "RUN" and "uv venv" in arguments]
    assert len(install_steps) == 1, f"expected one RUN with `uv venv` in the rendered Dockerfile:\n{dockerfile}"
    for instruction, arguments in _instructions(dockerfile):
        if instruction == "ENV":
            assignments = dict(filter(None, map(_assignment, shlex.split(arguments))))
            virtual_env = assignments.get("VIRTUAL_ENV", virtual_env)
            env |= {name: _in_root(value, root) for name, value in assignments.items() if name.startswith("UV_")}
        if instruction != "RUN" or arguments != install_steps[0]:
            continue
        for step in arguments.split("&&"):
            tokens = shlex.split(step)
            inline = {name: _in_root(value, root) for name, value in filter(None, map(_assignment, tokens))}
            argv = [_in_root(token, root) for token in tokens if _assignment(token) is None]
            if argv[0] in SKIPPED_PROGRAMS:
                continue
            assert argv[0] in ("uv", "chmod"), f"the emulation does not know this install step: {step.strip()}"
            step_env = env | inline
            if argv[0] == "uv":
                argv[0] = str(root / "usr" / "local" / "bin" / "uv")
                if (request := _python_request(argv)) is not None:
                    _stage_download(Path(argv[0]), request, step_env, root, source)
            else:
                argv[0] = shutil.which(argv[0]) or argv[0]  # the base image's coreutils: this machine's
            done = subprocess.run(argv, env=step_env, cwd=root, capture_output=True, text=True,
                                  timeout=STEP_TIMEOUT_SECONDS)
            assert done.returncode == 0, f"`{step.strip()}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    assert virtual_env is not None, "the Dockerfile sets no ENV VIRTUAL_ENV"
    return Path(_in_root(virtual_env, root))


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A stand-in for `/`: under /tmp (pytest's own tmp folders are 0700, so uid 10001 could
    not even reach them) and traversable by everyone, as `/` is."""
    root = Path(tempfile.mkdtemp(prefix="kiln-image-root-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a process as uid 10001 needs root")
def test_the_runtime_user_can_run_the_gpu_image_virtualenv_python(scratch_root: Path) -> None:
    source = _stand_in_interpreter()
    # tensorflow without [and-cuda] loads CUDA from the system: the CUDA base, Python from uv.
    manifest = dataclasses.replace(
        SKLEARN_MANIFEST, python_version=source.version, requirements=("mlflow==3.17.2", "tensorflow==2.18.0")
    )
    dockerfile = render_files(environment_for(manifest, gpu=True))["Dockerfile"].decode()

    venv = _install_python_as_the_dockerfile_does(dockerfile, scratch_root, source)

    python = venv / "bin" / "python"
    try:
        ran = subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"],
                             capture_output=True, text=True, preexec_fn=_as_runtime_user, timeout=60)
    except PermissionError as error:
        pytest.fail(f"uid {RUNTIME_UID} cannot execute {python} → {os.path.realpath(python)} ({error}); "
                    "the image's entrypoint would exit 126")
    assert (ran.returncode, ran.stderr) == (0, ""), f"uid {RUNTIME_UID} cannot run {python}: {ran.stderr}"
    assert ran.stdout.strip() == str(venv)


def test_the_image_test_runs_the_uv_version_the_image_installs() -> None:
    version = subprocess.run([str(_uv()), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]

    assert version == UV_IMAGE.rpartition(":")[2]

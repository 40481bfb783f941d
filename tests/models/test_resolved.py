"""Reading back what pip installed in a virtualenv: the reload check's, which the GPU checks trust over the requirement text."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from packaging.version import Version

from models.resolved import read_resolved
from tests.bake_support import venv_with_distributions


def test_a_cpu_torch_behind_an_index_url_reads_back_as_torch_without_cuda(tmp_path: Path) -> None:
    resolved = read_resolved(venv_with_distributions(tmp_path, ("torch", "2.9.0+cpu"), ("numpy", "2.1.3")))

    assert resolved.torch == Version("2.9.0+cpu")
    assert resolved.cuda is None
    assert resolved.platform == sysconfig.get_platform()


@pytest.mark.parametrize(
    ("installed", "cuda", "source"),
    [
        ((("torch", "2.9.0"), ("nvidia-cuda-runtime-cu12", "12.8.90")), "12.8", "nvidia-cuda-runtime-cu12==12.8.90"),
        ((("torch", "2.14.1"), ("nvidia-cuda-runtime", "13.0.96")), "13.0", "nvidia-cuda-runtime==13.0.96"),
        ((("torch", "2.0.1+cu118"),), "11.8", "torch==2.0.1+cu118"),
        ((("nvidia_cuda_runtime_cu12", "12.4.127"),), "12.4", "nvidia-cuda-runtime-cu12==12.4.127"),
    ],
)
def test_the_cuda_of_a_resolved_environment_is_its_cuda_runtime_wheel(
    tmp_path: Path, installed: tuple[tuple[str, str], ...], cuda: str, source: str
) -> None:
    resolved = read_resolved(venv_with_distributions(tmp_path, *installed))

    assert resolved.cuda is not None
    assert (resolved.cuda.version, resolved.cuda.source) == (Version(cuda), source)


def test_a_folder_that_is_no_virtualenv_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no lib/python\\*/site-packages in the virtualenv {tmp_path}"):
        read_resolved(tmp_path)

"""The device a worker's model can run on, and the GPU memory it sees: asked of torch.

Why: MLflow picks the device itself (CUDA when torch says it is available, else the CPU)
and says nothing when it falls back, so a GPU instance whose driver or container lost the
GPU still turned /ping 200 and answered, slowly, on the CPU it was not paid for. Each
worker reports what it found, before loading the model (to refuse at once when a GPU is
required) and after warm-up (GPU memory then in use); the HTTP process shows it in its
logs, /version and /metrics.

Torch is asked only when the image has it: the runtime does not require it, and without a
GPU framework nothing in the worker can use a GPU, so there is none to report.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from typing import Any

CUDA = "cuda"
CPU = "cpu"


@dataclass(frozen=True)
class Gpu:
    """One GPU as the worker sees it (indexes count only what CUDA_VISIBLE_DEVICES shows)."""

    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int


@dataclass(frozen=True)
class DeviceReport:
    device: str
    framework: str | None
    gpus: tuple[Gpu, ...]
    # Why the device is the CPU (empty on a GPU): what a person fixes.
    reason: str
    cuda_visible_devices: str | None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gpus": [asdict(gpu) for gpu in self.gpus]}

    def describe(self) -> str:
        """One log line: the device, each GPU with its memory, or why there is none."""
        visible = "" if self.cuda_visible_devices is None else f", CUDA_VISIBLE_DEVICES={self.cuda_visible_devices!r}"
        if self.device != CUDA:
            return f"device cpu ({self.reason}{visible})"
        shown = "; ".join(
            f"cuda:{gpu.index} {gpu.name}, {gpu.memory_used_bytes / 2**30:.2f} of {gpu.memory_total_bytes / 2**30:.1f} GiB in use"
            for gpu in self.gpus
        )
        return f"device cuda ({shown}; {self.framework}{visible})"


def detect() -> DeviceReport:
    """What this process can run a model on, as torch sees it (imported only if installed)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if importlib.util.find_spec("torch") is None:
        return DeviceReport(CPU, None, (), "no GPU framework in this environment (torch is not installed)", visible)
    import torch

    framework = f"torch {torch.__version__}"
    if torch.version.cuda is None:
        return DeviceReport(CPU, framework, (), f"{framework} is a CPU-only build", visible)
    if not torch.cuda.is_available():
        return DeviceReport(CPU, framework, (), "torch.cuda.is_available() is False: no GPU visible to this process "
                            "(driver missing, container started without --gpus, or CUDA_VISIBLE_DEVICES hides them)",
                            visible)
    gpus = []
    try:
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            gpus.append(Gpu(index, torch.cuda.get_device_name(index), total, total - free))
    except RuntimeError as error:  # e.g. a driver older than the CUDA build torch carries
        return DeviceReport(CPU, framework, (), f"CUDA cannot be initialised: {error}", visible)
    return DeviceReport(CUDA, framework, tuple(gpus), "", visible)

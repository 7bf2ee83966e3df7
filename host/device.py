"""The machine a command runs on: which device (a user's flag -> `torch.device`), what it is called, and the
memory layout its tensors take.  Training and the runtime both need these, and neither may import the other."""
from __future__ import annotations

import os
import platform
from typing import Any

import torch
from torch import nn


def cuda_available() -> bool:
    """Whether CUDA is here: the defaults of --budget and --gpus-per-trial follow it."""
    return torch.cuda.is_available()


def default_gpus() -> float:
    """GPUs a training reserves unless told otherwise: one where CUDA is present, else none."""
    return 1.0 if cuda_available() else 0.0


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """`auto` (or None) picks CUDA when present, else CPU; an explicit choice is checked.

    Asking for CUDA on a machine without it is a user error, so it raises a
    ValueError with the fix rather than failing deep inside the first kernel.
    """
    if isinstance(spec, torch.device):
        return spec
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


# The memory layout latency is measured in: the one a deployment would pick, the faster one.  channels_last
# runs the four GhostNet presets' batch-1 inference 1.15-1.22x faster than NCHW on the CPU (outputs equal to
# 1e-8) and is what cuDNN's fast convolution kernels want.  Tables and run.json record it ("layout").
LAYOUT = "channels_last"
LAYOUTS = ("channels_last", "nchw")


def in_layout(module: nn.Module, x: torch.Tensor, layout: str = LAYOUT) -> tuple[nn.Module, torch.Tensor]:
    """`module` and a 4-D input `x` in `layout` (other inputs, e.g. a classifier's vectors, as they are)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "channels_last" and x.dim() == 4:
        return module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return module, x


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: torch.device | str, threads: int | None) -> dict[str, Any]:
    """What a latency number is a property of: device type and name, threads, torch version.

    `label` is the short human form the report prints ("cpu AMD EPYC, 1 thread").
    """
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        label = f"cuda {name}"
    else:
        name = cpu_model()
        threads = threads or torch.get_num_threads()
        label = f"cpu {name}, {threads} thread{'s' if threads != 1 else ''}"
    return {"type": device.type, "name": name, "threads": threads if device.type == "cpu" else None,
            "cpu_count": os.cpu_count(), "label": label}

"""One place that turns a user's device flag into a `torch.device`."""
from __future__ import annotations

import torch


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

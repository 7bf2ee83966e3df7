"""A trained network's int8 accuracy (`search.confirm --int8`): the model a phone would run, scored on the test batch.

The trained network is exported (checked against PyTorch), quantized by
`runtime.quantize.int8_session` — calibrated on `ACCURACY_CALIBRATION`
un-augmented *training* images (the ones BatchNorm was recalibrated on),
never on the test images it is scored on — and the int8 model classifies
the evaluation images one at a time in ONNX Runtime, as deployed; its
latency is the one `int8_session` timed to choose it (no second export).  Its
top-1 agreement with the fp32 network on those images says what
quantization changed.  Lives here, not in `trainer` or the runtime: it
needs both (DESIGN.md's layering).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, ContextManager, Iterable

import numpy as np
import torch
from torch import nn

from runtime.onnx_export import export_checked
from runtime.quantize import ACCURACY_CALIBRATION, int8_session, top1


def _images(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], limit: int | None = None):
    xs, ys, n = [], [], 0
    for x, y in batches:
        xs.append(x.detach().float().cpu().contiguous().numpy())
        ys.append(y.cpu().numpy())
        n += len(y)
        if limit is not None and n >= limit:
            break
    images, labels = np.concatenate(xs), np.concatenate(ys)
    return (images[:limit], labels[:limit]) if limit is not None else (images, labels)


def int8_metrics(model: nn.Module, calibration, evaluation, *, threads: int = 1, tta: bool = False,
                 name: str = "network", alone: Callable[[], ContextManager] | None = None) -> dict[str, Any]:
    """{"test_acc_int8", "int8_agreement", "int8_plan", "latency_ms_int8"} of the trained `model` (module
    docstring); the latency is the chosen plan's median in `int8_session`'s timing, held alone on the node;
    `tta` scores each image with its mirror, as the fp32 test accuracy of the same training was; `alone()`
    (the node slot's exclusive hold) is held while the plans are timed."""
    net = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()
    calib, _ = _images(calibration, ACCURACY_CALIBRATION)
    images, labels = _images(evaluation)
    data, fp32, _ = export_checked(net, tuple(images.shape[1:]), name=name, threads=threads)
    session, plan, timings = int8_session(data, calib, threads=threads, name=name, alone=alone)
    int8 = top1(session, images, tta)
    return {"test_acc_int8": float(np.mean(int8 == labels)),
            "int8_agreement": float(np.mean(int8 == top1(fp32, images, tta))),
            "int8_plan": plan, "latency_ms_int8": timings[plan]}


__all__ = ["int8_metrics"]

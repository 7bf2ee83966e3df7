"""Cost of a model: MACs at the ATen level, parameters, and a thop cross-check.

MACs come from `torch.utils.flop_counter.FlopCounterMode`, which sees every
ATen convolution and matrix product — including the attention matmuls inside
MCA that module hooks (thop) never see.  FLOPs / 2 = MACs, the convention of
the GhostNet paper.  Element-wise work (BN, activations, SE gating, softmax)
is not counted, as in the paper.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

InputSize = int | Sequence[int]
DEFAULT_INPUT = 32  # CIFAR: the size of a model that does not say what it was built for


def _input_shape(input_size: InputSize) -> tuple[int, ...]:
    """(1, 3, s, s) from an int s; a full shape is passed through."""
    if isinstance(input_size, int):
        return (1, 3, input_size, input_size)
    shape = tuple(int(v) for v in input_size)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_size must be an int or (N, C, H, W); got {input_size!r}")
    return shape


def _example(model: nn.Module, input_size: InputSize | None) -> torch.Tensor:
    """A zero batch of one, shaped by `input_size` or else by the size the model was built for.

    Every backbone model of `space` keeps its build size as `input_size`
    (MCA kernels are clipped for it, ResNet-50 is built for 224^2), so
    `count_macs(model)` counts what the model is for; other modules count
    at 32^2 as before.
    """
    if input_size is None:
        input_size = getattr(model, "input_size", DEFAULT_INPUT)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(_input_shape(input_size), device=device, dtype=dtype)


def _count(model: nn.Module, input_size: InputSize | None) -> FlopCounterMode:
    """One eval-mode, no-grad forward under the flop counter (training state restored)."""
    was_training = model.training
    model.eval()
    try:
        x = _example(model, input_size)
        counter = FlopCounterMode(display=False, depth=None)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter


def count_macs(model: nn.Module, input_size: InputSize | None = None) -> int:
    """Multiply-accumulates of one forward pass: ATen FLOPs // 2 (attention matmuls included).

    `input_size` None: the model's own `input_size` (32 if it has none).
    """
    return _count(model, input_size).get_total_flops() // 2


def count_macs_by_module(model: nn.Module, input_size: InputSize | None = None) -> dict[str, int]:
    """MACs per submodule, keyed by its dotted name ('' = whole model, 'blocks.3', ...).

    Counts are inclusive: 'blocks.3' contains 'blocks.3.mca'.  Modules that do
    no counted work are absent.
    """
    counts = _count(model, input_size).get_flop_counts()
    root = type(model).__name__
    out: dict[str, int] = defaultdict(int)
    for name, ops in counts.items():
        if name == "Global":
            out[""] = sum(ops.values()) // 2
        elif name == root or name.startswith(root + "."):
            out[name[len(root) + 1:]] = sum(ops.values()) // 2
    return dict(out)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, as the paper counts; BN buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def thop_macs(model: nn.Module, input_size: InputSize | None = None) -> int:
    """MACs of the Conv2d and Linear modules as thop counts them (bias excluded).

    A cross-check of `count_macs` on the layers both tools see: thop hooks
    modules, so it misses functional ops such as MCA's attention matmuls.
    Its BN/pooling/activation counts are switched off to match the paper's
    convention.
    """
    import thop  # optional heavy import (and a distutils warning) only when asked for

    def zero(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        module.total_ops += torch.zeros(1, dtype=torch.float64)

    def linear(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        module.total_ops += torch.tensor([output.numel() * module.in_features], dtype=torch.float64)

    skip = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Dropout, nn.AdaptiveAvgPool2d, nn.Identity,
            nn.Sequential, nn.Hardsigmoid, nn.Softmax)
    custom = {t: zero for t in skip}
    custom[nn.Linear] = linear
    was_training = model.training
    try:
        macs, _ = thop.profile(model, inputs=(_example(model, input_size),), custom_ops=custom, verbose=False)
    finally:
        model.train(was_training)
    return int(round(macs))

"""Proxy training: a short, fixed-budget training that ranks architectures.

The search does not need converged accuracy, only a fair comparison, so every
architecture gets the same budget on the same stratified split and seed, and
is scored on the validation split (never the test batch).  An architecture
trained with several seeds (baselines, repeats) sees one split per seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from space import ArchConfig, build_model

from .budget import Budget
from .data import Cifar10, default_val_size, seeded_subset, split_train_val
from .loader import DeviceLoader
from .loop import EVAL_BATCH, EpochStats, evaluate_accuracy, fit, make_training, recalibrate_bn, zero_init_residuals

__all__ = ["EpochStats", "ProxyResult", "proxy_arch", "proxy_split", "train_proxy"]


@dataclass(frozen=True)
class ProxyResult:
    status: str  # "ok" or "diverged"
    val_acc: float | None
    train_losses: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    error: str = ""


def proxy_split(data: Cifar10, budget: Budget, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation indices for a budget: stratified split of `budget.val_size` images
    (default: `default_val_size` of the data), then a seeded subset of `budget.train_size` for training.

    The seed picks both, so each seed of a repeated architecture sees its own
    split, and every architecture trained with the same seed sees the same one.
    """
    labels = data.train_labels
    if budget.val_fraction is not None:  # a run from before val_size: its old split
        train_idx, val_idx = split_train_val(labels, budget.val_fraction, seed)
    else:
        size = budget.val_size if budget.val_size is not None else default_val_size(len(labels))
        train_idx, val_idx = split_train_val(labels, None, seed, val_size=size)
    subset = seeded_subset(len(train_idx), budget.train_size, seed)
    return (train_idx if subset is None else train_idx[subset]), val_idx


def proxy_arch(arch: ArchConfig, budget: Budget) -> ArchConfig:
    """The network a budget trains for `arch`: the architecture itself, or its copy at the proxy width.

    Only the accuracy axis uses it; costs are always counted on `arch`.
    """
    return arch if budget.proxy_width == 1.0 else replace(arch, width=arch.width * budget.proxy_width)


def train_proxy(arch: ArchConfig | nn.Module, data: Cifar10, budget: Budget, device: torch.device | str = "cpu",
                seed: int = 0, on_epoch: Callable[[EpochStats], None] | None = None,
                eval_every: int = 1) -> ProxyResult:
    """Train `arch` for `budget.epochs` and report validation accuracy after each epoch.

    Before each validation the BatchNorm statistics are recomputed on
    `budget.bn_images` training images (see `recalibrate_bn`).  A loss that
    turns NaN/inf ends the training with status "diverged" and the reason.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    model = arch if isinstance(arch, nn.Module) else build_model(proxy_arch(arch, budget))
    if budget.zero_init:
        zero_init_residuals(model)
    model = model.to(device, memory_format=torch.channels_last if budget.channels_last else torch.preserve_format)
    train_idx, val_idx = proxy_split(data, budget, seed)

    def loader(idx: torch.Tensor, train: bool, batch_size: int = EVAL_BATCH) -> DeviceLoader:
        return DeviceLoader(data.train_images[idx], data.train_labels[idx], batch_size, device, train=train,
                            seed=seed, channels_last=budget.channels_last,
                            epoch_images=budget.epoch_images if train else None)

    train, val, bn = loader(train_idx, True, budget.batch_size), loader(val_idx, False), \
        loader(train_idx[: budget.bn_images], False)

    def evaluate(m: nn.Module) -> float:
        if budget.bn_images:
            recalibrate_bn(m, bn)
        return evaluate_accuracy(m, val, tta=budget.tta)

    result = fit(make_training(model, train, budget), evaluate, on_epoch=on_epoch, eval_every=eval_every)
    ok = result.status == "ok"
    return ProxyResult(result.status, result.accuracies[-1] if ok else None, result.train_losses,
                       result.accuracies, result.epochs, result.seconds, result.images_per_s, result.error)

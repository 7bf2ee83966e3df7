"""Proxy training: a short, fixed-budget training that ranks architectures.

The search does not need converged accuracy, only a fair comparison, so every
architecture gets the same budget on the same stratified split and seed, and
is scored on the validation split (never the test batch).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from space import ArchConfig, build_model

from .budget import Budget
from .data import Cifar10, split_train_val
from .loader import DeviceLoader
from .loop import Diverged, evaluate_accuracy, make_optimizer, make_scheduler, recalibrate_bn, train_epoch

EVAL_BATCH = 500


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    val_acc: float
    images_per_s: float
    seconds: float


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
    """Training and validation indices for a budget: stratified split, then a seeded subset."""
    train_idx, val_idx = split_train_val(data.train_labels, budget.val_fraction, seed)
    if budget.train_size is not None and budget.train_size < len(train_idx):
        g = torch.Generator().manual_seed(seed)
        train_idx = train_idx[torch.randperm(len(train_idx), generator=g)[: budget.train_size]]
    return train_idx, val_idx


def train_proxy(arch: ArchConfig | nn.Module, data: Cifar10, budget: Budget, device: torch.device | str = "cpu",
                seed: int = 0, on_epoch: Callable[[EpochStats], None] | None = None) -> ProxyResult:
    """Train `arch` for `budget.epochs` and report validation accuracy after each epoch.

    A loss that turns NaN/inf ends the training with status "diverged" and the
    reason, instead of raising: a search must go on past a bad architecture.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    model = arch if isinstance(arch, nn.Module) else build_model(arch)
    model = model.to(device, memory_format=torch.channels_last if budget.channels_last else torch.preserve_format)
    train_idx, val_idx = proxy_split(data, budget, seed)
    train = DeviceLoader(data.train_images[train_idx], data.train_labels[train_idx], budget.batch_size, device,
                         train=True, seed=seed, channels_last=budget.channels_last)
    val = DeviceLoader(data.train_images[val_idx], data.train_labels[val_idx], EVAL_BATCH, device,
                       train=False, channels_last=budget.channels_last)
    bn_idx = train_idx[: budget.bn_images]
    bn = DeviceLoader(data.train_images[bn_idx], data.train_labels[bn_idx], EVAL_BATCH, device,
                      train=False, channels_last=budget.channels_last)
    optimizer = make_optimizer(model, budget)
    scheduler = make_scheduler(optimizer, budget, len(train))
    criterion = nn.CrossEntropyLoss(label_smoothing=budget.label_smoothing)
    losses: list[float] = []
    accs: list[float] = []
    images = 0
    train_seconds = 0.0
    start = time.perf_counter()
    for epoch in range(budget.epochs):
        try:
            result = train_epoch(model, train, optimizer, scheduler, criterion, epoch)
        except Diverged as exc:
            return ProxyResult("diverged", None, losses, accs, epoch, time.perf_counter() - start,
                               images / train_seconds if train_seconds else 0.0, str(exc))
        images += result.images
        train_seconds += result.seconds
        losses.append(result.train_loss)
        if budget.bn_images:
            recalibrate_bn(model, bn)
        accs.append(evaluate_accuracy(model, val))
        if on_epoch is not None:
            on_epoch(EpochStats(epoch + 1, result.train_loss, accs[-1], result.images / result.seconds,
                                time.perf_counter() - start))
    return ProxyResult("ok", accs[-1], losses, accs, budget.epochs, time.perf_counter() - start,
                       images / train_seconds if train_seconds else 0.0)

"""Proxy training: a short, fixed-budget training that ranks architectures.

The search does not need converged accuracy, only a fair comparison, so every
architecture gets the same budget on the same stratified split and seed, and
is scored on the validation split (never the test batch).  An architecture
trained with several seeds (baselines, repeats) sees one split per seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn

from space import ArchConfig, build_model

from .budget import Budget
from .data import Cifar10, default_val_size, seeded_subset, split_train_val
from .loader import DeviceLoader
from .loop import EVAL_BATCH, EpochStats, evaluate_accuracy, fit, make_training, recalibrate_bn, zero_init_residuals
from .state import restore_training, training_state

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
    extra: dict[str, Any] = field(default_factory=dict)  # what `after_training` measured on the trained network


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
                eval_every: int = 1, resume: dict[str, Any] | None = None,
                on_checkpoint: Callable[[EpochStats, dict[str, Any]], None] | None = None,
                evaluate_on: str = "val",
                after_training: Callable[[nn.Module, DeviceLoader, DeviceLoader], dict[str, Any]] | None = None
                ) -> ProxyResult:
    """Train `arch` for `budget.epochs` and report validation accuracy after each epoch.

    Before each validation the BatchNorm statistics are recomputed on
    `budget.bn_images` training images (see `recalibrate_bn`).  A loss that
    turns NaN/inf ends the training with status "diverged" and the reason.
    `on_checkpoint` gets, after each epoch, the state that `resume` takes
    (a search training restarted on another node).  `evaluate_on="test"`
    scores on the CIFAR-10 test batch (`search.confirm`; the validation
    split is never seen).  `after_training(model, calibration, evaluation)`
    measures the trained network further (`search.confirm --int8`) on the
    un-augmented training images BN was recalibrated on and the evaluation
    loader; its metrics land in `ProxyResult.extra`.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    model = arch if isinstance(arch, nn.Module) else build_model(proxy_arch(arch, budget))
    if budget.zero_init:
        zero_init_residuals(model)
    model = model.to(device, memory_format=torch.channels_last if budget.channels_last else torch.preserve_format)

    train, val, bn = training_loaders(data, budget, seed, device, evaluate_on)

    def evaluate(m: nn.Module) -> float:
        if budget.bn_images:
            recalibrate_bn(m, bn)
        return evaluate_accuracy(m, val, tta=budget.tta)

    training = make_training(model, train, budget)
    done = Done.of(resume, training)

    def after_epoch(stats: EpochStats) -> None:
        done.add(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if on_checkpoint is not None:
            on_checkpoint(stats, done.state(training, stats.epoch))

    result = fit(training, evaluate, start_epoch=done.epochs, on_epoch=after_epoch, eval_every=eval_every)
    ok = result.status == "ok"
    extra = after_training(model, bn, val) if ok and after_training is not None else {}
    return ProxyResult(result.status, done.val_accs[-1] if ok and done.val_accs else None, done.train_losses,
                       done.val_accs, len(done.val_accs), done.seconds + result.seconds, result.images_per_s,
                       result.error, extra)


def training_loaders(data: Cifar10, budget: Budget, seed: int, device: torch.device, evaluate_on: str,
                     bn_images: int | None = None, with_training: bool = True, split_seed: int | None = None):
    """(training, evaluation, BN-recalibration) loaders: evaluation on the seed's validation split, or the test batch;
    BN statistics from the first `bn_images` (default the budget's) of the seed's training images.  Scoring needs
    no training loader (`with_training=False`: None), which would copy the whole training split.  `split_seed`
    (default `seed`) picks the split alone, so trainings of different seeds can share one split."""
    train_idx, val_idx = proxy_split(data, budget, seed if split_seed is None else split_seed)

    def loader(idx: torch.Tensor, train: bool, batch_size: int = EVAL_BATCH) -> DeviceLoader:
        return DeviceLoader(data.train_images[idx], data.train_labels[idx], batch_size, device, train=train,
                            seed=seed, channels_last=budget.channels_last,
                            epoch_images=budget.epoch_images if train else None)

    val = (loader(val_idx, False) if evaluate_on == "val" else
           DeviceLoader(data.test_images, data.test_labels, EVAL_BATCH, device, train=False,
                        channels_last=budget.channels_last))
    bn = budget.bn_images if bn_images is None else bn_images
    train = loader(train_idx, True, budget.batch_size) if with_training else None
    return train, val, loader(train_idx[:bn], False)


@dataclass
class Done:
    """The epochs a proxy training has finished, across restarts: what its result and checkpoints carry."""

    epochs: int = 0
    train_losses: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training seconds of earlier attempts
    _started: float = 0.0  # this attempt's `seconds` at its last epoch

    @classmethod
    def of(cls, resume: dict[str, Any] | None, training) -> "Done":
        """Nothing, or the finished epochs of `resume` after loading its state into `training`."""
        if resume is None:
            return cls()
        epochs = restore_training(training, resume["training"])
        return cls(epochs, list(resume["train_losses"]), list(resume["val_accs"]), float(resume["seconds"]))

    def add(self, stats: EpochStats) -> None:
        self.epochs = stats.epoch
        self.train_losses.append(stats.train_loss)
        self.val_accs.append(stats.accuracy)
        self._started = stats.seconds

    def state(self, training, epoch: int) -> dict[str, Any]:
        return {"training": training_state(training, epoch), "train_losses": list(self.train_losses),
                "val_accs": list(self.val_accs), "seconds": self.seconds + self._started}

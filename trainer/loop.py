"""The one training loop, shared by proxy training and full training.

SGD with Nesterov momentum, a one-cycle schedule, label smoothing, no weight
decay on BatchNorm weights and biases (decaying them only hurts), and bf16
autocast on CUDA.  `fit` runs the epochs; the callers differ only in what
they evaluate on (the validation split or the test batch) and what they do
after an epoch (report to the search, write a checkpoint).  One
implementation, so the proxy measures what full training will do.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .budget import Budget
from .loader import DeviceLoader


EVAL_BATCH = 500  # evaluation batch: large enough to be fast, small enough for any device


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def make_optimizer(model: nn.Module, budget: Budget) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": budget.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if budget.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=budget.lr)
    return torch.optim.SGD(groups, lr=budget.lr, momentum=budget.momentum, nesterov=True)


def make_scheduler(optimizer: torch.optim.Optimizer, budget: Budget, steps_per_epoch: int,
                   epochs: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """One cycle: linear rise from lr/10 to the peak over `warmup`, then linear decay to lr/100.

    Written as a LambdaLR rather than OneCycleLR because proxy budgets can be a
    handful of steps, where OneCycleLR's phases degenerate (division by zero).
    """
    total = max(1, steps_per_epoch * (epochs or budget.epochs))
    peak = max(1.0, budget.warmup * total)

    def factor(step: int) -> float:
        if step < peak:
            return 0.1 + 0.9 * step / peak
        return 1.0 - 0.99 * min(1.0, (step - peak) / max(1.0, total - peak))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU, where it is deterministic."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class EpochResult:
    train_loss: float
    images: int
    seconds: float


@torch.no_grad()
def zero_init_residuals(model: nn.Module) -> nn.Module:
    """Start every residual branch at zero, so each block begins as its shortcut (Goyal et al. 2017).

    Zeroes the BatchNorm scales ending a Ghost bottleneck's project module and
    the output projection of each MCA block: a short training then starts from
    a shallow network that the branches grow into, instead of 16 bottlenecks
    and up to 16 randomly initialised attention blocks adding their noise.
    """
    from space.ghost import GhostBottleneck
    from space.mca import MCA

    for m in model.modules():
        if isinstance(m, GhostBottleneck):
            for bn in m.ghost2.modules():
                if isinstance(bn, nn.BatchNorm2d):
                    bn.weight.zero_()
        elif isinstance(m, MCA):
            m.proj.weight.zero_()
            if m.proj.bias is not None:
                m.proj.bias.zero_()
    return model


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights and BN buffers (torch's own `AveragedModel`), or None.

    With a short one-cycle training the last weights still carry the noise of
    the last few hundred batches; their average is a smoother, seed-steadier
    estimate of what the architecture learns (airbench evaluates such a copy).
    """
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def train_epoch(model: nn.Module, loader: DeviceLoader, optimizer: torch.optim.Optimizer,
                scheduler, criterion: nn.Module, epoch: int = 0, ema: AveragedModel | None = None) -> EpochResult:
    """One pass over `loader` (updating `ema` after each step); raises Diverged as soon as the loss is not finite.

    On CPU the check is free; on CUDA it is done every 25 steps to avoid a
    host sync per step (a few wasted steps at most).
    """
    device = loader.device
    check_every = 25 if device.type == "cuda" else 1
    model.train()
    total = torch.zeros((), device=device)
    images = 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        with autocast(device):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total += loss.detach() * len(y)
        images += len(y)
        if (step + 1) % check_every == 0 and not torch.isfinite(total):
            raise Diverged(f"training loss became {total.item()} at epoch {epoch + 1}, step {step + 1}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    mean = (total / max(images, 1)).item()
    if not torch.isfinite(torch.tensor(mean)):
        raise Diverged(f"training loss became {mean} at epoch {epoch + 1}")
    return EpochResult(mean, images, seconds)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader: DeviceLoader, tta: bool = False) -> float:
    """Top-1 accuracy on an un-augmented loader; `tta` averages the logits of each image and its mirror."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=loader.device)
    count = 0
    for x, y in loader:
        with autocast(loader.device):
            logits = model(x)
            if tta:
                logits = logits + model(x.flip(-1))
            correct += (logits.argmax(1) == y).sum()
        count += len(y)
    return correct.item() / max(count, 1)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: DeviceLoader) -> None:
    """Recompute BatchNorm running statistics as an exact average over `loader`'s batches.

    After a short proxy training the running averages still remember the
    random initialisation (momentum 0.1 over a few dozen steps), which makes
    eval-mode accuracy meaningless; "precise BN" as in NAS practice fixes it
    for the price of a few forward passes.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    try:
        for x, _ in loader:
            with autocast(loader.device):
                model(x)
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


@dataclass
class Training:
    """The moving parts of one training, built once: what `fit` steps and a checkpoint saves."""

    model: nn.Module
    loader: DeviceLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    epochs: int
    ema: AveragedModel | None = None  # evaluated instead of `model` when the budget averages weights

    @property
    def evaluated(self) -> nn.Module:
        """The network whose accuracy counts: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model


def make_training(model: nn.Module, loader: DeviceLoader, budget: Budget, epochs: int | None = None) -> Training:
    """Optimiser, one-cycle schedule over `epochs` (default the budget's), the smoothed loss, the weight average."""
    epochs = epochs or budget.epochs
    optimizer = make_optimizer(model, budget)
    return Training(model, loader, optimizer, make_scheduler(optimizer, budget, len(loader), epochs),
                    nn.CrossEntropyLoss(label_smoothing=budget.label_smoothing), epochs,
                    make_ema(model, budget.ema))


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    accuracy: float  # on whatever `evaluate` measures (validation split or test batch)
    images_per_s: float
    seconds: float  # since `fit` started


@dataclass(frozen=True)
class FitResult:
    status: str  # "ok" or "diverged"
    epochs: int  # epochs completed in this call
    train_losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    images_per_s: float = 0.0  # training throughput (evaluation excluded)
    seconds: float = 0.0
    error: str = ""


def fit(training: Training, evaluate: Callable[[nn.Module], float], *, start_epoch: int = 0,
        on_epoch: Callable[[EpochStats], None] | None = None, eval_every: int = 1) -> FitResult:
    """Train from `start_epoch` to `training.epochs`, evaluating after every `eval_every`-th epoch and the last.

    Evaluating a large validation split can cost more than a short proxy
    epoch; callers that need only the final accuracy pass `eval_every=epochs`
    (epochs without an evaluation report NaN accuracy).

    A loss that turns NaN/inf ends the loop with status "diverged" and the
    reason instead of raising: a search must go on past a bad architecture,
    and full training keeps its last good checkpoint.
    """
    losses: list[float] = []
    accs: list[float] = []
    images, train_seconds = 0, 0.0
    start = time.perf_counter()

    def result(status: str, error: str = "") -> FitResult:
        return FitResult(status, len(accs), losses, accs, images / train_seconds if train_seconds else 0.0,
                         time.perf_counter() - start, error)

    for epoch in range(start_epoch, training.epochs):
        try:
            step = train_epoch(training.model, training.loader, training.optimizer, training.scheduler,
                               training.criterion, epoch, training.ema)
        except Diverged as exc:
            return result("diverged", str(exc))
        images += step.images
        train_seconds += step.seconds
        losses.append(step.train_loss)
        last = epoch + 1 == training.epochs
        accs.append(evaluate(training.evaluated) if last or (epoch + 1) % eval_every == 0 else float("nan"))
        if on_epoch is not None:
            on_epoch(EpochStats(epoch + 1, step.train_loss, accs[-1], step.images / step.seconds,
                                time.perf_counter() - start))
    return result("ok")

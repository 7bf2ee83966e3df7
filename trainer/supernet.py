"""Training a weight-sharing supernet with the one training loop, and scoring its subnets.

A supernet (`space.supernet.Supernet`) trains like any network here: the same
optimiser, one-cycle schedule, loaders, checkpoints and resume as a proxy
training (`trainer.loop.fit`).  What differs is the path: each training step
runs one architecture of the menu, drawn by a `PathSampler` from the step's
number alone, so a resumed training draws exactly the paths it would have.

Scoring a subnet inherits its weights: the architecture is extracted as an
ordinary network, its BatchNorm statistics are re-estimated on a fixed set of
training images (the supernet's running statistics mix every path), and it is
evaluated on the validation split of the supernet's seed — the split a proxy
training of the same seed validates on, so the two scores are comparable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from space import ArchConfig, SearchSpace
from space.supernet import Supernet, supernet_space

from .budget import Budget
from .data import Cifar10
from .loader import DeviceLoader
from .loop import EpochStats, evaluate_accuracy, fit, make_training, recalibrate_bn, zero_init_residuals
from .proxy import Done, proxy_arch, training_loaders

PATH_SAMPLINGS = ("fair", "uniform", "sandwich")  # search.options spells the same names for --path-sampling


@dataclass(frozen=True)
class PathSampler:
    """The path of training step `step`, from (`seed`, `step`) alone.

    - `fair` (FairNAS-style strict fairness): steps come in groups of
      lcm(2, kernel sets, ratios); within a group every insertion point has
      its MCA on in exactly half the steps, and every kernel set and every
      ratio is used equally often, each in a seeded random order.
    - `uniform`: every choice drawn independently each step (SPOS).
    - `sandwich`: groups of four steps — all MCA on, all off, two uniform.

    On/off is drawn first; the kernel set matters only to steps with some MCA on.
    """

    space: SearchSpace
    seed: int
    sampling: str = "fair"

    def __post_init__(self) -> None:
        if self.sampling not in PATH_SAMPLINGS:
            raise ValueError(f"unknown path sampling {self.sampling!r}; choose from {', '.join(PATH_SAMPLINGS)}")

    @property
    def group(self) -> int:
        """Steps per group (the period over which `fair` balances every choice)."""
        if self.sampling == "sandwich":
            return 4
        if self.sampling == "uniform":
            return 1
        return math.lcm(2, len(self.space.kernel_sets), len(self.space.ratios))

    def __call__(self, step: int) -> ArchConfig:
        group, position = divmod(step, self.group)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + group)
        space = self.space
        n = space.n_blocks
        if self.sampling == "fair":
            bits = [bool(_balanced(gen, self.group, 2)[position]) for _ in range(n)]
            kernels = space.kernel_sets[_balanced(gen, self.group, len(space.kernel_sets))[position]]
            ratio = space.ratios[_balanced(gen, self.group, len(space.ratios))[position]]
        else:
            bits = (torch.rand(n, generator=gen) < 0.5).tolist()
            if self.sampling == "sandwich" and position < 2:
                bits = [position == 0] * n
            kernels = space.kernel_sets[int(torch.randint(len(space.kernel_sets), (1,), generator=gen))]
            ratio = space.ratios[int(torch.randint(len(space.ratios), (1,), generator=gen))]
        return ArchConfig(mca=tuple(bits), kernels=kernels, ratio=ratio, width=space.width, dw_size=space.dw_size,
                          backbone=space.backbone)


def _balanced(gen: torch.Generator, length: int, choices: int) -> list[int]:
    """A seeded arrangement of `length` slots holding each of `choices` values equally often."""
    slots = torch.arange(length) % choices
    return slots[torch.randperm(length, generator=gen)].tolist()


@dataclass(frozen=True)
class SupernetResult:
    supernet: Supernet
    status: str  # "ok" or "diverged"
    epochs: int
    train_losses: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)  # the reference path's, after each epoch
    seconds: float = 0.0
    error: str = ""


def build_supernet(space: SearchSpace, budget: Budget, seed: int, sampling: str = "fair") -> Supernet:
    """The supernet a budget trains for `space` (at the budget's proxy width), with its path sampler."""
    torch.manual_seed(seed)
    net = Supernet(supernet_space(space, budget.proxy_width))
    if budget.zero_init:
        zero_init_residuals(net)
    net.path_fn = PathSampler(net.space, seed, sampling)
    return net


def train_supernet(space: SearchSpace, data: Cifar10, budget: Budget, device: torch.device | str = "cpu",
                   seed: int = 0, *, sampling: str = "fair", reference: ArchConfig | None = None,
                   bn_images: int | None = None, split_seed: int | None = None, resume: dict[str, Any] | None = None,
                   on_checkpoint: Callable[[EpochStats, dict[str, Any]], None] | None = None) -> SupernetResult:
    """Train the supernet of `space` for `budget.epochs` (the budget's images, batches and schedule).

    After each epoch `reference` (default: the menu's path without MCA at its
    first ratio) is scored as every subnet is, so the curve shows the supernet
    learning; `on_checkpoint` gets the state `resume` takes, as a proxy training's.  `split_seed` (default
    `seed`) picks the training/validation split alone: supernets of different seeds on one split differ only
    in their initialisation, path order and batch order, and are scored on the same validation images.
    """
    device = torch.device(device)
    net = build_supernet(space, budget, seed, sampling)
    net = net.to(device, memory_format=torch.channels_last if budget.channels_last else torch.preserve_format)
    reference = reference or ArchConfig(mca=(False,) * space.n_blocks, kernels=space.kernel_sets[0],
                                        ratio=space.ratios[0], width=space.width, dw_size=space.dw_size,
                                        backbone=space.backbone)
    train, val, bn = training_loaders(data, budget, seed, device, "val", bn_images=bn_images, split_seed=split_seed)
    training = make_training(net, train, budget)
    done = Done.of(resume, training)

    def evaluate(_: nn.Module) -> float:
        return score(net, reference, budget, bn, val)

    def after_epoch(stats: EpochStats) -> None:
        done.add(stats)
        if on_checkpoint is not None:
            on_checkpoint(stats, done.state(training, stats.epoch))

    result = fit(training, evaluate, start_epoch=done.epochs, on_epoch=after_epoch)
    return SupernetResult(net, result.status, done.epochs, done.train_losses, done.val_accs,
                          done.seconds + result.seconds, result.error)


def score(net: Supernet, arch: ArchConfig, budget: Budget, bn: DeviceLoader, val: DeviceLoader) -> float:
    """Validation accuracy of `arch` with the weights it inherits (BN re-estimated on `bn`'s images)."""
    sub = net.extract(proxy_arch(arch, budget))
    if budget.channels_last:
        sub = sub.to(memory_format=torch.channels_last)
    recalibrate_bn(sub, bn)
    return evaluate_accuracy(sub, val, tta=budget.tta)


def score_subnets(net: Supernet, archs: Iterable[ArchConfig], data: Cifar10, budget: Budget, seed: int,
                  device: torch.device | str = "cpu", bn_images: int | None = None,
                  split_seed: int | None = None) -> list[float]:
    """`score` for each architecture, on the validation split of `seed` (or `split_seed`: the supernet's)."""
    device = torch.device(device)
    _, val, bn = training_loaders(data, budget, seed, device, "val", bn_images=bn_images, with_training=False,
                                  split_seed=split_seed)
    was_training = net.training
    try:
        return [score(net, arch, budget, bn, val) for arch in archs]
    finally:
        net.train(was_training)


def load_supernet(path, device: torch.device | str = "cpu") -> Supernet:
    """A supernet file as `search.run --strategy oneshot` writes it (`supernets/seed-S.pt`: its menu and
    weights), in eval mode; ValueError in one line when the file is something else."""
    try:
        saved = torch.load(path, map_location=device, weights_only=False)
        net = Supernet(SearchSpace.from_dict(saved["meta"]["space"]))
        net.load_state_dict(saved["state_dict"])
    except Exception as exc:  # noqa: BLE001 - a torn, foreign or older file: the caller says so in one line
        raise ValueError(f"{path} is not a supernet file of search.run --strategy oneshot "
                         f"({type(exc).__name__})") from None
    return net.to(device).eval()


__all__ = ["PathSampler", "PATH_SAMPLINGS", "SupernetResult", "build_supernet", "load_supernet", "score",
           "score_subnets", "train_supernet"]

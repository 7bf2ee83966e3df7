"""Which memory layout trains faster here: measured on the machine, per budget, as cuDNN's benchmark mode does.

channels_last was once 1.5-1.7x faster than NCHW for GhostNet at width 1.0 and
batch 128 on a CPU; at the `cpu` budget's half width and batch 64 the same
code measured 0.97-1.04x, and the ratio moves with the machine.  So a run does
not assume a layout: before its first training it times a few real training
steps of each layout at the budget's own width, batch size and threads,
interleaved over rounds (the best round of each, as the load of a shared
machine drifts), and trains in the faster one.  The choice and both timings
go into run.json; a resumed run keeps its layout (its `budget_settings`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from space import ArchConfig, build_model

from .budget import Budget
from .data import Cifar10
from host.files import write_atomic
from .imagefolder import cache_dir
from .loader import DeviceLoader
from .loop import make_training, train_epoch, zero_init_residuals
from .proxy import proxy_arch
from host.device import LAYOUTS, describe_device


@dataclass(frozen=True)
class LayoutChoice:
    """The layout a run trains in and what it was chosen from (seconds per training step, best round)."""

    layout: str
    seconds_per_step: dict[str, float]  # layout -> seconds per step, summed over the timed architectures
    steps: int
    rounds: int
    threads: int
    device: str
    archs: tuple[str, ...]
    cached: bool = False  # read from this machine's cache, measured by an earlier run with the same settings

    @property
    def measured(self) -> bool:
        return bool(self.seconds_per_step)

    def speedup(self) -> float:
        """How much faster the chosen layout trains than the other (>= 1); 1 when not measured."""
        if not self.measured:
            return 1.0
        chosen = self.seconds_per_step[self.layout]
        other = next(v for k, v in self.seconds_per_step.items() if k != self.layout)
        return other / chosen

    def to_meta(self) -> dict[str, Any]:
        return {"layout": self.layout, "seconds_per_step": dict(self.seconds_per_step), "steps": self.steps,
                "rounds": self.rounds, "threads": self.threads, "device": self.device, "archs": list(self.archs),
                "speedup": round(self.speedup(), 3), "cached": self.cached}

    def line(self) -> str:
        """The start-up line: what was measured and what was chosen."""
        if not self.measured:
            return f"training layout: {self.layout} (--layout; not measured)"
        times = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.seconds_per_step.items())
        return (f"training layout: {self.layout} ({self.speedup():.2f}x the other; {times} per step of "
                f"{'+'.join(self.archs)}, best of {self.rounds} rounds, {self.threads} thread(s), {self.device}"
                + ("; cached for this machine and budget)" if self.cached else ")"))

    def apply(self, budget: Budget) -> Budget:
        return replace(budget, channels_last=self.layout == "channels_last")


def step_seconds(arch: ArchConfig, data: Cifar10, budget: Budget, device: torch.device, channels_last: bool,
                 steps: int) -> float:
    """Seconds per training step of `arch` at `budget` (its proxy width, batch, recipe) in one layout.

    One warm-up step first (allocator, kernel selection), then `steps` timed
    steps through the trainer's own loader, optimiser and loss.
    """
    torch.manual_seed(0)
    model = build_model(proxy_arch(arch, budget))
    if budget.zero_init:
        zero_init_residuals(model)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    n = budget.batch_size * (steps + 1)
    loader = DeviceLoader(data.train_images[:n], data.train_labels[:n], budget.batch_size, device, seed=0,
                          channels_last=channels_last, epoch_images=budget.batch_size)
    training = make_training(model, loader, budget)
    train_epoch(model, loader, training.optimizer, training.scheduler, training.criterion)  # warm-up
    loader.epoch_images = budget.batch_size * steps
    result = train_epoch(model, loader, training.optimizer, training.scheduler, training.criterion)
    return result.seconds / steps


def faster(seconds_per_step: dict[str, float]) -> str:
    """The layout with the fewer seconds per step; a tie goes to channels_last, the layout a deployment uses."""
    return min(seconds_per_step, key=lambda k: (seconds_per_step[k], k != "channels_last"))


def choose_layout(archs: Sequence[ArchConfig], data: Cifar10, budget: Budget, device: torch.device | str, *,
                  threads: int, steps: int = 4, rounds: int = 2, names: Sequence[str] | None = None) -> LayoutChoice:
    """Time `steps` training steps of each layout for each of `archs`, interleaved over `rounds`; the faster wins.

    The architectures' step times are summed (a run trains many architectures;
    the presets span plain, Ghost and MCA-heavy ones).  Ties go to channels_last,
    the layout a deployment uses.  Runs with `threads` torch threads, as a trial
    does, and restores the caller's thread count.
    """
    device = torch.device(device)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = {layout: [float("inf")] * len(archs) for layout in LAYOUTS}
        for _ in range(rounds):
            for i, arch in enumerate(archs):
                for layout in LAYOUTS:
                    s = step_seconds(arch, data, budget, device, layout == "channels_last", steps)
                    best[layout][i] = min(best[layout][i], s)
    finally:
        torch.set_num_threads(saved)
    per_step = {layout: sum(v) for layout, v in best.items()}
    chosen = faster(per_step)
    labels = tuple(names) if names is not None else tuple(a.key for a in archs)
    return LayoutChoice(chosen, per_step, steps, rounds, threads, str(device), labels)


# Budget fields that do not change the cost of a training step (how many steps, which images, when to stop).
_NOT_PER_STEP = ("name", "epochs", "train_size", "val_size", "val_fraction", "epoch_images", "bn_images", "tta",
                 "channels_last")


def cache_key(archs: Sequence[ArchConfig], budget: Budget, device: torch.device, threads: int, steps: int,
              rounds: int) -> str:
    """What a layout choice depends on: the machine, torch, the step's shape and recipe, the architectures."""
    step = {k: v for k, v in asdict(budget).items() if k not in _NOT_PER_STEP}
    what = {"device": describe_device(device, threads)["label"], "torch": torch.__version__, "step": step,
            "archs": sorted(a.key for a in archs), "steps": steps, "rounds": rounds, "cpus": os.cpu_count()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def layout_for(archs: Sequence[ArchConfig], data: Cifar10, budget: Budget, device: torch.device | str, *,
               threads: int, names: Sequence[str] | None = None, steps: int = 4, rounds: int = 2,
               cache: Path | None = None) -> LayoutChoice:
    """`choose_layout`, measured once per machine and budget: later runs read the choice from the cache.

    A cache file that cannot be read or written is ignored (the choice is then
    measured again); the cache only saves seconds, it never decides anything.
    """
    device = torch.device(device)
    path = (cache or cache_dir()) / f"layout-{cache_key(archs, budget, device, threads, steps, rounds)}.json"
    try:
        meta = json.loads(path.read_text())
        return LayoutChoice(meta["layout"], dict(meta["seconds_per_step"]), int(meta["steps"]), int(meta["rounds"]),
                            int(meta["threads"]), str(meta["device"]), tuple(meta["archs"]), cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    choice = choose_layout(archs, data, budget, device, threads=threads, steps=steps, rounds=rounds, names=names)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(choice.to_meta()))
    except OSError:
        pass
    return choice

"""The Ray Tune function trainable: one architecture, measured and proxy-trained.

It runs in a Ray worker, possibly on another machine, so it gets everything it
needs in a small picklable `TrialContext` and imports only `space` and
`trainer` — no Optuna, no run directory.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from ray import tune

from space import ArchConfig, build_model, count_macs, count_params
from trainer.budget import Budget
from trainer.data import Cifar10, load_cifar10
from trainer.device import resolve_device
from trainer.latency_table import LatencyTable
from trainer.proxy import EpochStats, train_proxy
from trainer.slot import NodeSlot, SharedSlot

from search.latency import latency_metrics


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a run shares (settings, not results)."""

    data_dir: str
    budget: Budget  # built and checked once by the driver; workers use it as is
    seed: int  # the run's seed: an architecture's first training uses it, repeats the config's "seed"
    device: str
    threads: int
    latency_threads: int
    latency_table: LatencyTable | None = None  # predict latency_ms from it instead of measuring
    # Test hook: trials whose canonical key contains one of these raise, so the
    # failure path is exercised end to end through real Ray (GHOSTNAS_FAIL_KEYS).
    fail_keys: tuple[str, ...] = field(default_factory=tuple)


class InjectedFailure(RuntimeError):
    """Raised for keys named in GHOSTNAS_FAIL_KEYS."""


@functools.lru_cache(maxsize=2)
def worker_dataset(data_dir: str) -> Cifar10:
    """Loaded once per worker process: Ray reuses the actor for the next trial."""
    return load_cifar10(data_dir)


def cost_metrics(arch: ArchConfig, model: torch.nn.Module, device: torch.device, latency_threads: int,
                 table: LatencyTable | None = None, slot: SharedSlot | None = None) -> dict[str, Any]:
    """MACs, parameters and batch-1 latency (from the table, or measured alone on the node)."""
    return {"macs": count_macs(model), "params": count_params(model),
            **latency_metrics(arch, model, device, latency_threads, table, slot)}


def evaluate(arch: ArchConfig, ctx: TrialContext, report: Callable[[dict[str, Any]], None],
             seed: int | None = None) -> dict[str, Any]:
    """Measure and proxy-train one architecture with `seed` (default: the run's); `report` gets
    per-epoch and final metrics.  The seed picks the validation split, the training subset, the
    initialisation and the batch order (`trainer.proxy`)."""
    seed = ctx.seed if seed is None else seed
    started = time.perf_counter()
    torch.set_num_threads(ctx.threads)
    device = resolve_device(ctx.device)
    if any(k and k in arch.key for k in ctx.fail_keys):
        raise InjectedFailure(f"injected failure for {arch.key} (GHOSTNAS_FAIL_KEYS)")
    # The trial shares the node's slot while it computes and yields it after each epoch;
    # a latency measurement takes it alone, so it never runs while a trial computes (trainer.slot).
    with NodeSlot().shared() as slot:
        base = {"key": arch.key, "seed": seed,
                **cost_metrics(arch, build_model(arch), device, ctx.latency_threads, ctx.latency_table, slot)}

        def on_epoch(stats: EpochStats) -> None:
            report({**base, "status": "running", "epoch": stats.epoch, "val_acc": stats.accuracy,
                    "train_loss": stats.train_loss, "images_per_s": stats.images_per_s,
                    "train_seconds": stats.seconds})
            slot.pause()

        result = train_proxy(arch, worker_dataset(ctx.data_dir), ctx.budget, device, seed=seed, on_epoch=on_epoch)
    final = {
        **base,
        "status": result.status,
        "val_acc": result.val_acc if result.status == "ok" else None,
        "epochs": result.epochs,
        "train_seconds": result.seconds,
        "images_per_s": result.images_per_s,
        "wall_seconds": time.perf_counter() - started,
        "error": result.error or "",
    }
    report(final)
    return final


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune entry point: the config carries the architecture as a dict and the training's seed."""
    evaluate(ArchConfig.from_dict(config["arch"]), ctx, tune.report, seed=config.get("seed"))

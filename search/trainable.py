"""The Ray Tune function trainable: one architecture, measured and proxy-trained.

It runs in a Ray worker, possibly on another machine, so it gets everything it
needs in a small picklable `TrialContext` and imports only `space`,
`trainer` and the objective names of `record` — no Optuna, no run directory.
"""
from __future__ import annotations

import functools
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from ray import tune

from record.objectives import OBJECTIVES
from space import ArchConfig, build_model, count_macs, count_params
from trainer.budget import Budget
from trainer.data import Cifar10, load_cifar10
from host.device import resolve_device
from runtime.latency_table import LatencyTable
from trainer.proxy import EpochStats, train_proxy
from runtime.slot import NodeSlot, SharedSlot

from search.diskguard import is_full_disk
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
    latency_backend: str = "torch"  # the runtime a measured latency_ms is timed in (runtime.backends)
    evaluate_on: str = "val"  # "test": score on the test batch (search.confirm); "val_acc" then holds it
    int8: bool = False  # search.confirm --int8: also the int8 model's test accuracy and latency (search.int8)
    # search.oneshot: {"files": {seed: supernet file}} scores architectures with inherited weights instead of
    # training them; {"space", "path_sampling", "meta"} describes the supernets its first phase trains.
    oneshot: dict[str, Any] | None = None
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
                 table: LatencyTable | None = None, slot: SharedSlot | None = None,
                 backend: str = "torch") -> dict[str, Any]:
    """MACs, parameters and batch-1 latency (from the table, or measured alone on the node in `backend`)."""
    return {"macs": count_macs(model), "params": count_params(model),
            **latency_metrics(arch, model, device, latency_threads, table, slot, backend)}


Report = Callable[..., None]  # report(metrics) or report(metrics, state): an epoch's state to resume from


def evaluate(arch: ArchConfig, ctx: TrialContext, report: Report, seed: int | None = None,
             resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure and proxy-train one architecture with `seed` (default: the run's); `report` gets
    per-epoch metrics with the state to resume from, then the final metrics.  The seed picks the
    validation split, the training subset, the initialisation and the batch order (`trainer.proxy`).

    An exception of the architecture itself (model code, the network out of
    memory) ends the training as `failed` with its reason, reported like any
    result: Ray retries only what kills the worker (a lost node, a killed
    process), so those restart from `resume` and never count against the
    architecture.  A full disk (a checkpoint that cannot be written) is not the
    architecture's either: it reaches Tune as an error, and the driver's
    `search.diskguard` ends the search there.
    """
    seed = ctx.seed if seed is None else seed
    started = time.perf_counter()
    try:
        final = _train(arch, ctx, report, seed, resume)
    except Exception as exc:  # noqa: BLE001 - whatever the architecture raised is its result
        if is_full_disk(exc):
            raise
        traceback.print_exc()  # into the worker's log, in Ray's session directory
        # Every objective present (empty): Tune checks that each result names the searcher's metrics.
        final = {"key": arch.key, "seed": seed, **dict.fromkeys(OBJECTIVES), "status": "failed",
                 "error": f"{type(exc).__name__}: {exc}"[:500]}
    final["wall_seconds"] = time.perf_counter() - started
    report(final)
    return final


def _train(arch: ArchConfig, ctx: TrialContext, report: Report, seed: int, resume: dict[str, Any] | None):
    torch.set_num_threads(ctx.threads)
    device = resolve_device(ctx.device)
    if any(k and k in arch.key for k in ctx.fail_keys):
        raise InjectedFailure(f"injected failure for {arch.key} (GHOSTNAS_FAIL_KEYS)")
    # The trial shares the node's slot while it computes and yields it after each epoch;
    # a latency measurement takes it alone, so it never runs while a trial computes (runtime.slot).
    with NodeSlot().shared() as slot:
        base = {"key": arch.key, "seed": seed, "node": node_id(),
                **cost_metrics(arch, build_model(arch), device, ctx.latency_threads, ctx.latency_table, slot,
                             ctx.latency_backend)}

        if ctx.oneshot is not None and "files" in ctx.oneshot:
            return {**base, **inherited_score(arch, ctx, seed, device)}

        attempt = Attempt()

        def on_checkpoint(stats: EpochStats, state: dict[str, Any]) -> None:
            attempt.epochs += 1
            report({**base, "status": "running", "epoch": stats.epoch, "val_acc": stats.accuracy,
                    "train_loss": stats.train_loss, "images_per_s": stats.images_per_s,
                    "train_seconds": stats.seconds, **attempt.metrics(stats.epoch)}, state)
            slot.pause()

        after = None
        if ctx.int8:
            from search.int8 import int8_metrics

            after = functools.partial(int8_metrics, threads=ctx.latency_threads, tta=ctx.budget.tta, name=arch.key,
                                      alone=slot.exclusive)
            if ctx.budget.proxy_width != 1.0:  # trained narrower: the latency is the architecture's, at full width
                base["latency_ms_int8"] = latency_metrics(arch, build_model(arch), torch.device("cpu"),
                                                          ctx.latency_threads, None, slot, "onnxruntime-int8")["latency_ms"]
        result = train_proxy(arch, worker_dataset(ctx.data_dir), ctx.budget, device, seed=seed,
                             resume=resume, on_checkpoint=on_checkpoint, evaluate_on=ctx.evaluate_on,
                             after_training=after)
    return {
        **result.extra,
        **base,
        "status": result.status,
        "val_acc": result.val_acc if result.status == "ok" else None,
        "epochs": result.epochs,
        "train_seconds": result.seconds,
        "images_per_s": result.images_per_s,
        "error": result.error or "",
        **attempt.metrics(result.epochs),
    }


@functools.lru_cache(maxsize=2)
def worker_supernet(path: str, device: str):
    """A supernet file, loaded once per worker process (a worker scores many architectures on it)."""
    from trainer.supernet import load_supernet

    return load_supernet(path, resolve_device(device))


def inherited_score(arch: ArchConfig, ctx: TrialContext, seed: int, device: torch.device) -> dict[str, Any]:
    """`arch` scored on the supernet of `seed` with the weights it inherits (trainer.supernet.score_subnets)."""
    from trainer.supernet import score_subnets

    started = time.perf_counter()
    files = ctx.oneshot["files"]
    if str(seed) not in files:
        raise ValueError(f"no supernet of seed {seed} (the run's: {', '.join(files)})")
    net = worker_supernet(files[str(seed)], ctx.device)
    acc = score_subnets(net, [arch], worker_dataset(ctx.data_dir), ctx.budget, seed, device)[0]
    return {"status": "ok", "val_acc": acc, "epochs": 0, "train_seconds": time.perf_counter() - started,
            "images_per_s": None, "error": "", "inherited": 1}


def train_supernet_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """One supernet (search.oneshot's first phase): each epoch a Tune checkpoint, the end a file."""
    from host.files import write_atomic
    from space import SearchSpace
    from trainer.supernet import train_supernet

    torch.set_num_threads(ctx.threads)
    seed = int(config["supernet_seed"])
    resume = restored_state(ctx.device)
    if resume is None and config.get("resume_from"):
        resume = torch.load(config["resume_from"], map_location=resolve_device(ctx.device), weights_only=False)
    label = {"key": f"supernet-{seed}", "seed": seed, **dict.fromkeys(OBJECTIVES)}

    def on_checkpoint(stats: EpochStats, state: dict[str, Any]) -> None:
        tune_report({**label, "status": "running", "epoch": stats.epoch, "val_acc": stats.accuracy,
                     "train_loss": stats.train_loss, "images_per_s": stats.images_per_s,
                     "train_seconds": stats.seconds}, state)

    result = train_supernet(SearchSpace.from_dict(ctx.oneshot["space"]), worker_dataset(ctx.data_dir), ctx.budget,
                            resolve_device(ctx.device), seed, sampling=ctx.oneshot["path_sampling"], resume=resume,
                            on_checkpoint=on_checkpoint)
    if result.status == "ok":
        saved = {"meta": ctx.oneshot["meta"], "state_dict": result.supernet.state_dict(), "seed": seed,
                 "val_accs": result.val_accs}
        write_atomic(Path(config["file"]), lambda f: torch.save(saved, f))
    tune_report({**label, "status": result.status, "epochs": result.epochs, "error": result.error,
                 "val_acc": result.val_accs[-1] if result.val_accs else None})


@dataclass
class Attempt:
    """The epochs this attempt of a training computed itself, counted as they finish.

    Ray restarts a training whose node was lost from its last checkpoint; what
    the attempt then reports (`attempt_from`: the epochs it found done,
    `attempt_epochs`: the ones it trained) is what the watchdog writes to
    events.log when the training ends, so "restarts from epoch E" can be
    checked against what happened (a checkpoint that could not be read shows
    as an attempt from epoch 0).
    """

    epochs: int = 0

    def metrics(self, done: int) -> dict[str, int]:
        """This attempt's start and length when the training has `done` epochs in all."""
        return {"attempt_from": done - self.epochs, "attempt_epochs": self.epochs}


def node_id() -> str:
    """The Ray node this worker runs on (what a lost-node event names); empty outside Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


STATE_FILE = "training.pt"


def tune_report(metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
    """Report to Tune; an epoch's state goes with it as a Tune checkpoint (Tune persists it before returning)."""
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def restored_state(device: str) -> dict[str, Any] | None:
    """The state of the last finished epoch when Tune restarts this training, else None.

    A checkpoint that cannot be read (storage the new node does not see) starts
    the training over: slower, never wrong.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    try:
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / STATE_FILE, map_location=resolve_device(device), weights_only=False)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return None


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune entry point: the config carries the architecture as a dict and the training's seed
    (under "job" when the Tuner was given a fixed list of trainings)."""
    config = config.get("job", config)
    if "supernet_seed" in config:
        train_supernet_trial(config, ctx)
        return
    evaluate(ArchConfig.from_dict(config["arch"]), ctx, tune_report, seed=config.get("seed"),
             resume=restored_state(ctx.device))

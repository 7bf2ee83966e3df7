"""Command-line options of `python -m search.run`, validated before anything starts.

Validation happens here, up front, so a bad flag costs the user one line and
exit status 2 — never a half-created run directory or a Ray cluster started
for nothing.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from record.objectives import DEFAULT_OBJECTIVES, OBJECTIVES, Direction, check_objectives
from space.cli import Parser, UserError
from space.search_space import DEFAULT_KERNEL_SETS, DEFAULT_RATIOS, parse_ints, parse_kernel_sets

SAMPLERS = ("nsga2", "tpe", "random")
SCHEDULERS = ("fifo", "moasha")
BUDGET_NAMES = ("smoke", "cpu", "gpu")
# Settings that define *what* is searched: fixed at creation, read back on --resume.
SEARCH_SETTINGS = (
    "objectives", "sampler", "seed", "budget", "budget_overrides", "max_macs",
    "baselines", "population_size", "kernel_sets", "ratios", "width", "backbone", "val_size",
    "scheduler", "rungs", "reduction_factor",
)
# How much each architecture is measured: stored, and may change on --resume (like --trials).
# Runs created before they existed trained every architecture once (LEGACY).
MEASURE_SETTINGS = {"baseline_seeds": 1, "repeats": 1}
# Backbones trained on CIFAR-10 (ResNet-50 is the paper's ImageNet network: 224² input, 1000 classes).
CIFAR_BACKBONES = ("ghostnet", "vgg16", "resnet56")




def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m search.run",
        description=(
            "Search Selective-MCA GhostNets on CIFAR-10: Optuna samples architectures, "
            "Ray Tune trains each briefly, the Pareto front of accuracy against MACs and "
            "latency is written to <storage-path>/<name>/report.html."
        ),
    )
    s = p.add_argument_group("search")
    s.add_argument("--trials", type=int, default=None,
                   help="proxy trainings to run, every seed of every architecture counting once, so the cost "
                        "is trials x one training (default 200; on --resume: the stored target)")
    s.add_argument("--objectives", default=None, help=f"comma list of {', '.join(OBJECTIVES)} (default {','.join(DEFAULT_OBJECTIVES)})")
    s.add_argument("--sampler", default=None, help=f"one of {', '.join(SAMPLERS)} (default nsga2)")
    s.add_argument("--seed", type=int, default=None, help="seed of the sampler and the trainers (default 0)")
    s.add_argument("--population-size", type=int, default=None, help="NSGA-II population (default 20)")
    s.add_argument("--max-macs", type=float, default=None, help="never train architectures above this many MACs (at 32x32); they are recorded as infeasible")
    s.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluate the presets cnn, ghostnet, all_mca, selective_mca first (default on)")
    s.add_argument("--baseline-seeds", type=int, default=None,
                   help="seeds each baseline is trained with; their spread measures the run's seed noise (default 3)")
    s.add_argument("--repeats", type=int, default=None,
                   help="re-train architectures on the Pareto front, or within one standard error of it, with "
                        "new seeds until each has this many results (default 1 = off)")
    s.add_argument("--scheduler", default=None,
                   help="fifo: every training runs its whole budget (default); moasha: multi-objective ASHA "
                        "stops trainings outside the top 1/eta of their rung (search.moasha)")
    s.add_argument("--rungs", default=None, help="moasha: epochs at which trainings are judged, e.g. 1,3 "
                   "(default 1, eta, eta^2, ... below the budget's epochs)")
    s.add_argument("--reduction-factor", type=float, default=None,
                   help="moasha: eta, the top 1/eta of a rung goes on (default 3)")
    s.add_argument("--kernel-sets", default=None, help="MCA kernel-scale menu, e.g. 3-5-7,5-7-11,7-11-21")
    s.add_argument("--ratios", default=None, help="ghost ratio menu, e.g. 2,3,4")
    s.add_argument("--width", type=float, default=None, help="width multiplier of every sampled net (default 1.0)")
    s.add_argument("--backbone", default=None,
                   help=f"network whose blocks get MCA: {', '.join(CIFAR_BACKBONES)} (default ghostnet)")
    s.add_argument("--latency-table", default=None, metavar="FILE",
                   help="predict latency_ms from this per-block table (python -m trainer.latency_table) "
                        "instead of measuring it in the trials")

    t = p.add_argument_group("training")
    t.add_argument("--budget", default=None, help="trainer preset smoke|cpu|gpu (default gpu with CUDA, else cpu)")
    t.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    t.add_argument("--train-size", type=int, default=None, help="override the budget's training-subset size")
    t.add_argument("--val-size", type=int, default=None,
                   help="validation images, stratified, carved from the training batches (default: the larger of "
                        "10%% of them and 5000, at most 20%% of them: 5000 on CIFAR-10, 1034 on the 5170-image sample)")
    t.add_argument("--batch-size", type=int, default=None, help="override the budget's batch size")
    t.add_argument("--lr", type=float, default=None, help="override the budget's peak learning rate")
    t.add_argument("--proxy-width", type=float, default=None,
                   help="train a copy at this fraction of each architecture's width for the accuracy axis "
                        "(GhostNet; MACs, params and latency stay the real architecture's)")
    t.add_argument("--epoch-images", type=int, default=None,
                   help="images per epoch, drawn afresh each epoch from the whole training split")
    t.add_argument("--data-dir", default=None, help="CIFAR-10 python batches (default $CIFAR10_DIR, else ./data)")
    t.add_argument("--download", action="store_true", help="download CIFAR-10 with torchvision if it is missing")

    r = p.add_argument_group("run directory")
    r.add_argument("--name", default=None, help="run name (default search-<date>-<time>)")
    r.add_argument("--storage-path", default="./runs", help="folder holding run directories (default %(default)s)")
    r.add_argument("--resume", action="store_true", help="continue the run --name after an interruption")
    r.add_argument("--report", action=argparse.BooleanOptionalAction, default=True, help="write report.html at the end (default on)")

    x = p.add_argument_group("execution")
    x.add_argument("--address", default=None, help="join a Ray cluster (e.g. auto or host:6379); default: start a local one")
    x.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved by each trial (also its torch threads; default %(default)g)")
    x.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per trial (default 1 with CUDA, else 0)")
    x.add_argument("--max-concurrent", type=int, default=None, help="trials running at once (default: as many as the resources allow)")
    x.add_argument("--latency-threads", type=int, default=1, help="CPU threads for the batch-1 latency measurement (default %(default)s)")
    x.add_argument("--dashboard", action=argparse.BooleanOptionalAction, default=True, help="start the Ray dashboard with a local cluster (default on)")
    x.add_argument("--dashboard-port", type=int, default=8265, help="port of the local Ray dashboard (on 127.0.0.1; default %(default)s)")
    return p


@dataclass
class Options:
    trials: int
    objectives: tuple[str, ...]
    sampler: str
    seed: int
    population_size: int
    max_macs: float | None
    baselines: bool
    baseline_seeds: int
    repeats: int
    val_size: int | None
    kernel_sets: tuple[tuple[int, ...], ...]
    ratios: tuple[int, ...]
    width: float
    backbone: str
    budget: str
    budget_overrides: dict[str, Any]
    data_dir: Path
    download: bool
    name: str
    storage_path: Path
    resume: bool
    report: bool
    address: str | None
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None
    latency_threads: int
    dashboard: bool
    dashboard_port: int
    explicit: frozenset[str]
    scheduler: str = "fifo"
    rungs: tuple[int, ...] | None = None  # None: search.moasha.default_rungs of the budget
    reduction_factor: float = 3.0
    latency_table: Path | None = None
    latency: Any = None  # search.latency.LatencySetup, resolved by search.run.prepare

    @property
    def directions(self) -> tuple[Direction, ...]:
        return tuple(OBJECTIVES[o].direction for o in self.objectives)

    @property
    def run_path(self) -> Path:
        return self.storage_path / self.name

    def search_settings(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (*SEARCH_SETTINGS, *MEASURE_SETTINGS)}
        out["objectives"] = list(self.objectives)
        out["kernel_sets"] = [list(k) for k in self.kernel_sets]
        out["ratios"] = list(self.ratios)
        out["rungs"] = list(self.rungs) if self.rungs is not None else None
        return out


def parse_objectives(text: str) -> tuple[str, ...]:
    try:
        return tuple(check_objectives([n.strip() for n in text.split(",") if n.strip()]))
    except ValueError as exc:
        raise UserError(f"--objectives: {exc}") from None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse and validate flags; raises UserError with a one-line message."""
    ns = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    explicit = frozenset(
        a[2:].split("=")[0].replace("-", "_").removeprefix("no_") for a in argv if a.startswith("--")
    )
    cuda = _cuda_available()
    budget = ns.budget or ("gpu" if cuda else "cpu")
    if budget not in BUDGET_NAMES:
        raise UserError(f"unknown --budget {budget!r}; choose from {', '.join(BUDGET_NAMES)}")
    sampler = ns.sampler or "nsga2"
    if sampler not in SAMPLERS:
        raise UserError(f"unknown --sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    trials = 200 if ns.trials is None else ns.trials
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    overrides = {k: getattr(ns, k) for k in OVERRIDE_FLAGS if getattr(ns, k) is not None}
    for k, v in overrides.items():
        if not v > 0 or (isinstance(v, float) and not math.isfinite(v)):
            raise UserError(f"--{k.replace('_', '-')} must be a positive number, got {v}")
    if overrides.get("proxy_width", 1.0) > 1:
        raise UserError(f"--proxy-width must be in (0, 1], got {overrides['proxy_width']}")
    population = 20 if ns.population_size is None else ns.population_size
    if population < 2:
        raise UserError(f"--population-size must be at least 2, got {population}")
    for flag, value in (("--baseline-seeds", ns.baseline_seeds), ("--repeats", ns.repeats), ("--val-size", ns.val_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if ns.max_macs is not None and not ns.max_macs > 0:
        raise UserError(f"--max-macs must be positive, got {ns.max_macs:g}")
    if ns.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be positive, got {ns.cpus_per_trial:g}")
    gpus = ns.gpus_per_trial if ns.gpus_per_trial is not None else (1.0 if cuda else 0.0)
    if gpus < 0:
        raise UserError(f"--gpus-per-trial must be 0 or more, got {gpus:g}")
    if ns.max_concurrent is not None and ns.max_concurrent < 1:
        raise UserError(f"--max-concurrent must be at least 1, got {ns.max_concurrent}")
    if ns.latency_threads < 1:
        raise UserError(f"--latency-threads must be at least 1, got {ns.latency_threads}")
    backbone = ns.backbone or "ghostnet"
    if backbone not in CIFAR_BACKBONES:
        hint = " (resnet50 is the paper's ImageNet network; this search trains on CIFAR-10)" \
            if backbone == "resnet50" else ""
        raise UserError(f"unknown --backbone {backbone!r}; choose from {', '.join(CIFAR_BACKBONES)}{hint}")
    scheduler = ns.scheduler or "fifo"
    if scheduler not in SCHEDULERS:
        raise UserError(f"unknown --scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    rungs = parse_ints(ns.rungs, "--rungs") if ns.rungs is not None else None
    if scheduler == "fifo" and (ns.rungs is not None or ns.reduction_factor is not None):
        raise UserError("--rungs and --reduction-factor apply to --scheduler moasha only")
    if ns.reduction_factor is not None and not (ns.reduction_factor > 1 and math.isfinite(ns.reduction_factor)):
        raise UserError(f"--reduction-factor must be greater than 1, got {ns.reduction_factor:g}")
    if ns.resume and not ns.name:
        raise UserError("--resume needs --name of the run to continue")
    name = ns.name or datetime.now().strftime("search-%Y%m%d-%H%M%S")
    if "/" in name or name in (".", ".."):
        raise UserError(f"--name must be a plain folder name, got {name!r}")
    data_dir = ns.data_dir or os.environ.get("CIFAR10_DIR") or "./data"
    return Options(
        trials=trials,
        objectives=parse_objectives(",".join(DEFAULT_OBJECTIVES) if ns.objectives is None else ns.objectives),
        sampler=sampler,
        seed=0 if ns.seed is None else ns.seed,
        population_size=population,
        max_macs=ns.max_macs,
        baselines=True if ns.baselines is None else ns.baselines,
        baseline_seeds=3 if ns.baseline_seeds is None else ns.baseline_seeds,
        repeats=1 if ns.repeats is None else ns.repeats,
        val_size=ns.val_size,
        kernel_sets=parse_kernel_sets(ns.kernel_sets or DEFAULT_KERNEL_SETS),
        ratios=parse_ints(ns.ratios or DEFAULT_RATIOS, "--ratios"),
        width=1.0 if ns.width is None else ns.width,
        backbone=backbone,
        budget=budget,
        budget_overrides=overrides,
        data_dir=Path(data_dir).expanduser().resolve(),
        download=ns.download,
        name=name,
        storage_path=Path(ns.storage_path).expanduser().resolve(),
        resume=ns.resume,
        report=ns.report,
        address=ns.address,
        cpus_per_trial=ns.cpus_per_trial,
        gpus_per_trial=gpus,
        max_concurrent=ns.max_concurrent,
        latency_threads=ns.latency_threads,
        dashboard=ns.dashboard,
        dashboard_port=ns.dashboard_port,
        explicit=explicit,
        scheduler=scheduler,
        rungs=rungs,
        reduction_factor=3.0 if ns.reduction_factor is None else ns.reduction_factor,
        latency_table=Path(ns.latency_table).expanduser().resolve() if ns.latency_table else None,
    )


OVERRIDE_FLAGS = ("epochs", "train_size", "batch_size", "lr", "proxy_width", "epoch_images")


def _stored_value(key: str, value: Any) -> Any:
    """A run.json value in the form Options holds it."""
    if key in ("objectives", "ratios"):
        return tuple(value)
    if key == "rungs":
        return tuple(value) if value is not None else None
    if key == "kernel_sets":
        return tuple(tuple(k) for k in value)
    if key == "baselines" and isinstance(value, list):  # runs written before 0.2 stored the preset names
        return bool(value)
    return value


def merge_stored(opts: Options, stored: dict[str, Any]) -> Options:
    """On --resume the stored settings win: `--name N --resume` alone continues a run.

    Repeating a stored flag with the same value is fine; a different value for
    a setting that defines what is searched is a user error.  `--data-dir`
    and `--trials` may change (the data moved; the search should go further).
    """
    from trainer.budget import run_budget

    for key in SEARCH_SETTINGS:
        if key not in stored or key == "budget_overrides":
            continue
        value = _stored_value(key, stored[key])
        if key in opts.explicit and getattr(opts, key) != value:
            raise UserError(f"run {opts.name!r} was created with {key}={stored[key]!r}; "
                             f"drop --{key.replace('_', '-')} to resume it, or start a new --name")
        setattr(opts, key, value)
    if "budget_overrides" in stored:
        overrides = dict(stored["budget_overrides"])
        budget = run_budget(stored)
        for flag in OVERRIDE_FLAGS:
            given = opts.budget_overrides.get(flag)
            if flag in opts.explicit and given != getattr(budget, flag):
                raise UserError(f"run {opts.name!r} was created with {flag}={getattr(budget, flag)!r}; "
                                 f"drop --{flag.replace('_', '-')} to resume it, or start a new --name")
        opts.budget_overrides = overrides
    if "data_dir" not in opts.explicit and stored.get("data_dir"):
        opts.data_dir = Path(stored["data_dir"])
    if "trials" not in opts.explicit:
        opts.trials = int(stored.get("trials", opts.trials))
    for key, legacy in MEASURE_SETTINGS.items():
        if key not in opts.explicit:
            setattr(opts, key, int(stored.get(key, legacy)))
    return opts

"""Command-line options of `python -m search.run`: one table, read by the parser, the help, the checks and resume.

Each `Flag` row says once what the option is: its default, how its text
becomes a value, what makes a value wrong, and whether run.json keeps it.
Validation happens here, up front, so a bad flag costs the user one line and
exit status 2, never a half-created run directory or a Ray cluster started
for nothing.  Options the user gave are known from argparse itself (every
default is `SUPPRESS`, abbreviations are off), not by reading argv again.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from cli_kit import Parser, UserError
from record.objectives import DEFAULT_OBJECTIVES, OBJECTIVES, Direction, parse_objectives
from space.search_space import DEFAULT_KERNEL_SETS, DEFAULT_RATIOS, parse_ints, parse_kernel_sets

# runtime.backends.BACKENDS, spelled here so parsing flags imports no torch (tests/test_latency_backends.py
# keeps the two equal).
LATENCY_BACKENDS = ("onnxruntime", "onnxruntime-int8", "torch")

SAMPLERS = ("nsga2", "tpe", "random", "qmc")  # qmc: scrambled Sobol, spreads the menu evenly for analysis.effects
SCHEDULERS = ("fifo", "moasha")
STRATEGIES = ("standalone", "oneshot")  # oneshot: weight-sharing supernets score every architecture (search.oneshot)
# BatchNorm of a one-shot score: re-estimated on 2,048 training images, not the budget's 512 (docs/oneshot.md:
# a supernet agrees with itself at tau 0.70-0.76 instead of 0.37-0.53, for 2-3 s more per score).
ONESHOT_BN_IMAGES = 2048
PATH_SAMPLINGS = ("fair", "uniform", "sandwich")  # trainer.supernet.PATH_SAMPLINGS, spelled here to import no torch
BUDGET_NAMES = ("smoke", "cpu", "gpu")
LAYOUT_CHOICES = ("auto", "channels_last", "nchw")
# Backbones trained on CIFAR-10 (ResNet-50 is the paper's ImageNet network: 224² input, 1000 classes).
CIFAR_BACKBONES = ("ghostnet", "vgg16", "resnet56")
# What `stored` means in the table:
SEARCH = "search"    # defines *what* is searched: fixed at creation, read back on --resume
MEASURE = "measure"  # how much each architecture is measured: stored, may change on --resume (like --trials)
BUDGET = "budget"    # overrides a field of the trainer preset; stored in "budget_overrides"


def _cuda() -> bool:
    from host.device import cuda_available

    return cuda_available()


def _default_gpus() -> float:
    from host.device import default_gpus

    return default_gpus()


# -- checks: a value -> None, or the error with FLAG standing for the flag's spelling ----------
FLAG = "<flag>"


def at_least(n: int) -> Callable[[Any], str | None]:
    return lambda v: None if v is None or v >= n else f"{FLAG} must be at least {n}, got {v}"


def positive(v: Any) -> str | None:
    return None if v is None or (v > 0 and math.isfinite(v)) else f"{FLAG} must be a positive number, got {v}"


def one_of(choices: Sequence[str], hint: dict[str, str] | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v in choices:
            return None
        return f"unknown {FLAG} {v!r}; choose from {', '.join(choices)}{(hint or {}).get(v, '')}"
    return check


def _proxy_width(v: Any) -> str | None:
    return positive(v) or (None if v is None or v <= 1 else f"{FLAG} must be in (0, 1], got {v:g}")


def _reduction_factor(v: Any) -> str | None:
    return None if v > 1 and math.isfinite(v) else f"{FLAG} must be greater than 1, got {v:g}"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else f"{FLAG} must be 0 or more, got {v:g}"


def _max_macs(v: Any) -> str | None:
    return None if v is None or v > 0 else f"{FLAG} must be positive, got {v:g}"


def _plain_name(v: Any) -> str | None:
    return None if "/" not in v and v not in (".", "..") else f"{FLAG} must be a plain folder name, got {v!r}"


def _path(text: str | None) -> Path | None:
    return Path(text).expanduser().resolve() if text else None


@dataclass(frozen=True)
class Flag:
    """One option: `--<name>` (dashes for underscores) and everything the code needs to know of it.

    `default` is a value, or a callable of nothing for defaults that depend on
    the machine or the clock; `help` may name it as {default}.  `convert` turns
    the given text (or the default) into the value `Options` holds; `check`
    judges that value.  `kind`: "value", "bool" (--x / --no-x) or "switch".
    """

    name: str
    group: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    convert: Callable[[Any], Any] | None = None
    check: Callable[[Any], str | None] | None = None
    stored: str | None = None
    kind: str = "value"
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


FLAGS: tuple[Flag, ...] = (
    # -- search: what is searched -------------------------------------------------------------
    Flag("trials", "search", "proxy trainings to run, every seed of every architecture counting once, so the "
         "cost is trials x one training (default {default}; on --resume: the stored target)",
         200, int, check=at_least(1)),
    Flag("objectives", "search", f"comma list of {', '.join(OBJECTIVES)} (default {{default}})",
         ",".join(DEFAULT_OBJECTIVES), convert=lambda t: tuple(parse_objectives(t)), stored=SEARCH),
    Flag("sampler", "search", f"one of {', '.join(SAMPLERS)} (default {{default}})", "nsga2",
         check=one_of(SAMPLERS), stored=SEARCH),
    Flag("seed", "search", "seed of the sampler and the trainers (default {default})", 0, int, stored=SEARCH),
    Flag("population_size", "search", "NSGA-II population (default {default})", 20, int, check=at_least(2),
         stored=SEARCH),
    Flag("max_macs", "search", "never train architectures above this many MACs (at 32x32); they are recorded "
         "as infeasible", None, float, check=_max_macs,
         stored=SEARCH),
    Flag("baselines", "search", "evaluate the presets cnn, ghostnet, all_mca, selective_mca first (default on)",
         True, kind="bool", stored=SEARCH),
    Flag("baseline_seeds", "search", "seeds each baseline is trained with; their spread measures the run's seed "
         "noise (default {default})", 3, int, check=at_least(1), stored=MEASURE),
    Flag("repeats", "search", "re-train architectures on the Pareto front, or within one standard error of it, "
         "with new seeds until each has this many results (default {default} = off)", 1, int, check=at_least(1),
         stored=MEASURE),
    Flag("scheduler", "search", "fifo: every training runs its whole budget; moasha: multi-objective ASHA stops "
         "trainings outside the top 1/eta of their rung (search.moasha) (default {default})", "fifo",
         check=one_of(SCHEDULERS), stored=SEARCH),
    Flag("rungs", "search", "moasha: epochs at which trainings are judged, e.g. 1,3 (default 1, eta, eta^2, ... "
         "below the budget's epochs)", None, convert=lambda t: parse_ints(t, "--rungs") if t is not None else None,
         stored=SEARCH),
    Flag("reduction_factor", "search", "moasha: eta, the top 1/eta of a rung goes on (default {default:g})", 3.0,
         float, check=_reduction_factor, stored=SEARCH),
    Flag("strategy", "search", "standalone: every architecture is proxy-trained on its own; oneshot: "
         "--supernets weight-sharing supernets are trained once and every architecture is scored with the weights "
         "it inherits, in seconds (search.oneshot) (default {default})", "standalone", check=one_of(STRATEGIES),
         stored=SEARCH),
    Flag("supernets", "search", "oneshot: supernets trained under different seeds; each architecture is scored on "
         "every one, and the spread between them is its noise (default {default})", 3, int, check=at_least(2),
         stored=SEARCH),
    Flag("supernet_epochs", "search", "oneshot: epochs each supernet trains, on the budget's images, batches "
         "and learning rate (default {default})", 10, int, check=at_least(1), stored=SEARCH),
    Flag("path_sampling", "search", f"oneshot: the path each supernet step trains: {', '.join(PATH_SAMPLINGS)} "
         "(trainer.supernet.PathSampler; default {default})", "fair", check=one_of(PATH_SAMPLINGS), stored=SEARCH),
    Flag("kernel_sets", "search", "MCA kernel-scale menu (default {default})", DEFAULT_KERNEL_SETS,
         convert=parse_kernel_sets, stored=SEARCH),
    Flag("ratios", "search", "ghost ratio menu (default {default})", DEFAULT_RATIOS,
         convert=lambda t: parse_ints(t, "--ratios"), stored=SEARCH),
    Flag("width", "search", "width multiplier of every sampled net (default {default:g})", 1.0, float,
         stored=SEARCH),
    Flag("backbone", "search", f"network whose blocks get MCA: {', '.join(CIFAR_BACKBONES)} (default {{default}})",
         "ghostnet", check=one_of(CIFAR_BACKBONES, {
             "resnet50": " (resnet50 is the paper's ImageNet network; this search trains on CIFAR-10)"}),
         stored=SEARCH),
    Flag("latency_table", "search", "predict latency_ms from this per-block table (python -m "
         "runtime.latency_table) instead of measuring it in the trials", None, convert=_path, metavar="FILE"),
    # -- training: the budget ------------------------------------------------------------------
    Flag("budget", "training", f"trainer preset {'|'.join(BUDGET_NAMES)} (default gpu with CUDA, else cpu)",
         lambda: "gpu" if _cuda() else "cpu", check=one_of(BUDGET_NAMES), stored=SEARCH),
    Flag("epochs", "training", "override the budget's epochs", None, int, check=positive, stored=BUDGET),
    Flag("train_size", "training", "override the budget's training-subset size", None, int, check=positive,
         stored=BUDGET),
    Flag("val_size", "training", "validation images, stratified, carved from the training batches (default: the "
         "larger of 10%% of them and 5000, at most 20%% of them: 5000 on CIFAR-10, 1034 on the 5170-image sample)",
         None, int, check=at_least(1), stored=SEARCH),
    Flag("batch_size", "training", "override the budget's batch size", None, int, check=positive, stored=BUDGET),
    Flag("lr", "training", "override the budget's peak learning rate", None, float, check=positive,
         stored=BUDGET),
    Flag("proxy_width", "training", "train a copy at this fraction of each architecture's width for the accuracy "
         "axis (GhostNet; MACs, params and latency stay the real architecture's)", None, float,
         check=_proxy_width, stored=BUDGET),
    Flag("epoch_images", "training", "images per epoch, drawn afresh each epoch from the whole training split",
         None, int, check=positive, stored=BUDGET),
    Flag("bn_images", "training", "training images BatchNorm statistics are re-estimated on before each "
         "validation or score (default: the budget's 512; --strategy oneshot 2048, which doubles a supernet's "
         "agreement with itself: docs/oneshot.md); 0 = off", None, int, check=at_least(0), stored=BUDGET),
    Flag("layout", "training", "memory layout the proxies train in: auto times a few training steps of each "
         "layout at this budget on this machine and takes the faster (cached per machine and budget), or "
         "channels_last, nchw (default {default})", "auto", check=one_of(LAYOUT_CHOICES), stored=SEARCH),
    Flag("data_dir", "training", "CIFAR-10 python batches or image folders (default $CIFAR10_DIR, else ./data)",
         lambda: os.environ.get("CIFAR10_DIR") or "./data", convert=_path),
    Flag("download", "training", "download CIFAR-10 with torchvision if it is missing", False, kind="switch"),
    # -- run directory -------------------------------------------------------------------------
    Flag("name", "run directory", "run name (default search-<date>-<time>)",
         lambda: datetime.now().strftime("search-%Y%m%d-%H%M%S"), check=_plain_name),
    Flag("storage_path", "run directory", "folder holding run directories (default {default})", "./runs",
         convert=_path),
    Flag("resume", "run directory", "continue the run --name after an interruption", False, kind="switch"),
    Flag("report", "run directory", "write report.html at the end (default on)", True, kind="bool"),
    # -- execution -----------------------------------------------------------------------------
    Flag("address", "execution", "join a Ray cluster (e.g. auto or host:6379); default: start a local one"),
    Flag("cpus_per_trial", "execution", "CPUs reserved by each trial (also its torch threads; default {default:g})",
         1.0, float, check=positive),
    Flag("gpus_per_trial", "execution", "GPUs per trial (default 1 with CUDA, else 0)",
         _default_gpus, float, check=_non_negative),
    Flag("max_concurrent", "execution", "trials running at once (default: as many as the resources allow)",
         None, int, check=at_least(1)),
    Flag("latency_backend", "execution", f"runtime latency_ms is timed in: {' or '.join(LATENCY_BACKENDS)} "
         "(default onnxruntime on the CPU, as deployed; torch on CUDA; on --resume: the run's)", None,
         check=lambda v: None if v is None else one_of(LATENCY_BACKENDS)(v), metavar="NAME"),
    Flag("latency_threads", "execution", "CPU threads for the batch-1 latency measurement (default {default})",
         1, int, check=at_least(1)),
    Flag("max_restarts", "execution", "times a training is restarted after its node, worker or actor was lost "
         "(from its last finished epoch); then it is recorded as lost (default {default})", 3, int,
         check=at_least(0)),
    Flag("trial_timeout", "execution", "seconds a training may run before it counts as lost and restarts "
         "(default: derived from the run's measured epoch times, at least 600)", None, float, check=positive,
         metavar="S"),
    Flag("dashboard", "execution", "start the Ray dashboard with a local cluster (default on)", True, kind="bool"),
    Flag("dashboard_port", "execution", "port of the local Ray dashboard on 127.0.0.1 (default: 8265, or the "
         "next free port where another search holds it; a named port that is taken is refused)", None, int,
         check=lambda v: None if v is None or 1 <= v <= 65535 else f"{FLAG} must be a TCP port (1-65535), got {v}",
         metavar="PORT"),
)
BY_NAME = {f.name: f for f in FLAGS}
SEARCH_SETTINGS = tuple(f.name for f in FLAGS if f.stored == SEARCH)
MEASURE_SETTINGS = tuple(f.name for f in FLAGS if f.stored == MEASURE)
OVERRIDE_FLAGS = tuple(f.name for f in FLAGS if f.stored == BUDGET)
# Runs created before the measure settings existed trained every architecture once.
LEGACY_MEASURE = {"baseline_seeds": 1, "repeats": 1}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m search.run",
        description=(
            "Search Selective-MCA GhostNets on CIFAR-10: Optuna samples architectures, "
            "Ray Tune trains each briefly, the Pareto front of accuracy against MACs and "
            "latency is written to <storage-path>/<name>/report.html."
        ),
        allow_abbrev=False,  # `--tri 5` is not `--trials 5`: explicit flags must be spelled out
        argument_default=argparse.SUPPRESS,  # the namespace holds exactly the flags the user gave
    )
    groups: dict[str, Any] = {}
    for f in FLAGS:
        group = groups.get(f.group) or groups.setdefault(f.group, p.add_argument_group(f.group))
        shown = f.default if not callable(f.default) else None
        text = f.help.format(default=shown) if shown is not None else f.help
        if f.kind == "bool":
            group.add_argument(f.flag, action=argparse.BooleanOptionalAction, help=text)
        elif f.kind == "switch":
            group.add_argument(f.flag, action="store_true", help=text)
        else:
            group.add_argument(f.flag, type=f.type, help=text, metavar=f.metavar)
    return p


@dataclass(frozen=True)
class Options:
    """The settings of one `search.run` call, resolved and checked; immutable (`replace` makes a changed copy)."""

    trials: int
    objectives: tuple[str, ...]
    sampler: str
    seed: int
    population_size: int
    max_macs: float | None
    baselines: bool
    baseline_seeds: int
    repeats: int
    scheduler: str
    strategy: str
    supernets: int
    supernet_epochs: int
    path_sampling: str
    rungs: tuple[int, ...] | None  # None: search.moasha.default_rungs of the budget
    reduction_factor: float
    kernel_sets: tuple[tuple[int, ...], ...]
    ratios: tuple[int, ...]
    width: float
    backbone: str
    latency_table: Path | None
    budget: str
    layout: str  # "auto": measured before the first training (trainer.layout)
    val_size: int | None  # None until search.run.prepare knows the data's size
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
    latency_backend: str | None  # None: the device's default, or the resumed run's (search.latency.run_backend)
    latency_threads: int
    max_restarts: int
    trial_timeout: float | None  # None: derived from the run's epoch times (search.ray_runner.Watchdog)
    dashboard: bool
    dashboard_port: int | None  # None: the first free port from 8265 (search.ray_runner.dashboard_ports)
    budget_overrides: dict[str, Any] = field(default_factory=dict)
    explicit: frozenset[str] = frozenset()  # the flags the user gave

    @property
    def directions(self) -> tuple[Direction, ...]:
        return tuple(OBJECTIVES[o].direction for o in self.objectives)

    @property
    def run_path(self) -> Path:
        return self.storage_path / self.name

    @property
    def execution(self):
        """The execution flags as `search.ray_runner.Execution`."""
        from search.ray_runner import Execution

        return Execution(address=self.address, cpus_per_trial=self.cpus_per_trial,
                         gpus_per_trial=self.gpus_per_trial, max_concurrent=self.max_concurrent,
                         latency_threads=self.latency_threads, max_restarts=self.max_restarts,
                         trial_timeout=self.trial_timeout, dashboard=self.dashboard,
                         dashboard_port=self.dashboard_port)

    def search_settings(self) -> dict[str, Any]:
        """The settings run.json keeps, in its JSON form."""
        out = {k: _json_form(getattr(self, k)) for k in (*SEARCH_SETTINGS, *MEASURE_SETTINGS)}
        return {**out, "budget_overrides": dict(self.budget_overrides)}


def _json_form(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_form(v) for v in value]
    return value


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse and check flags; raises UserError with a one-line message."""
    given = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    for f in FLAGS:
        value = given[f.name] if f.name in given else f.default_value()
        value = f.convert(value) if f.convert is not None else value
        problem = f.check(value) if f.check is not None else None
        if problem:
            raise UserError(problem.replace(FLAG, f.flag, 1))
        values[f.name] = value
    if values["scheduler"] == "fifo" and ({"rungs", "reduction_factor"} & set(given)):
        raise UserError("--rungs and --reduction-factor apply to --scheduler moasha only")
    if not values["resume"]:  # a resumed run's strategy is its stored one: checked in merge_stored
        values.update(_strategy_settings(values, set(given)))
        if values["strategy"] == "oneshot" and "bn_images" not in given:
            values["bn_images"] = ONESHOT_BN_IMAGES  # in run.json's budget_settings: a resume keeps what it began with
    if values["resume"] and "name" not in given:
        raise UserError("--resume needs --name of the run to continue")
    overrides = {k: v for k, v in ((k, values.pop(k)) for k in OVERRIDE_FLAGS) if v is not None}
    return Options(**values, budget_overrides=overrides, explicit=frozenset(given))


def _strategy_settings(values: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """Flags that cannot go with the strategy are one line; one-shot scores every preset once per supernet."""
    oneshot_only = {"supernets", "supernet_epochs", "path_sampling"} & given
    if values["strategy"] == "standalone" and oneshot_only:
        raise UserError(f"{', '.join('--' + n.replace('_', '-') for n in sorted(oneshot_only))} "
                        "apply to --strategy oneshot only")
    if values["strategy"] != "oneshot":
        return {}
    clash = {"repeats", "baseline_seeds"} & given
    if clash or values["scheduler"] != "fifo":
        what = ", ".join(sorted("--" + n.replace("_", "-") for n in clash)) or "--scheduler moasha"
        raise UserError(f"{what} does not apply to --strategy oneshot: every architecture is scored once on "
                        "each of --supernets supernets, in seconds (no seeds to repeat, no epochs to stop)")
    return {"baseline_seeds": values["supernets"]}  # a preset, like every architecture, once per supernet


def _stored_value(key: str, value: Any) -> Any:
    """A run.json value in the form Options holds it."""
    if key == "kernel_sets":
        return tuple(tuple(k) for k in value)
    if key == "baselines" and isinstance(value, list):  # runs written before 0.2 stored the preset names
        return bool(value)
    return tuple(value) if isinstance(value, list) else value


def merge_stored(opts: Options, stored: dict[str, Any]) -> Options:
    """On --resume the stored settings win: `--name N --resume` alone continues a run.

    Repeating a stored flag with the same value is fine; a different value for
    a setting that defines what is searched is a user error.  `--data-dir`
    and `--trials` may change (the data moved; the search should go further).
    """
    from trainer.budget import run_budget

    changes: dict[str, Any] = {}
    for key in SEARCH_SETTINGS:
        if key not in stored:
            continue
        value = _stored_value(key, stored[key])
        if key in opts.explicit and getattr(opts, key) != value:
            raise _created_with(opts, key, stored[key])
        changes[key] = value
    if "budget_overrides" in stored:
        budget = run_budget(stored)
        for flag in OVERRIDE_FLAGS:
            if flag in opts.explicit and opts.budget_overrides.get(flag) != getattr(budget, flag):
                raise _created_with(opts, flag, getattr(budget, flag))
        changes["budget_overrides"] = dict(stored["budget_overrides"])
    if "data_dir" not in opts.explicit and stored.get("data_dir"):
        changes["data_dir"] = Path(stored["data_dir"])
    if "trials" not in opts.explicit:
        changes["trials"] = int(stored.get("trials", opts.trials))
    for key in MEASURE_SETTINGS:
        if key not in opts.explicit:
            changes[key] = int(stored.get(key, LEGACY_MEASURE[key]))
    merged = replace(opts, **changes)
    return replace(merged, **_strategy_settings(vars(merged), set(opts.explicit)))


def _created_with(opts: Options, key: str, value: Any) -> UserError:
    return UserError(f"run {opts.name!r} was created with {key}={value!r}; "
                     f"drop --{key.replace('_', '-')} to resume it, or start a new --name")


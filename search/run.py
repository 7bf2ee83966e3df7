"""`python -m search.run`: the search service's main job.

Validates everything a user can get wrong first (flags, data, run directory),
then starts or joins Ray, and lets Ray Tune run trials that Optuna's sampler
proposes. Ends with the Pareto front, the run directory and the report.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

from cli_kit import UserError, run_main
from record.rundir import RunDir, RunDirError
from search.options import Options, merge_stored, parse_args

PROG = "search.run"
INTERRUPTED = "interrupted before any training started"


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(lambda a: run(parse_args(a)), argv, prog=PROG, interrupted=INTERRUPTED)


@dataclass(frozen=True)
class Plan:
    """Everything `prepare` settled before anything is written or started; `stored`: the run resumed."""

    opts: Options
    space: Any  # space.SearchSpace
    budget: Any  # trainer.budget.Budget
    latency: Any  # search.latency.LatencySetup
    sizes: dict[str, int]  # the images one training sees: {"pool", "train", "val"}
    stored: RunDir | None = None
    layout: Any = None  # trainer.layout.LayoutChoice of a new run (settled by `with_layout`)
    data: Any = None  # trainer.data.Cifar10, for the layout measurement


def prepare(opts: Options) -> Plan:
    """Check flags, data and run directory before anything is written or started.

    Also settles the validation size (`--val-size`, else the data's default;
    runs created before it existed keep their 10 %-per-class split).
    """
    from trainer.data import load_cifar10
    from trainer.proxy import proxy_split

    stored = _open_stored(opts)
    try:
        if stored is not None:
            opts = merge_stored(opts, stored.meta)
        space = _search_space(opts)
        data = load_cifar10(opts.data_dir, download=opts.download)  # DataError is a UserError
        pool = len(data.train_labels)
        opts = _settle_val_size(opts, stored, pool)
        budget = _budget(opts, stored)
        _check_rungs(opts, budget.epochs)
        latency = _latency_setup(opts, space, stored)
        train_idx, val_idx = proxy_split(data, budget, opts.seed)
    except BaseException:
        if stored is not None:
            stored.close()
        raise
    return Plan(opts, space, budget, latency, {"pool": pool, "train": len(train_idx), "val": len(val_idx)}, stored,
                data=data)


def _open_stored(opts: Options) -> RunDir | None:
    if opts.resume:
        rundir = RunDir.open(opts.run_path)
        try:
            _repair_study(rundir)
        except BaseException:
            rundir.close()
            raise
        return rundir
    if opts.run_path.exists() and any(opts.run_path.iterdir()):
        raise UserError(f"run directory {opts.run_path} already exists; use --resume to continue it or another --name")
    return None


def _repair_study(rundir: RunDir) -> None:
    """A damaged study.db set aside (search.study.repair_study), said in the terminal and in events.log."""
    from record.rundir import STUDY_FILE, append_event
    from search.study import repair_study

    note = repair_study(rundir.path / STUDY_FILE)
    if note is not None:
        print(note, flush=True)
        append_event(rundir.events_path, note)


def _search_space(opts: Options):
    from space import SearchSpace

    try:
        return SearchSpace(kernel_sets=opts.kernel_sets, ratios=opts.ratios, width=opts.width, backbone=opts.backbone)
    except ValueError as exc:
        raise UserError(f"bad search space: {exc}") from None


def _settle_val_size(opts: Options, stored: RunDir | None, pool: int) -> Options:
    """`--val-size`, else the data's default; a run from before --val-size keeps its 10 %-per-class split."""
    from trainer.data import default_val_size

    if stored is not None and "val_size" not in stored.meta:
        if "val_size" in opts.explicit:
            raise UserError(f"run {opts.name!r} was created before --val-size (10% of each class validates); "
                            "drop --val-size to resume it, or start a new --name")
        return opts
    val_size = default_val_size(pool) if opts.val_size is None else opts.val_size
    if val_size >= pool:
        raise UserError(f"--val-size {val_size} leaves no training images: the data at "
                        f"{opts.data_dir} has {pool} (use at most {pool // 2})")
    return replace(opts, val_size=val_size)


def _budget(opts: Options, stored: RunDir | None):
    """The preset with the flags' overrides (a new run), or what run.json says (a resumed one)."""
    from trainer.budget import get_budget, run_budget, run_split

    try:
        if stored is None:
            budget = get_budget(opts.budget, **opts.budget_overrides, val_size=opts.val_size, val_fraction=None)
        else:
            budget = run_budget(stored.meta, **run_split(stored.meta))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if budget.proxy_width != 1.0 and opts.backbone != "ghostnet":
        raise UserError(f"--proxy-width trains a narrower GhostNet; backbone {opts.backbone} has no width "
                        "multiplier (use --proxy-width 1)")
    return budget


def with_layout(plan: Plan) -> Plan:
    """A new run's training layout: `--layout` as given, or measured on this machine (trainer.layout).

    Called once Ray has accepted a training's request (a refused request costs
    no measurement).  The budget's `channels_last` carries the choice into
    run.json's budget_settings, so a resumed run keeps the layout it started with.
    """
    from space import presets_for
    from trainer.layout import LayoutChoice, layout_for

    opts = plan.opts
    if opts.layout != "auto":
        choice = LayoutChoice(opts.layout, {}, 0, 0, opts.execution.threads, opts.execution.device, ())
    else:
        presets = {n: c for n, c in presets_for(opts.backbone).items() if n in ("ghostnet", "ghost", "all_mca")}
        choice = layout_for(list(presets.values()), plan.data, plan.budget, opts.execution.device,
                            threads=opts.execution.threads, names=list(presets))
    return replace(plan, budget=choice.apply(plan.budget), layout=choice)


def _check_rungs(opts: Options, epochs: int) -> None:
    """--scheduler moasha needs accuracy among the objectives and a rung it can act on."""
    if opts.scheduler != "moasha":
        return
    if "val_acc" not in opts.objectives:
        raise UserError("--scheduler moasha ranks trainings by their accuracy at each rung: "
                        "include val_acc in --objectives")
    rungs = _rung_epochs(opts, epochs)
    if any(r < 1 for r in rungs) or any(r > epochs for r in rungs):
        raise UserError(f"--rungs must be epoch counts from 1 to the budget's {epochs} epochs, got "
                        f"{','.join(map(str, rungs)) or 'none'}")
    if not any(r < epochs for r in rungs):
        raise UserError(f"--scheduler moasha needs a rung below the budget's {epochs} epochs "
                        "(a training is finished at its last epoch anyway); raise --epochs or lower --rungs")


def _rung_epochs(opts: Options, epochs: int) -> tuple[int, ...]:
    """--rungs, else ASHA's geometric rungs below the budget's `epochs`."""
    from search.moasha import default_rungs

    return opts.rungs if opts.rungs is not None else default_rungs(epochs, opts.reduction_factor)


def make_scheduler(opts: Options, budget, rundir: RunDir):
    """MOASHA with its rung records rebuilt from the run's learning curves (None for fifo)."""
    if opts.scheduler != "moasha":
        return None
    from search.moasha import MOASHA, Rungs

    rungs = Rungs.from_run(_rung_epochs(opts, budget.epochs), opts.reduction_factor, list(opts.objectives),
                           list(opts.directions), rundir.table.trained(), rundir.curves.rows)
    return MOASHA(rungs, list(opts.objectives), budget.epochs, stoppable=lambda config: bool(config.get("stoppable")))


def _latency_setup(opts: Options, space, stored: RunDir | None):
    """Table checked, or isolated measurement chosen, before Ray starts or anything is written."""
    from search.latency import setup_latency

    return setup_latency(opts.latency_table, space, baselines=opts.baselines, device=opts.execution.device,
                         latency_threads=opts.latency_threads, stored=stored.meta if stored else None,
                         backend=opts.latency_backend)


def create_run(plan: Plan) -> RunDir:
    from space import presets_for

    opts = plan.opts
    return RunDir.create(opts.run_path, {
        "name": opts.name,
        **opts.search_settings(),
        "directions": list(opts.directions),
        "trials": opts.trials,
        "search_space": plan.space.to_dict(),
        "baseline_presets": list(presets_for(opts.backbone)) if opts.baselines else [],
        "data_dir": str(opts.data_dir),
        **plan.latency.run_meta(),
        # Every field, so a resumed run trains as it started even after the presets change.
        "budget_settings": dataclasses.asdict(plan.budget),
        "layout_choice": plan.layout.to_meta() if plan.layout is not None else None,
    }, n_mca=plan.space.n_blocks)


def run(opts: Options) -> int:
    plan = prepare(opts)
    rundir = plan.stored
    try:
        with ray_for(plan):
            if rundir is None:
                plan = with_layout(plan)
                rundir = create_run(plan)
            return search(plan, rundir)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (cli_kit.Interrupted): say how far, and how to go on
        if rundir is None:
            raise
        from search.ray_runner import interrupted

        raise interrupted(exc, len(rundir.table.trained()), plan.opts.trials, resume_command(plan.opts)) from None
    except RunDirError as exc:  # a full disk: how far it got, and the command that continues
        from search.diskguard import is_full_disk, resumable

        if rundir is None or not is_full_disk(exc):
            raise
        raise resumable(exc, len(rundir.table.trained()), plan.opts.trials, resume_command(plan.opts)) from None
    finally:
        if rundir is not None:
            rundir.close()


def resume_command(opts: Options) -> str:
    """The command that continues this run: the settings come back from its run.json; where it runs and
    what it writes (`--storage-path`, `--address`, `--no-report`, ...) come back from this command line."""
    import shlex

    from search.options import BY_NAME

    again = ["python", "-m", PROG, "--name", opts.name]
    for name in sorted(opts.explicit, key=list(BY_NAME).index):
        flag = BY_NAME[name]
        if flag.group not in ("execution", "run directory") or name in ("name", "resume"):
            continue
        value = getattr(opts, name)
        if flag.kind == "bool":
            again.append(flag.flag if value else "--no-" + flag.flag[2:])
        else:
            again += [flag.flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join([*again, "--resume"])


@contextlib.contextmanager
def ray_for(plan: Plan) -> Iterator[None]:
    """Ray started or joined, and one training's request checked against its nodes, before anything
    is written; a resumed run with nothing left to train starts no Ray."""
    stored = plan.stored
    if stored is not None and len(stored.table.trained()) >= plan.opts.trials:
        yield
        return
    from search.ray_runner import check_request, ray_session

    with ray_session(plan.opts.execution):
        check_request(plan.opts.execution)
        yield


@functools.lru_cache(maxsize=None)
def _cost(arch) -> tuple[int, int]:
    from space import build_model, count_macs, count_params

    model = build_model(arch)
    return count_macs(model), count_params(model)


def _macs(arch) -> int:
    return _cost(arch)[0]


def search(plan: Plan, rundir: RunDir) -> int:
    """The search in named steps: ledger, study, searcher, Ray, Tune, summary."""
    from search.ledger import Ledger
    from search.progress import TableWriter
    from search.ray_runner import concurrent_trainings, fit, make_tuner, trial_context

    opts, budget, sizes = plan.opts, plan.budget, plan.sizes
    attempt = int(rundir.meta.get("attempts", 0)) + 1
    # data_sizes: the images one training sees (the binomial term of val_acc's SE needs "val").
    rundir.update_meta(attempts=attempt, trials=opts.trials, device=opts.execution.device,
                       data_dir=str(opts.data_dir), baseline_seeds=opts.baseline_seeds, repeats=opts.repeats,
                       data_sizes=sizes, trained_as=budget.trained_as())
    ledger = Ledger.from_rows(rundir.table.rows, list(opts.objectives), list(opts.directions),
                              n_val=sizes["val"], run_seed=opts.seed)
    remaining = opts.trials - ledger.trained
    print(f"run directory: {rundir.path}")
    if remaining <= 0:
        print(f"all {opts.trials} trials are already finished")
        return finish(opts, rundir, ledger)
    scheduler = make_scheduler(opts, budget, rundir)
    if scheduler is not None:
        rundir.update_meta(rung_epochs=list(scheduler.rungs.epochs))  # the report marks them
    stopped = scheduler.stopped.get if scheduler is not None else None
    writer = TableWriter(rundir.table, ledger, opts.trials, cost=_cost, curves=rundir.curves, stopped=stopped)
    searcher, exhausted = make_searcher(plan, rundir, ledger, writer, attempt, stopped)
    # Settled once: the Tuner's limit and the start-up lines are the same number.
    execution = replace(opts.execution, max_concurrent=concurrent_trainings(opts.execution),
                        latency_backend=plan.latency.backend)
    ctx = trial_context(execution, opts.data_dir, budget, opts.seed, plan.latency.table)
    if opts.strategy == "oneshot":
        from search.oneshot import train_supernets

        ctx = replace(ctx, oneshot={"files": train_supernets(plan, rundir, execution, attempt)})
    _print_start(plan, scheduler, remaining, execution.max_concurrent)
    try:
        fit(lambda: make_tuner(execution, ctx, name=f"attempt-{attempt}", storage_path=rundir.ray_dir,
                               callbacks=[writer], searcher=searcher, trials=remaining, scheduler=scheduler,
                               events=rundir.events_path))
    finally:
        close_study(plan, rundir, ledger)
    if exhausted:
        print("the sampler kept proposing architectures already evaluated or above --max-macs; "
              "the search space looks exhausted", file=sys.stderr)
    return finish(opts, rundir, ledger)


def close_study(plan: Plan, rundir: RunDir, ledger) -> None:
    """Architectures whose repeats the budget cut short are told their mean so far; trainings a Ctrl-C
    dropped are closed (FAIL), so optuna-dashboard shows no trial running in a stopped search.  On a full
    disk that waits for the resume, which reconciles the study with trials.csv first."""
    from search.diskguard import is_full_disk
    from search.searcher import reconcile_study

    try:
        reconcile_study(rundir.study_url, ledger, plan.space, _macs, plan.opts.max_macs)
    except Exception as exc:
        if not is_full_disk(exc):
            raise


def _print_start(plan: Plan, scheduler, remaining: int, concurrent: int) -> None:
    """What is about to run, and on the CPU what the calibration says of it and how long it takes."""
    from cli_kit import wrap

    opts, budget, sizes = plan.opts, plan.budget, plan.sizes
    if scheduler is not None:
        print(f"scheduler: moasha, rungs at epochs {','.join(map(str, scheduler.rungs.epochs))} of "
              f"{budget.epochs}, eta {opts.reduction_factor:g}", flush=True)
    print(f"searching: {remaining} trials to go of {opts.trials}, sampler {opts.sampler}, "
          f"objectives {','.join(opts.objectives)}, backbone {opts.backbone}, budget {opts.budget}, "
          f"up to {concurrent} at once;", flush=True)
    if opts.strategy == "oneshot":
        print(f"  {sizes['train']} training / {sizes['val']} validation images, {opts.supernets} scores per "
              f"architecture (one per supernet)", flush=True)
    else:
        print(f"  {sizes['train']} training / {sizes['val']} validation images, "
              f"baselines x{opts.baseline_seeds if opts.baselines else 0} seeds, repeats {opts.repeats}", flush=True)
    print(wrap(f"latency_ms: {plan.latency.source}{plan.latency.note}"), flush=True)
    if plan.layout is not None:
        print(wrap(plan.layout.line()), flush=True)
    if opts.strategy == "oneshot":
        from search.oneshot import oneshot_notes

        for line in oneshot_notes(plan):
            print(wrap(line), flush=True)
    elif opts.execution.device == "cpu":
        from search.oneshot import ONESHOT_CPU
        from trainer.budget import CPU_FIDELITY

        for line in CPU_FIDELITY.start_lines(budget, remaining, concurrent, sizes["train"], str(opts.run_path)):
            print(wrap(line), flush=True)
        print(wrap(ONESHOT_CPU.standalone_line(CPU_FIDELITY)), flush=True)


def make_searcher(plan: Plan, rundir: RunDir, ledger, writer, attempt: int, stopped=None):
    """Optuna's sampler over the run's durable study, behind our deduplicating searcher."""
    import optuna

    from search.searcher import (ArchSearcher, Handout, Hooks, make_optuna_search, make_sampler, point_of,
                                 reconcile_study)
    from search.study import open_study
    from space import presets_for

    opts, space = plan.opts, plan.space
    objectives, directions = list(opts.objectives), list(opts.directions)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    open_study(rundir.study_url, objectives, directions)
    reconcile_study(rundir.study_url, ledger, space, _macs, opts.max_macs)
    # A resumed run draws a fresh random stream: replaying the first attempt's
    # start-up samples would only produce duplicates.
    sampler = make_sampler(opts.sampler, opts.seed + attempt - 1, opts.population_size)
    presets = list(presets_for(opts.backbone).values()) if opts.baselines else []
    if opts.strategy == "oneshot":  # a preset outside the menu (s=1) is in no supernet: nothing to score it with
        presets = [cfg for cfg in presets if point_of(space, cfg) is not None]
    baselines = [cfg for cfg in presets if cfg.key not in ledger]
    points = [p for p in (point_of(space, cfg) for cfg in baselines) if p is not None]
    inner = make_optuna_search(space, objectives, directions, sampler, rundir.study_url, points,
                               max_macs=opts.max_macs, macs_of=_macs)

    def on_infeasible(arch, macs: int) -> None:
        writer.record(arch, "infeasible", {"macs": macs, "params": _cost(arch)[1]},
                      error=f"macs {macs} above --max-macs {opts.max_macs:g}")

    exhausted: list[bool] = []
    rules = Handout(objectives, directions, _macs, opts.max_macs, seed=opts.seed, repeats=opts.repeats,
                    baseline_keys=[cfg.key for cfg in presets], baseline_seeds=opts.baseline_seeds,
                    every=opts.supernets if opts.strategy == "oneshot" else 1)
    hooks = Hooks(on_infeasible, on_exhausted=lambda: exhausted.append(True), stopped=stopped)
    searcher = ArchSearcher(inner, space, ledger, rules, hooks, storage_url=rundir.study_url,
                            references=[cfg for cfg in baselines if point_of(space, cfg) is None])
    return searcher, exhausted


def finish(opts: Options, rundir: RunDir, ledger) -> int:
    """The summary (from the ledger in memory) and the report; a report that fails is one line, not an exit."""
    counts: dict[str, int] = {}
    for row in ledger.rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    ok = counts.get("ok", 0)
    print(f"\nfinished: {ledger.trained}/{opts.trials} trials "
          + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if ok:
        print_front(opts, ledger, ok)
    print(f"\nrun directory: {rundir.path}")
    if opts.report and ok:
        write_report(rundir)
    print(f"report command: python -m analysis.report {rundir.path} -o report.html")
    print(f"pick an architecture: python -m analysis.select {rundir.path} --max-macs <N> -o best.json")
    return 0


def print_front(opts: Options, ledger, ok: int) -> None:
    """The front on means over seeds: val_acc ± its standard error, the run's noise floor, and the front
    members this run cannot tell apart (`record.stats.cheaper_within_noise`)."""
    import pandas as pd

    from record.objectives import OBJECTIVES
    from record.stats import Estimate, describe_noise

    front = pd.DataFrame(ledger.front_rows())
    for col in ("number", *opts.objectives):
        front[col] = pd.to_numeric(front[col])
    front = front.sort_values(["macs" if "macs" in opts.objectives else opts.objectives[0], "number"])
    n_archs = sum(1 for e in ledger.entries.values() if e.values is not None)
    shown = front.assign(val_acc=[Estimate(m, se, n).show() for m, se, n in
                                  zip(front["val_acc"], front["val_acc_se"], front["n_seeds"])],
                         seeds=front["n_seeds"])
    costs = [o for o in opts.objectives if o != "val_acc"]
    for o in costs:
        shown[o] = [OBJECTIVES[o].show(float(v)) for v in shown[o]]
    print(f"Pareto front ({len(front)} of {n_archs} architectures, {ok} ok trainings; "
          "val_acc = mean over seeds ± standard error):")
    print(shown[["number", "preset", "val_acc", "seeds", *costs, "key"]].to_string(index=False))
    means = [float(v) for v in front["val_acc"]]
    print("noise: " + describe_noise(ledger.sd_seed, ledger.seeded_archs, ledger.n_val,
                                     sum(means) / len(means) if means else None))
    if "val_acc" in opts.objectives and costs:
        print_within_noise(front, costs)


def print_within_noise(front, costs: list[str]) -> None:
    """Front members not significantly more accurate than a cheaper one (|Δval_acc| < 2·SE)."""
    from record.stats import Estimate, cheaper_within_noise

    items = [(int(r["number"]), Estimate(r["val_acc"], r["val_acc_se"], int(r["n_seeds"])),
              [float(r[c]) for c in costs]) for _, r in front.iterrows()]
    same = cheaper_within_noise(items)
    est = {k: e for k, e, _ in items}
    if not same:
        print("within noise: none — every front member is significantly more accurate than the cheaper ones")
        return
    print("within noise (|Δval_acc| < 2·SE: the cheaper member is as good as this run can tell):")
    for k, cheaper in same.items():
        print(f"  #{k} ({est[k].show()}) is not significantly more accurate than cheaper "
              f"#{cheaper} ({est[cheaper].show()})")


def write_report(rundir: RunDir) -> None:
    """The final report: `analysis` draws it (the imports of `analysis` in `search` serve its printouts)."""
    from analysis.report import write_report as write

    try:
        write([rundir.path], rundir.report_path)
    except Exception as exc:  # the search's results are safe on disk; say why the page is missing
        print(f"{PROG}: warning: report not written ({type(exc).__name__}: {' '.join(str(exc).split())}); "
              f"retry with python -m analysis.report {rundir.path}", file=sys.stderr)
        return
    print(f"report: {rundir.report_path}")


if __name__ == "__main__":
    sys.exit(main())

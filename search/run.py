"""`python -m search.run`: the search service's main job.

Validates everything a user can get wrong first (flags, data, run directory),
then starts or joins Ray, and lets Ray Tune run trials that Optuna's sampler
proposes. Ends with the Pareto front, the run directory and the report.
"""
from __future__ import annotations

import dataclasses

import functools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from record.rundir import RunDir
from search.options import Options, merge_stored, parse_args
from space.cli import UserError, run_main

PROG = "search.run"
INTERRUPTED = "interrupted; finished trials are saved — continue with --resume"


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(lambda a: run(parse_args(a)), argv, prog=PROG, interrupted=INTERRUPTED)


def prepare(opts: Options) -> tuple[Options, Any, Any, RunDir | None, dict[str, int]]:
    """Check flags, data and run directory before anything is written or started.

    Also settles the validation size (`--val-size`, else the data's default;
    runs created before it existed keep their 10 %-per-class split) and
    returns the image counts a training sees: {"pool", "train", "val"}.
    """
    from space import SearchSpace
    from trainer.budget import get_budget, run_budget
    from trainer.data import default_val_size, load_cifar10
    from trainer.proxy import proxy_split

    stored = None
    if opts.resume:
        stored = RunDir.open(opts.run_path)
    elif opts.run_path.exists() and any(opts.run_path.iterdir()):
        raise UserError(f"run directory {opts.run_path} already exists; use --resume to continue it or another --name")
    try:
        if stored is not None:
            opts = merge_stored(opts, stored.meta)
        try:
            space = SearchSpace(kernel_sets=opts.kernel_sets, ratios=opts.ratios, width=opts.width,
                                backbone=opts.backbone)
        except ValueError as exc:
            raise UserError(f"bad search space: {exc}") from None
        data = load_cifar10(opts.data_dir, download=opts.download)  # DataError is a UserError
        pool = len(data.train_labels)
        legacy_split = stored is not None and "val_size" not in stored.meta
        if legacy_split and "val_size" in opts.explicit:
            raise UserError(f"run {opts.name!r} was created before --val-size (10% of each class validates); "
                            "drop --val-size to resume it, or start a new --name")
        if not legacy_split:
            opts.val_size = default_val_size(pool) if opts.val_size is None else opts.val_size
            if opts.val_size >= pool:
                raise UserError(f"--val-size {opts.val_size} leaves no training images: the data at "
                                f"{opts.data_dir} has {pool} (use at most {pool // 2})")
        try:
            split = {"val_size": opts.val_size, "val_fraction": 0.1 if legacy_split else None}
            budget = get_budget(opts.budget, **opts.budget_overrides, **split) if stored is None else \
                run_budget(stored.meta, **split)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if budget.proxy_width != 1.0 and opts.backbone != "ghostnet":
            raise UserError(f"--proxy-width trains a narrower GhostNet; backbone {opts.backbone} has no width "
                            "multiplier (use --proxy-width 1)")
        _check_rungs(opts, budget.epochs)
        opts.latency = _latency_setup(opts, space, stored)
        train_idx, val_idx = proxy_split(data, budget, opts.seed)
        sizes = {"pool": pool, "train": len(train_idx), "val": len(val_idx)}
    except BaseException:
        if stored is not None:
            stored.close()
        raise
    return opts, space, budget, stored, sizes


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

    return setup_latency(opts.latency_table, space, baselines=opts.baselines,
                         device="cuda" if opts.gpus_per_trial > 0 else "cpu",
                         latency_threads=opts.latency_threads, stored=stored.meta if stored else None)


def create_run(opts: Options, space, budget) -> RunDir:
    from space import presets_for

    return RunDir.create(opts.run_path, {
        "name": opts.name,
        **opts.search_settings(),
        "directions": list(opts.directions),
        "trials": opts.trials,
        "search_space": space.to_dict(),
        "baseline_presets": list(presets_for(opts.backbone)) if opts.baselines else [],
        "data_dir": str(opts.data_dir),
        **opts.latency.run_meta(),
        # Every field, so a resumed run trains as it started even after the presets change.
        "budget_settings": dataclasses.asdict(budget),
    }, n_mca=space.n_blocks)


def run(opts: Options) -> int:
    opts, space, budget, rundir, sizes = prepare(opts)
    rundir = rundir or create_run(opts, space, budget)
    try:
        return search(opts, space, budget, rundir, sizes)
    finally:
        rundir.close()


@functools.lru_cache(maxsize=None)
def _cost(arch) -> tuple[int, int]:
    from space import build_model, count_macs, count_params

    model = build_model(arch)
    return count_macs(model), count_params(model)


def search(opts: Options, space, budget, rundir: RunDir, sizes: dict[str, int]) -> int:
    """The search in named steps: ledger, study, searcher, Ray, Tune, summary."""
    from search.ledger import Ledger
    from search.progress import TableWriter
    from search.searcher import reconcile_study

    attempt = int(rundir.meta.get("attempts", 0)) + 1
    device = "cuda" if opts.gpus_per_trial > 0 else "cpu"
    # data_sizes: the images one training sees (the binomial term of val_acc's SE needs "val").
    rundir.update_meta(attempts=attempt, trials=opts.trials, device=device, data_dir=str(opts.data_dir),
                       baseline_seeds=opts.baseline_seeds, repeats=opts.repeats, data_sizes=sizes,
                       trained_as=budget.trained_as())
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
    searcher, exhausted = make_searcher(opts, space, rundir, ledger, writer, attempt, stopped)
    _init_ray(opts)
    max_concurrent = opts.max_concurrent or _fitting_trials(opts)
    tuner = make_tuner(opts, rundir, searcher, writer, budget, device, remaining, attempt, max_concurrent, scheduler)
    if scheduler is not None:
        print(f"scheduler: moasha, rungs at epochs {','.join(map(str, scheduler.rungs.epochs))} of "
              f"{budget.epochs}, eta {opts.reduction_factor:g}", flush=True)
    print(f"searching: {remaining} trials to go of {opts.trials}, sampler {opts.sampler}, "
          f"objectives {','.join(opts.objectives)}, backbone {opts.backbone}, budget {opts.budget}, "
          f"up to {max_concurrent} at once; {sizes['train']} training / {sizes['val']} validation images, "
          f"baselines x{opts.baseline_seeds if opts.baselines else 0} seeds, repeats {opts.repeats}", flush=True)
    if device == "cpu":
        from trainer.budget import CPU_FIDELITY

        print(CPU_FIDELITY.line(), flush=True)
        print(expected_duration(CPU_FIDELITY, remaining, max_concurrent, budget, sizes["train"]), flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.fit()
    # Architectures whose repeats the budget cut short are told their mean so far.
    reconcile_study(rundir.study_url, ledger, space, lambda a: _cost(a)[0], opts.max_macs)
    if exhausted:
        print("the sampler kept proposing architectures already evaluated or above --max-macs; "
              "the search space looks exhausted", file=sys.stderr)
    return finish(opts, rundir, ledger)


def expected_duration(fidelity, trainings: int, concurrent: int, budget, train_images: int) -> str:
    """The start-up estimate of the whole search, from the calibration's measured CPU seconds per training."""
    hours = fidelity.hours(trainings, concurrent, budget, train_images)
    if hours is None:
        return (f"expected duration: not measured for proxy width x{budget.proxy_width:g} "
                f"(the calibration measured x{fidelity.width:g})")
    return (f"expected duration: about {hours:.1f} h for {trainings} trainings, {concurrent} at a time on one thread "
            f"each ({fidelity.seconds:.0f} CPU-s per training measured for {fidelity.epochs} epoch(s) of "
            f"{fidelity.epoch_images or fidelity.images:,} images, scaled to this run's "
            f"{budget.epochs} x {min(budget.epoch_images or train_images, train_images):,})")


def make_searcher(opts: Options, space, rundir: RunDir, ledger, writer, attempt: int, stopped=None):
    """Optuna's sampler over the run's durable study, behind our deduplicating searcher."""
    import optuna

    from search.progress import trial_row
    from search.searcher import STUDY_NAME, ArchSearcher, make_optuna_search, make_sampler, point_of, reconcile_study
    from space import presets_for

    objectives, directions = list(opts.objectives), list(opts.directions)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=rundir.study_url, study_name=STUDY_NAME, load_if_exists=True, directions=directions)
    reconcile_study(rundir.study_url, ledger, space, lambda a: _cost(a)[0], opts.max_macs)
    # A resumed run draws a fresh random stream: replaying the first attempt's
    # start-up samples would only produce duplicates.
    sampler = make_sampler(opts.sampler, opts.seed + attempt - 1, opts.population_size)
    baselines = [cfg for cfg in presets_for(opts.backbone).values() if opts.baselines and cfg.key not in ledger]
    points = [p for p in (point_of(space, cfg) for cfg in baselines) if p is not None]
    references = [cfg for cfg in baselines if point_of(space, cfg) is None]
    inner = make_optuna_search(space, objectives, directions, sampler, rundir.study_url, points,
                               max_macs=opts.max_macs, macs_of=lambda a: _cost(a)[0])

    def on_infeasible(arch, macs: int) -> None:
        writer.record(arch, "infeasible", {"macs": macs, "params": _cost(arch)[1]},
                      error=f"macs {macs} above --max-macs {opts.max_macs:g}")

    exhausted: list[bool] = []
    baseline_keys = [cfg.key for cfg in presets_for(opts.backbone).values()] if opts.baselines else []
    searcher = ArchSearcher(inner, space, objectives, directions, ledger, lambda a: _cost(a)[0], opts.max_macs,
                            on_infeasible, on_exhausted=lambda: exhausted.append(True), references=references,
                            seed=opts.seed, repeats=opts.repeats, storage_url=rundir.study_url,
                            baseline_keys=baseline_keys, baseline_seeds=opts.baseline_seeds, stopped=stopped)
    return searcher, exhausted


def make_tuner(opts: Options, rundir: RunDir, searcher, writer, budget, device: str, remaining: int,
               attempt: int, max_concurrent: int, scheduler=None):
    """Ray Tune over the trainable, one experiment folder per attempt."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search.trainable import TrialContext, run_trial

    ctx = TrialContext(
        data_dir=str(opts.data_dir),
        budget=budget,
        seed=opts.seed,
        device=device,
        threads=max(1, int(opts.cpus_per_trial)),
        latency_threads=opts.latency_threads,
        latency_table=opts.latency.table,
        fail_keys=tuple(k for k in os.environ.get("GHOSTNAS_FAIL_KEYS", "").split(";") if k),
    )
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                    {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                                    num_samples=remaining,
                                    scheduler=scheduler,
                                    reuse_actors=True),  # a warm worker: torch imported, data loaded
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}",
            storage_path=str(rundir.ray_dir.resolve()),
            callbacks=[writer],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


def _init_ray(opts: Options) -> None:
    import ray

    if ray.is_initialized():  # embedded use (benchmarks): the caller owns the cluster
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Our own progress lines are the output; Tune's console reporter would repeat them.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray").setLevel(logging.WARNING)
    # Workers import space/ and trainer/: make this checkout importable for them too.
    repo = str(Path(__file__).resolve().parents[1])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}}
    if opts.address:
        try:
            ray.init(address=opts.address, runtime_env=runtime_env, log_to_driver=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                    "; if the cluster uses token authentication, set RAY_AUTH_MODE=token")
            raise UserError(f"cannot join the Ray cluster at --address {opts.address}: {exc}{hint}") from None
        print(f"joined Ray cluster at {opts.address}", flush=True)
        return
    ctx = ray.init(
        address="local",  # a new local cluster, even where `ray start` left one running
        include_dashboard=opts.dashboard,
        dashboard_host="127.0.0.1",
        dashboard_port=opts.dashboard_port,
        runtime_env=runtime_env,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    if opts.dashboard and ctx.dashboard_url:
        print(f"Ray dashboard: http://{ctx.dashboard_url}", flush=True)


def _fitting_trials(opts: Options) -> int:
    import ray

    res = ray.cluster_resources()
    fits = [int(res.get("CPU", 1) // opts.cpus_per_trial)]
    if opts.gpus_per_trial > 0:
        fits.append(int(res.get("GPU", 0) // opts.gpus_per_trial))
    return max(1, min(fits))


def finish(opts: Options, rundir: RunDir, ledger) -> int:
    """The summary (from the ledger in memory) and the report; a report that fails is one line, not an exit.

    The front is on means over seeds; val_acc shows ± its standard error, the
    run's noise floor is stated, and front members this run cannot tell apart
    (`record.stats.cheaper_within_noise`) are named.
    """
    import pandas as pd

    from record.objectives import OBJECTIVES
    from record.stats import Estimate, cheaper_within_noise, describe_noise

    counts: dict[str, int] = {}
    for row in ledger.rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    ok = counts.get("ok", 0)
    print(f"\nfinished: {ledger.trained}/{opts.trials} trials "
          + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if ok:
        front = pd.DataFrame(ledger.front_rows())
        for col in ("number", *opts.objectives):
            front[col] = pd.to_numeric(front[col])
        front = front.sort_values(["macs" if "macs" in opts.objectives else opts.objectives[0], "number"])
        n_archs = sum(1 for e in ledger.entries.values() if e.values is not None)
        shown = front.assign(val_acc=[Estimate(m, se, n).show() for m, se, n in
                                      zip(front["val_acc"], front["val_acc_se"], front["n_seeds"])],
                             seeds=front["n_seeds"])
        for o in opts.objectives:
            if o != "val_acc":
                shown[o] = [OBJECTIVES[o].show(float(v)) for v in shown[o]]
        cols = ["number", "preset", "val_acc", "seeds", *[o for o in opts.objectives if o != "val_acc"], "key"]
        print(f"Pareto front ({len(front)} of {n_archs} architectures, {ok} ok trainings; "
              "val_acc = mean over seeds ± standard error):")
        print(shown[cols].to_string(index=False))
        means = [float(v) for v in front["val_acc"]]
        print("noise: " + describe_noise(ledger.sd_seed, ledger.seeded_archs, ledger.n_val,
                                         sum(means) / len(means) if means else None))
        costs = [o for o in opts.objectives if o != "val_acc"]
        if "val_acc" in opts.objectives and costs:
            items = [(int(r["number"]), Estimate(r["val_acc"], r["val_acc_se"], int(r["n_seeds"])),
                      [float(r[c]) for c in costs]) for _, r in front.iterrows()]
            same = cheaper_within_noise(items)
            est = {k: e for k, e, _ in items}
            if same:
                print("within noise (|Δval_acc| < 2·SE: the cheaper member is as good as this run can tell):")
                for k, cheaper in same.items():
                    print(f"  #{k} ({est[k].show()}) is not significantly more accurate than cheaper "
                          f"#{cheaper} ({est[cheaper].show()})")
            else:
                print("within noise: none — every front member is significantly more accurate than the cheaper ones")
    print(f"\nrun directory: {rundir.path}")
    if opts.report and ok:
        write_report(rundir)
    print(f"report command: python -m analysis.report {rundir.path} -o report.html")
    print(f"pick an architecture: python -m analysis.select {rundir.path} --max-macs <N> -o best.json")
    return 0


def write_report(rundir: RunDir) -> None:
    """The one place `search` uses `analysis`: the final report."""
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

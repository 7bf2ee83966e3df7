"""`python -m search.run`: the search service's main job.

Validates everything a user can get wrong first (flags, data, run directory),
then starts or joins Ray, and lets Ray Tune run trials that Optuna's sampler
proposes. Ends with the Pareto front, the run directory and the report.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from search.options import Options, UsageError, merge_stored, parse_args
from search.rundir import RunDir, RunDirError

PROG = "search.run"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_args(argv)
        return run(opts)
    except (UsageError, RunDirError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished trials are saved — continue with --resume", file=sys.stderr)
        return 130


def _user_errors():
    from trainer.data import DataError

    return (DataError,)


def prepare(opts: Options) -> tuple[Options, Any, Any, RunDir | None]:
    """Check flags, data and run directory before anything is written or started."""
    from space import SearchSpace
    from trainer.budget import get_budget
    from trainer.data import DataError, load_cifar10

    stored = None
    if opts.resume:
        stored = RunDir.open(opts.run_path)
        opts = merge_stored(opts, stored.meta)
    elif opts.run_path.exists() and any(opts.run_path.iterdir()):
        raise UsageError(f"run directory {opts.run_path} already exists; use --resume to continue it or another --name")
    try:
        space = SearchSpace(kernel_sets=opts.kernel_sets, ratios=opts.ratios, width=opts.width)
    except ValueError as exc:
        raise UsageError(f"bad search space: {exc}") from None
    try:
        budget = get_budget(opts.budget, **opts.budget_overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        load_cifar10(opts.data_dir, download=opts.download)
    except DataError as exc:
        if stored:
            stored.close()
        raise UsageError(str(exc)) from None
    return opts, space, budget, stored


def run(opts: Options) -> int:
    opts, space, budget, rundir = prepare(opts)
    from space import PRESETS

    if rundir is None:
        rundir = RunDir.create(opts.run_path, {
            "name": opts.name,
            **opts.search_settings(),
            "directions": list(opts.directions),
            "trials": opts.trials,
            "search_space": {"kernel_sets": [list(k) for k in space.kernel_sets], "ratios": list(space.ratios),
                             "width": space.width, "dw_size": space.dw_size},
            "baselines": list(PRESETS) if opts.baselines else [],
            "data_dir": str(opts.data_dir),
        })
    try:
        return _search(opts, space, rundir)
    finally:
        rundir.close()


@functools.lru_cache(maxsize=None)
def _cost(arch) -> tuple[int, int]:
    from space import build_model, count_macs, count_params

    model = build_model(arch)
    return count_macs(model), count_params(model)


def _search(opts: Options, space, rundir: RunDir) -> int:
    import optuna
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search.progress import TableWriter, trial_row
    from search.searcher import STUDY_NAME, ArchSearcher, heal_study, make_optuna_search, make_sampler, point_of
    from search.trainable import TrialContext, run_trial
    from space import PRESETS

    objectives = list(opts.objectives)
    table = rundir.table
    attempt = int(rundir.meta.get("attempts", 0)) + 1
    device = "cuda" if opts.gpus_per_trial > 0 else "cpu"
    rundir.update_meta(attempts=attempt, trials=opts.trials, device=device)

    known: dict[str, dict[str, Any]] = {}
    for row in table.rows:
        ok = row["status"] == "ok"
        known[row["key"]] = {"values": [float(row[o]) for o in objectives] if ok else None,
                             "infeasible": row["status"] == "infeasible"}
    remaining = opts.trials - len(table.trained())
    print(f"run directory: {rundir.path}")
    if remaining <= 0:
        print(f"all {opts.trials} trials are already finished")
        return _finish(opts, rundir)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage_url = rundir.study_url
    study = optuna.create_study(storage=storage_url, study_name=STUDY_NAME, load_if_exists=True,
                                directions=list(opts.directions))
    heal_study(study, known, space)

    # A resumed run draws a fresh random stream: replaying the first attempt's
    # start-up samples would only produce duplicates.
    sampler = make_sampler(opts.sampler, opts.seed + attempt - 1, opts.population_size)
    baselines = [cfg for cfg in PRESETS.values() if opts.baselines and cfg.key not in known]
    points = [p for p in (point_of(space, cfg) for cfg in baselines) if p is not None]
    references = [cfg for cfg in baselines if point_of(space, cfg) is None]
    inner = make_optuna_search(space, objectives, list(opts.directions), sampler, storage_url, points,
                               max_macs=opts.max_macs, macs_of=lambda a: _cost(a)[0])

    def on_infeasible(arch, macs: int) -> None:
        table.append(trial_row(arch, "infeasible", {"macs": macs, "params": _cost(arch)[1]},
                               error=f"macs {macs} above --max-macs {opts.max_macs:g}"))
        print(f"infeasible: {arch.key} macs={macs / 1e6:.2f}M > --max-macs (not trained)", flush=True)

    exhausted: list[bool] = []
    searcher = ArchSearcher(inner, space, objectives, known, lambda a: _cost(a)[0], opts.max_macs,
                            on_infeasible, on_exhausted=lambda: exhausted.append(True), references=references)

    _init_ray(opts)
    max_concurrent = opts.max_concurrent or _fitting_trials(opts)
    limiter = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    ctx = TrialContext(
        data_dir=str(opts.data_dir),
        budget=opts.budget,
        budget_overrides=dict(opts.budget_overrides),
        seed=opts.seed,
        device=device,
        threads=max(1, int(opts.cpus_per_trial)),
        latency_threads=opts.latency_threads,
        fail_keys=tuple(k for k in os.environ.get("GHOSTNAS_FAIL_KEYS", "").split(";") if k),
    )
    writer = TableWriter(table, known, objectives, opts.trials,
                         front_size=lambda: _front_size(rundir.path, objectives), cost=_cost)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                    {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=limiter, num_samples=remaining,
                                     reuse_actors=True),  # a warm worker: torch imported, data loaded
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}",
            storage_path=str(rundir.ray_dir.resolve()),
            callbacks=[writer],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    print(f"searching: {remaining} trials to go of {opts.trials}, sampler {opts.sampler}, "
          f"objectives {','.join(objectives)}, budget {opts.budget}, up to {max_concurrent} at once", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.fit()
    if exhausted:
        print("the sampler kept proposing architectures already evaluated or above --max-macs; "
              "the search space looks exhausted", file=sys.stderr)
    return _finish(opts, rundir)


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
            raise UsageError(f"cannot join the Ray cluster at --address {opts.address}: {exc}{hint}") from None
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


def _front_size(run_path: Path, objectives: list[str]) -> int:
    from analysis.load import load_run
    from analysis.pareto import pareto_front

    ok = load_run(run_path, allow_empty=True).trials
    ok = ok[ok["status"] == "ok"]
    return len(pareto_front(ok, objectives)) if not ok.empty else 0


def _finish(opts: Options, rundir: RunDir) -> int:
    from analysis.load import load_run
    from analysis.pareto import pareto_front

    data = load_run(rundir.path)
    trials = data.trials
    ok = trials[trials["status"] == "ok"]
    counts = trials["status"].value_counts().to_dict()
    print(f"\nfinished: {len(rundir.table.trained())}/{opts.trials} trials "
          + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if not ok.empty:
        front = pareto_front(ok, list(opts.objectives)).sort_values("macs" if "macs" in opts.objectives else opts.objectives[0])
        cols = ["number", "preset", *opts.objectives, "key"]  # the key, as in the progress lines
        print(f"Pareto front ({len(front)} of {len(ok)} ok trials):")
        print(front[[c for c in cols if c in front.columns]].to_string(index=False))
    print(f"\nrun directory: {rundir.path}")
    if opts.report and not ok.empty:
        from analysis.report import write_report

        write_report([rundir.path], rundir.report_path)
        print(f"report: {rundir.report_path}")
    print(f"report command: python -m analysis.report {rundir.path} -o report.html")
    print(f"pick an architecture: python -m analysis.select {rundir.path} --max-macs <N> -o best.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

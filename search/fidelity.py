"""`python -m search.fidelity RUN --epochs E --sample N`: does the proxy rank like a longer training?

Re-trains the run's Pareto front plus a seeded random sample of its other ok
trials at a longer budget, through the same Ray Tune trainable as the search
(so it runs on a cluster too), and appends each result to
`<run>/fidelity.csv` as it finishes: a killed check resumes without
re-training what is there.  The statistics (Kendall τ, Spearman ρ with
bootstrap intervals, top-k overlap, front kept) come from
`analysis.fidelity`, so this command, the report and anyone reading the CSV
see the same numbers.
"""
from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path
from typing import Any, Sequence

from cli_kit import Parser, UserError, require_at_least, run_main
from record.rundir import FIDELITY_FILE, AppendTable, RunDir, open_fidelity
from search.ray_runner import FinishedTrainings, job_of

PROG = "search.fidelity"


def build_parser() -> Parser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run directory (<storage-path>/<name>)")
    p.add_argument("--epochs", type=int, required=True, help="epochs of the reference training (longer than the proxy's)")
    p.add_argument("--budget", default=None, help="trainer preset of the reference (default: the run's)")
    p.add_argument("--train-size", type=int, default=None, help="training images of the reference (default: the run's)")
    p.add_argument("--sample", type=int, required=True, help="ok trials re-trained besides the front (seeded draw)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample draw and the bootstrap (default 0)")
    p.add_argument("--top-k", type=int, default=3, help="k of the top-k overlap (default 3)")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 (default: the run's data directory)")
    p.add_argument("--address", default=None, help="join a Ray cluster (default: start a local one)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per training (default %(default)g)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per training (default 1 with CUDA)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trainings at once (default: as many as fit)")
    return p


def choose(ok, objectives: Sequence[str], sample: int, seed: int):
    """The front, then `sample` other ok trials drawn with `seed` (fewer when the run has fewer)."""
    from analysis.pareto import pareto_front

    front = pareto_front(ok, list(objectives))
    rest = sorted(set(ok["number"]) - set(front["number"]))
    drawn = random.Random(seed).sample(rest, min(sample, len(rest)))
    return ok[ok["number"].isin(set(front["number"]) | set(drawn))].sort_values("number")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_at_least(args, {"epochs": 1, "sample": 1, "top_k": 1, "train_size": 1, "max_concurrent": 1})
    from analysis.load import load_run
    from trainer.data import load_cifar10

    data = load_run(args.run)
    if data.ok.empty:
        raise UserError(f"run {data.path} has no ok trial: nothing to re-train")
    budget = _reference_budget(args, data.meta)
    data_dir = Path(args.data_dir or data.meta.get("data_dir") or "data")
    load_cifar10(data_dir)  # a DataError (UserError) now, not in every worker
    chosen = choose(data.ok, data.objectives, args.sample, args.seed)
    rundir = RunDir.open(data.path)  # the lock: one writer per run directory
    try:
        table = open_fidelity(rundir.path / FIDELITY_FILE)
        done = {r["key"] for r in table.rows}
        todo = chosen[~chosen["key"].isin(done)]
        print(f"{PROG}: {len(chosen)} architectures (front + {args.sample} sampled), {len(todo)} to re-train "
              f"for {budget.epochs} epochs on {budget.train_size or 'all'} images; results in {table.path}", flush=True)
        if len(todo):
            _retrain(args, rundir, table, todo, budget, data_dir, int(data.meta.get("seed", 0)))
    finally:
        rundir.close()
    return _summary(data, args)


def _reference_budget(args, meta: dict):
    """The run's budget (or `--budget`) on the run's validation split, trained `--epochs` long."""
    from trainer.budget import get_budget, run_budget, run_split

    try:
        budget = get_budget(args.budget, **run_split(meta)) if args.budget else run_budget(meta, **run_split(meta))
        return dataclasses.replace(budget, epochs=args.epochs,
                                   train_size=args.train_size if args.train_size else budget.train_size)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _retrain(args, rundir: RunDir, table: AppendTable, todo, budget, data_dir: Path, seed: int) -> None:
    from analysis.load import RunData
    from search.ray_runner import Execution, check_request, fit, make_tuner, ray_session, trial_context
    from trainer.device import default_gpus

    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else default_gpus()
    execution = Execution(address=args.address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus,
                          max_concurrent=args.max_concurrent)
    writer = _Writer(table, {str(r["key"]): int(r["number"]) for _, r in todo.iterrows()}, budget.epochs,
                     budget.train_size, seed)
    with ray_session(execution):
        check_request(execution)
        tuner = make_tuner(execution, trial_context(execution, data_dir, budget, seed),
                           name=f"fidelity-{len(table.rows)}", storage_path=rundir.ray_dir, callbacks=[writer],
                           configs=[{"arch": RunData.arch(r).to_dict()} for _, r in todo.iterrows()],
                           events=rundir.events_path)
        fit(tuner)


class _Writer(FinishedTrainings):
    """Tune callback in the driver: one fidelity.csv row per finished re-training."""

    def __init__(self, table: AppendTable, numbers: dict[str, int], epochs: int, train_size, seed: int):
        self.table, self.numbers, self.epochs, self.train_size, self.seed = table, numbers, epochs, train_size, seed

    def finished(self, trial, status: str, result: dict[str, Any], error: str) -> None:
        from space import ArchConfig

        key = ArchConfig.from_dict(job_of(trial)["arch"]).key
        self.table.append({"number": self.numbers.get(key, ""), "key": key, "status": status, "epochs": self.epochs,
                           "train_size": self.train_size or "", "seed": self.seed,
                           "val_acc": result.get("val_acc") if status == "ok" else None,
                           "train_seconds": result.get("train_seconds"), "error": error})
        acc = f"val_acc={result['val_acc']:.4f}" if status == "ok" and result.get("val_acc") is not None else ""
        print(f"[{len(self.table.rows)}] {status:<8} {acc} {key}", flush=True)


def _summary(data, args) -> int:
    from analysis.fidelity import fidelity, load_fidelity

    result = fidelity(data.ok, load_fidelity(data.path), data.objectives, top_k=args.top_k, seed=args.seed)
    if result is None:
        print(f"{PROG}: fewer than 3 architectures have both results; nothing to compare yet")
        return 0
    for line in result.lines():
        print(line)
    if result.warning():
        print(result.warning())
    print(f"the report shows it: python -m analysis.report {data.path} -o report.html")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))

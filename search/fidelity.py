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

import random
import sys
from typing import Any, Sequence

from cli_kit import Parser, UserError, require_at_least, run_main
from record.rundir import FIDELITY_FILE, AppendTable, open_fidelity
from search.watchdog import job_of
from search.retrain import (RetrainWriter, add_execution_flags, again_command, checked_data, execution_of, locked_table,
                            run_recipe, train_jobs, with_run_backend)

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
    add_execution_flags(p)
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
    require_at_least(args, {"epochs": 1, "sample": 1, "top_k": 1, "train_size": 1})
    execution = execution_of(args)
    from analysis.load import RunData, load_run

    data = load_run(args.run)
    execution = with_run_backend(execution, args.latency_backend, data.meta)
    if data.ok.empty:
        raise UserError(f"run {data.path} has no ok trial: nothing to re-train")
    # The run's recipe on its validation split, trained --epochs long.
    budget = run_recipe(data.meta, args.budget, epochs=args.epochs, train_size=args.train_size)
    data_dir, split_images = checked_data(args.data_dir, data.meta)
    chosen = choose(data.ok, data.objectives, args.sample, args.seed)
    seed = int(data.meta.get("seed", 0))
    with locked_table(data.path, FIDELITY_FILE, open_fidelity) as (rundir, table):
        todo = chosen[~chosen["key"].isin({r["key"] for r in table.rows})]
        print(f"{PROG}: {len(chosen)} architectures (front + {args.sample} sampled), {len(todo)} to re-train "
              f"for {budget.epochs} epochs on {budget.train_size or 'all'} images; results in {table.path}", flush=True)
        if len(todo):
            writer = _Writer(table, {str(r["key"]): int(r["number"]) for _, r in todo.iterrows()}, budget, seed)
            jobs = [{"arch": RunData.arch(r).to_dict()} for _, r in todo.iterrows()]
            train_jobs(execution, rundir, writer, jobs, name=f"fidelity-{len(table.rows)}", data_dir=data_dir,
                       budget=budget, seed=seed, split_images=split_images, again=again_command(PROG, argv))
    return _summary(data, args)


class _Writer(RetrainWriter):
    """One fidelity.csv row per finished re-training."""

    def __init__(self, table: AppendTable, numbers: dict[str, int], budget, seed: int):
        super().__init__(table, len(numbers))
        self.numbers, self.budget, self.seed = numbers, budget, seed

    def row(self, trial, status: str, result: dict[str, Any], error: str) -> tuple[dict[str, Any], str]:
        from space import ArchConfig

        key = ArchConfig.from_dict(job_of(trial)["arch"]).key
        acc = result.get("val_acc") if status == "ok" else None
        row = {"number": self.numbers.get(key, ""), "key": key, "status": status, "epochs": self.budget.epochs,
               "train_size": self.budget.train_size or "", "seed": self.seed, "val_acc": acc,
               "train_seconds": result.get("train_seconds"), "error": error}
        return row, (f"val_acc={acc:.4f} " if acc is not None else "") + key


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

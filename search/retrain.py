"""What the commands that re-train a finished run's architectures share: `search.fidelity`, `search.confirm`.

Both read a run, train a fixed list of jobs on the run's recipe (longer, or
on the test batch) through `search.ray_runner`, append one row per finished
training to a table of the run directory — so a killed command resumes
without training a job again — and print what the table says.  Only what
they pick, how long they train and what they make of the rows differ; the
flags, the recipe, the data check, the lock and the Ray round are here once.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from cli_kit import UserError, require_at_least, wrap
from record.rundir import AppendTable, DiskFull, RunDir
from search.diskguard import DiskLow, resumable
from search.ray_runner import Execution, FinishedTrainings


def add_execution_flags(p: argparse.ArgumentParser) -> None:
    """Where the trainings run: the same flags, defaults and help as every re-training command."""
    e = p.add_argument_group("execution")
    e.add_argument("--address", default=None, help="join a Ray cluster (default: start a local one)")
    e.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per training (default %(default)g)")
    e.add_argument("--gpus-per-trial", type=float, default=None, help="GPUs per training (default 1 with CUDA)")
    e.add_argument("--max-concurrent", type=int, default=None, help="trainings at once (default: as many as fit)")
    e.add_argument("--max-restarts", type=int, default=3, help="restarts after a lost node (default %(default)s)")
    e.add_argument("--latency-backend", default=None, metavar="NAME",
                   help="runtime latency_ms is timed in: onnxruntime, onnxruntime-int8 or torch (default: the run's, so every "
                        "latency of a run is of one runtime; torch for a run from before latency backends)")
    e.add_argument("--latency-threads", type=int, default=1, help="CPU threads of the latency runtime (default 1)")


def execution_of(args: argparse.Namespace) -> Execution:
    """The execution flags, checked (one line for a count below its minimum) and with the machine's GPU default."""
    from host.device import default_gpus

    require_at_least(args, {"max_concurrent": 1, "max_restarts": 0, "latency_threads": 1})
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else default_gpus()
    return Execution(address=args.address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus,
                     max_concurrent=args.max_concurrent, max_restarts=args.max_restarts,
                     latency_threads=args.latency_threads)


def with_run_backend(execution: Execution, backend: str | None, meta: Mapping[str, Any]) -> Execution:
    """`execution` timing latency in the run's backend (search.latency.run_backend: a different one is refused)."""
    import dataclasses

    from search.latency import run_backend

    return dataclasses.replace(execution, latency_backend=run_backend(backend, execution.device, meta)[0])


def run_recipe(meta: Mapping[str, Any], budget: str | None = None, **changes: Any):
    """The run's recipe (or the preset `budget`) on the run's validation split, with `changes`
    (None keeps a field); a bad preset or field is one line."""
    import dataclasses

    from trainer.budget import get_budget, run_budget, run_split

    try:
        split = run_split(dict(meta))
        base = get_budget(budget, **split) if budget else run_budget(dict(meta), **split)
        return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
    except ValueError as exc:
        raise UserError(str(exc)) from None


def checked_data(data_dir: str | Path | None, meta: Mapping[str, Any]) -> tuple[Path, int]:
    """The data directory (the flag, else the run's), checked here (one line) rather than in every worker,
    and how many training images the run's validation split leaves (what "the whole split" trains on)."""
    from trainer.data import load_cifar10

    path = Path(data_dir or meta.get("data_dir") or "data")
    pool = len(load_cifar10(path).train_labels)
    return path, pool - int((meta.get("data_sizes") or {}).get("val", 0))


@contextlib.contextmanager
def locked_table(run_path: Path, name: str,
                 open_table: Callable[[Path], AppendTable]) -> Iterator[tuple[RunDir, AppendTable]]:
    """The run directory locked (one writer per run) and its table `name`, open for appending."""
    rundir = RunDir.open(run_path)
    try:
        yield rundir, open_table(rundir.path / name)
    finally:
        rundir.close()


def train_jobs(execution: Execution, rundir: RunDir, writer, jobs: Sequence[dict[str, Any]], *, name: str,
               data_dir: Path, budget, seed: int, split_images: int, evaluate_on: str = "val",
               again: str = "the same command", int8: bool = False) -> None:
    """Train `jobs` (each {"arch": ..., "seed": ...}) on Ray, `writer` recording each finished one.

    On the CPU it first says how long that takes, from the calibration's CPU-seconds per training, for
    the budget's images (`--train-size`, else the `split_images` that `checked_data` counted).  Ctrl-C or
    SIGTERM ends it with how many are in the table and `again`, the command that trains the rest.
    """
    from search.ray_runner import interrupted

    try:
        _train(execution, rundir, writer, jobs, name=name, data_dir=data_dir, budget=budget, seed=seed,
               split_images=split_images, evaluate_on=evaluate_on, int8=int8)
    except KeyboardInterrupt as exc:
        raise interrupted(exc, len(writer.table.rows), writer.total, again) from None
    except (DiskFull, DiskLow) as exc:  # the same command continues (it trains what its table lacks)
        raise resumable(exc, len(writer.table.rows), writer.total, again) from None


def again_command(prog: str, argv: Sequence[str] | None) -> str:
    """The command line that continues a re-training: the same one (it skips what its table holds)."""
    import shlex
    import sys

    return shlex.join(["python", "-m", prog, *(sys.argv[1:] if argv is None else argv)])


def _train(execution: Execution, rundir: RunDir, writer, jobs: Sequence[dict[str, Any]], *, name: str,
           data_dir: Path, budget, seed: int, split_images: int, evaluate_on: str, int8: bool = False) -> None:
    import dataclasses

    from search.ray_runner import check_request, concurrent_trainings, fit, make_tuner, ray_session, trial_context
    from trainer.budget import CPU_FIDELITY

    with ray_session(execution):
        check_request(execution)
        if execution.device == "cpu":
            execution = dataclasses.replace(execution, max_concurrent=concurrent_trainings(execution))
            print(wrap(CPU_FIDELITY.duration_line(len(jobs), execution.max_concurrent, budget,
                                                  budget.train_size or split_images)), flush=True)
        ctx = trial_context(execution, data_dir, budget, seed, evaluate_on=evaluate_on, int8=int8)
        fit(lambda: make_tuner(execution, ctx, name=name, storage_path=rundir.ray_dir, callbacks=[writer],
                               configs=jobs, events=rundir.events_path))


class RetrainWriter(FinishedTrainings):
    """Tune callback of the re-training commands, in the driver: one table row per finished training
    (subclasses say which, in `row`), a progress line as each finishes and, between, one a minute saying
    which epochs the running trainings have reached — a confirmation on the CPU runs for hours."""

    heartbeat_s = 60.0

    def __init__(self, table: AppendTable, todo: int) -> None:
        self.table, self.done_at_start = table, len(table.rows)
        self.total = self.done_at_start + todo
        self.started = self._last_print = time.monotonic()
        self.reached: dict[str, int] = {}  # running trial id -> last epoch reported

    def row(self, trial, status: str, result: dict[str, Any], error: str) -> tuple[dict[str, Any], str]:
        """(the table's row, what the progress line says of it)."""
        raise NotImplementedError

    def finished(self, trial, status: str, result: dict[str, Any], error: str) -> None:
        self.reached.pop(trial.trial_id, None)
        row, shown = self.row(trial, status, result, error)
        self.table.append(row)
        self._say(f"{status:<8} {shown}")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict[str, Any], **info: Any) -> None:
        if result.get("status") == "running" and result.get("epoch") is not None:
            self.reached[trial.trial_id] = int(result["epoch"])

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last_print >= self.heartbeat_s:
            from search.progress import running_besides

            reached = sorted(self.reached.values(), reverse=True)
            self._say(f"running {running_besides(trials, None)}"
                      + (f", epochs done {', '.join(map(str, reached))}" if reached else ""))

    def _say(self, what: str) -> None:
        from search.progress import eta, fmt_duration, say

        self._last_print = time.monotonic()
        done, elapsed = len(self.table.rows), self._last_print - self.started
        say(f"[{done}/{self.total}] elapsed {fmt_duration(elapsed)} "
            f"ETA {eta(elapsed, done - self.done_at_start, self.total - done)} | {what}")

"""Running trainings on Ray: the one place every command that trains goes through.

`search.run` (trainings an Optuna sampler proposes) and `search.fidelity`
(a fixed list re-trained longer) share all of it: start a local Ray or join
a cluster (`ray_session`), the `TrialContext` the trainable gets, one
`Tuner` over the one trainable (`make_tuner`), and the callback base that
turns a finished Tune trial into a status a table can record
(`FinishedTrainings`).  Ray's own output is kept out of the user's terminal
here too, so every command prints only its own progress lines.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ray.tune import Callback

from cli_kit import UserError
from record.rundir import ACCURACY_STATUSES

if TYPE_CHECKING:  # the trainable imports torch and the trainer: only where a training is set up
    from search.trainable import TrialContext

# Tune statuses a trainable reports at its end; anything else ended it early (see FinishedTrainings).
FINAL_STATUSES = ("ok", "diverged")


@dataclass(frozen=True)
class Execution:
    """Where trainings run and what each reserves: the execution flags of every command that trains."""

    address: str | None = None  # join this cluster; None: start a local one
    cpus_per_trial: float = 1.0  # also the training's torch threads
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None  # None: as many as the cluster's resources hold
    latency_threads: int = 1
    dashboard: bool = False  # the Ray dashboard of a local cluster, on 127.0.0.1
    dashboard_port: int = 8265

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_trial > 0 else "cpu"

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_trial))

    @property
    def resources(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}


@contextlib.contextmanager
def ray_session(execution: Execution) -> Iterator[None]:
    """Ray started (local) or joined (`--address`) for the block; a local one started here stops after it.

    Where Ray is already initialised (embedded use: benchmarks) the caller owns the cluster.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        _start(execution)
    try:
        yield
    finally:
        if started and not execution.address:
            ray.shutdown()


def _start(execution: Execution) -> None:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Our own progress lines are the output; Tune's console reporter would repeat them.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray").setLevel(logging.WARNING)
    # Workers import space/ and trainer/: make this checkout importable for them too.
    repo = str(Path(__file__).resolve().parents[1])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}}
    quiet = {"runtime_env": runtime_env, "log_to_driver": False, "logging_level": logging.WARNING}
    if execution.address:
        try:
            ray.init(address=execution.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                    "; if the cluster uses token authentication, set RAY_AUTH_MODE=token")
            raise UserError(f"cannot join the Ray cluster at --address {execution.address}: {exc}{hint}") from None
        print(f"joined Ray cluster at {execution.address}", flush=True)
        return
    ctx = ray.init(address="local",  # a new local cluster, even where `ray start` left one running
                   include_dashboard=execution.dashboard, dashboard_host="127.0.0.1",
                   dashboard_port=execution.dashboard_port, **quiet)
    if execution.dashboard and ctx.dashboard_url:
        print(f"Ray dashboard: http://{ctx.dashboard_url}", flush=True)


def concurrent_trainings(execution: Execution) -> int:
    """`--max-concurrent`, else as many trainings as the cluster's CPUs and GPUs hold at once (at least 1)."""
    if execution.max_concurrent:
        return execution.max_concurrent
    import ray

    res = ray.cluster_resources()
    fits = [int(res.get("CPU", 1) // execution.cpus_per_trial)]
    if execution.gpus_per_trial > 0:
        fits.append(int(res.get("GPU", 0) // execution.gpus_per_trial))
    return max(1, min(fits))


def trial_context(execution: Execution, data_dir: Path | str, budget, seed: int, latency_table=None):
    """What every training of one command shares (`search.trainable.TrialContext`), picklable for the workers."""
    from search.trainable import TrialContext

    return TrialContext(
        data_dir=str(Path(data_dir).resolve()), budget=budget, seed=seed, device=execution.device,
        threads=execution.threads, latency_threads=execution.latency_threads, latency_table=latency_table,
        # Test hook: trainings of these keys raise (the failure path, end to end through real Ray).
        fail_keys=tuple(k for k in os.environ.get("GHOSTNAS_FAIL_KEYS", "").split(";") if k),
    )


def make_tuner(execution: Execution, ctx: TrialContext, *, name: str, storage_path: Path,
               callbacks: Sequence[Callback], searcher=None, trials: int = 1, scheduler=None,
               grid: dict[str, list] | None = None):
    """Ray Tune over the one trainable: trainings a `searcher` proposes (`trials` of them), or every
    combination of `grid`'s values (e.g. {"arch": [...]}); one experiment folder `name` per call."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search.trainable import run_trial

    concurrent = concurrent_trainings(execution)
    if searcher is not None:
        tune_config = tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrent),
                                      num_samples=trials, scheduler=scheduler, reuse_actors=True)
    else:  # reuse_actors: a warm worker has torch imported and the data loaded
        tune_config = tune.TuneConfig(max_concurrent_trials=concurrent, scheduler=scheduler, reuse_actors=True)
    return tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), execution.resources),
        param_space={k: tune.grid_search(list(v)) for k, v in grid.items()} if grid else None,
        tune_config=tune_config,
        run_config=tune.RunConfig(name=name, storage_path=str(Path(storage_path).resolve()),
                                  callbacks=list(callbacks), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


def fit(tuner) -> None:
    """Run the trainings; Ray's deprecation and resource warnings are not the user's business."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.fit()


class FinishedTrainings(Callback):
    """Tune callback base, in the driver: each finished training as (trial, status, result, error).

    A training ends `ok` or `diverged` (the trainable says so), `stopped` (a
    scheduler ended it at a rung: `stopped` maps a Tune trial id to that
    epoch), or `failed` (it raised, or ended without saying).  Subclasses
    write `finished`.
    """

    stopped: Callable[[str], int | None] | None = None

    def finished(self, trial, status: str, result: dict[str, Any], error: str) -> None:
        raise NotImplementedError

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        result = trial.last_result or {}
        status = result.get("status", "failed")
        stopped_at = self.stopped(trial.trial_id) if self.stopped is not None else None
        if status == "running" and stopped_at is not None:
            status, result = "stopped", {**result, "epochs": stopped_at}
        elif status not in FINAL_STATUSES:
            status = "failed"
        self.finished(trial, status, result, result.get("error", "") if status not in ACCURACY_STATUSES else "")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.finished(trial, "failed", trial.last_result or {}, error_line(trial))


def error_line(trial) -> str:
    """The last line of the trial's traceback: the exception type and message.

    At callback time Tune has written the traceback only to the trial's local
    staging folder (`error_file`); the copy in the storage path comes later.
    """
    text = ""
    local = trial.error_file
    if local and os.path.isfile(local):
        with open(local, errors="replace") as f:
            text = f.read()
    if not text:
        text = trial.get_error() or ""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "trial raised an error (see Ray's trial log)"

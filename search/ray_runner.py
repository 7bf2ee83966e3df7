"""Running trainings on Ray: the one place every command that trains goes through.

`search.run` (trainings an Optuna sampler proposes), `search.fidelity` and
`search.confirm` (a fixed list of jobs, through `search.retrain`) share all of it: start a local Ray or join
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
import shutil
import signal
import socket
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ray.tune import Callback
from ray.tune.stopper import CombinedStopper, Stopper

from cli_kit import Interrupted, UserError, sigterm_interrupts
from record.rundir import ACCURACY_STATUSES, DiskFull
from search.diskguard import GUARD, folder_bytes, is_full_disk, quiet_tune_when_full
from search.watchdog import Watchdog, _error_text, checkpoint_met_full_disk, error_line

if TYPE_CHECKING:  # the trainable imports torch and the trainer: only where a training is set up
    from search.trainable import TrialContext

DASHBOARD_PORT = 8265  # Ray's own default; where a second search on the machine holds it, the next free port
DASHBOARD_TRIES = 50
BIND_ERRORS = ("Failed to bind", "address already in use", "valid port")  # what Ray says of a taken port
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
    latency_backend: str = "torch"  # runtime.backends; the commands set the run's (search.latency.run_backend)
    max_restarts: int = 3  # restarts after a lost node, worker or actor; then the training is "lost"
    trial_timeout: float | None = None  # None: derived from the run's epoch times (Watchdog)
    dashboard: bool = False  # the Ray dashboard of a local cluster, on 127.0.0.1
    dashboard_port: int | None = None  # None: DASHBOARD_PORT, or the next free one (another search holds it)

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
        with sigterm_interrupts():  # ray.init made SIGTERM exit(1) with no word; the command says what was kept
            yield
    finally:
        if started and not execution.address:
            ray.shutdown()


def _start(execution: Execution) -> None:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Our own progress lines are the output; Tune's console reporter would repeat them.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A lost node is an event line of ours (Watchdog), not Tune's traceback of the dead actor;
    # Tune's warnings (its Tuner.restore hint, pending-resources notes) name no step of this service.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    # "Token authentication is enabled": a local cluster's default, not a step for the user.
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    # Workers import space/ and trainer/: make this checkout importable for them too.
    repo = str(Path(__file__).resolve().parents[1])
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}}
    quiet = {"runtime_env": runtime_env, "log_to_driver": False, "logging_level": logging.WARNING}
    _quiet_cluster_errors()
    _quiet_torn_snapshots()
    if execution.address:
        try:
            ray.init(address=execution.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                    "; if the cluster uses token authentication, set RAY_AUTH_MODE=token")
            raise UserError(f"cannot join the Ray cluster at --address {execution.address}: {exc}{hint}") from None
        print(f"joined Ray cluster at {execution.address}", flush=True)
        return
    _start_local(execution, quiet)


def _start_local(execution: Execution, quiet: dict[str, Any]) -> None:
    """A new local Ray, its dashboard port free (the named one, or the first free from DASHBOARD_PORT).

    Ray binds a dashboard port even without the dashboard (its job and agent API): a free one for every
    local cluster, or a second command beside a search prints Ray's raw "Failed to bind" ERROR line.  Two
    commands started together would both see the same port free: the choice and Ray's start (which returns
    once the port is bound) happen under one machine-wide lock.
    """
    import ray

    with _starting_lock():
        for port in dashboard_ports(execution.dashboard_port):
            try:
                ctx = ray.init(address="local",  # a new local cluster, even where `ray start` left one running
                               include_dashboard=execution.dashboard, dashboard_host="127.0.0.1",
                               dashboard_port=port, **quiet)
            except Exception as exc:  # another program took the port between our check and Ray's bind
                ray.shutdown()
                if not any(w in str(exc) for w in BIND_ERRORS):
                    raise
                if execution.dashboard_port is not None:
                    raise UserError(f"--dashboard-port {port} was taken on 127.0.0.1 as Ray started: name a free "
                                    "port, or leave the flag out to take the next free one") from None
                continue
            if execution.dashboard and ctx.dashboard_url:
                print(f"Ray dashboard: http://{ctx.dashboard_url}", flush=True)
            return
    raise UserError(f"no free port for the Ray dashboard in {DASHBOARD_PORT}-{DASHBOARD_PORT + DASHBOARD_TRIES - 1} "
                    "on 127.0.0.1: name one with --dashboard-port, or --no-dashboard")


@contextlib.contextmanager
def _starting_lock() -> Iterator[None]:
    """One local Ray start at a time on this machine (a lock file in the temp dir; a crash releases it)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "ghostnas-ray-start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def port_free(port: int) -> bool:
    """Whether a TCP port on 127.0.0.1 can be bound now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def dashboard_ports(named: int | None) -> Iterator[int]:
    """The dashboard's port: the one the user named (taken: a user error, before Ray starts), else the first
    free one from DASHBOARD_PORT — so searches, confirmations and fidelity runs side by side each get their own."""
    if named is not None:
        if not port_free(named):
            raise UserError(f"--dashboard-port {named} is taken on 127.0.0.1 (another search's dashboard?): name a "
                            "free port, or leave the flag out to take the next free one")
        yield named
        return
    for port in range(DASHBOARD_PORT, DASHBOARD_PORT + DASHBOARD_TRIES):
        if port_free(port):
            yield port


def _quiet_cluster_errors() -> None:
    """Keep the cluster's error broadcasts (a dead raylet's last 20 log lines and `[state-dump]`) out of the terminal.

    With `log_to_driver=False` Ray still prints every error the GCS publishes
    through one function of its worker module, looked up at each message;
    pointing it at the `ray` logger's debug level leaves them in Ray's own
    logs (the session directory), while the Watchdog says what a lost node
    means for the search, in one line.  Ray offers no setting for this.
    """
    import ray._private.worker as ray_worker

    log = logging.getLogger("ray")

    def to_debug_log(data: dict, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            log.debug("%s: %s", data.get("pid", "ray"), line)

    ray_worker.print_to_stdstream = to_debug_log


class _TornSnapshot(logging.Filter):
    """Drop Tune's error when a snapshot of its experiment state finds a file gone that it was copying.

    Tune writes its state to a temporary file and renames it; a snapshot that
    starts copying the staging folder just then (seen when Ctrl-C lands as the
    first trainings start) logs a FileNotFoundError traceback.  Nothing is
    lost: the next snapshot copies the renamed file, and `--resume` reads the
    run directory (trials.csv, study.db), never Tune's state.  Any other failure
    to save the state is still shown.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        torn = isinstance(exc, FileNotFoundError) or "FileNotFoundError" in (record.exc_text or "")
        return not (torn and record.getMessage().startswith("Saving experiment state to storage"))


def _quiet_torn_snapshots() -> None:
    """Install `_TornSnapshot` on Tune's experiment-state logger (once)."""
    log = logging.getLogger("ray.tune.execution.experiment_state")
    if not any(isinstance(f, _TornSnapshot) for f in log.filters):
        log.addFilter(_TornSnapshot())


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


def check_request(execution: Execution) -> None:
    """Refuse, before anything is written, a per-training request that no live node can hold.

    Tune would otherwise wait forever with `running 0`; the message names what the cluster has.
    """
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= execution.cpus_per_trial and r.get("GPU", 0) >= execution.gpus_per_trial
           for r in nodes):
        return
    where = f"the Ray cluster at {execution.address}" if execution.address else "the local Ray cluster"
    have = ", ".join(f"{r.get('CPU', 0):g} CPU {r.get('GPU', 0):g} GPU" for r in nodes) or "no live node"
    raise UserError(f"no node of {where} can hold one training's --cpus-per-trial {execution.cpus_per_trial:g} "
                    f"--gpus-per-trial {execution.gpus_per_trial:g} (its nodes: {have})")


def trial_context(execution: Execution, data_dir: Path | str, budget, seed: int, latency_table=None,
                  evaluate_on: str = "val", int8: bool = False):
    """What every training of one command shares (`search.trainable.TrialContext`), picklable for the workers."""
    from search.trainable import TrialContext

    return TrialContext(
        data_dir=str(Path(data_dir).resolve()), budget=budget, seed=seed, device=execution.device,
        threads=execution.threads, latency_threads=execution.latency_threads, latency_table=latency_table,
        latency_backend=execution.latency_backend,
        evaluate_on=evaluate_on, int8=int8,
        # Test hook: trainings of these keys raise (the failure path, end to end through real Ray).
        fail_keys=tuple(k for k in os.environ.get("GHOSTNAS_FAIL_KEYS", "").split(";") if k),
    )


def make_tuner(execution: Execution, ctx: TrialContext, *, name: str, storage_path: Path,
               callbacks: Sequence[Callback], searcher=None, trials: int = 1, scheduler=None,
               configs: Sequence[dict[str, Any]] | None = None, events: Path | None = None):
    """Ray Tune over the one trainable: trainings a `searcher` proposes (`trials` of them), or the fixed
    list `configs` (each {"arch": ..., "seed": ...}); one experiment folder `name` per call.

    A training whose node, worker or actor is lost restarts from its last epoch's checkpoint up to
    `execution.max_restarts` times (Tune's FailureConfig; the trainable turns errors of the
    architecture into results, so only infrastructure reaches it); a `Watchdog` prints and logs
    those events to `events` and ends trainings that run past the timeout.  The `DiskGuard` ends the
    experiment before the storage's file system fills (`search.diskguard`).
    """
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search.trainable import run_trial

    drop_stale_checkpoints(Path(storage_path))
    concurrent = concurrent_trainings(execution)
    GUARD.arm(Path(storage_path), concurrent)
    quiet_tune_when_full()
    if searcher is not None:
        tune_config = tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrent),
                                      num_samples=trials, scheduler=scheduler, reuse_actors=True)
    else:  # reuse_actors: a warm worker has torch imported and the data loaded
        tune_config = tune.TuneConfig(max_concurrent_trials=concurrent, scheduler=scheduler, reuse_actors=True)
    return tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), execution.resources),
        param_space={"job": tune.grid_search(list(configs))} if configs else None,
        tune_config=tune_config,
        run_config=tune.RunConfig(name=name, storage_path=str(Path(storage_path).resolve()),
                                  stop=CombinedStopper(SIGNALLED, GUARD),
                                  callbacks=[Watchdog(ctx.budget.epochs, execution.trial_timeout, events), GUARD,
                                             *callbacks], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=execution.max_restarts),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def drop_stale_checkpoints(ray_dir: Path) -> int:
    """Remove the checkpoints earlier attempts left behind (a training a Ctrl-C or a kill cut off); bytes freed.

    Nothing resumes from them: a new attempt (a search, confirmation or fidelity run continued) trains
    what its table lacks from its first epoch, and a finished training's checkpoints were dropped when it
    finished (`watchdog.drop_checkpoints`).  A supernet's epochs are the exception — a resumed one-shot
    search continues each supernet from its last one (`search.oneshot.last_checkpoint`) — and stay.
    """
    freed = 0
    for folder in ray_dir.glob("*/*/checkpoint_*"):
        if folder.parts[-3].startswith("supernets-") or not folder.is_dir():
            continue
        freed += folder_bytes(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return freed


class StopOnSignal(Stopper):
    """Ends the experiment once Ctrl-C or SIGTERM arrived (`signum`), as Tune's own Ctrl-C does: running
    trainings are stopped without a result (none is recorded), and the experiment state is saved.

    Tune's own handler is off (TUNE_DISABLE_SIGINT_HANDLER): after it, `Tuner.fit()` returns as if the
    experiment had finished, and it leaves SIGTERM to Ray's handler, which exits 1.  One instance for the
    process, as signal handlers are; `fit` resets it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.signum is not None


SIGNALLED = StopOnSignal()  # every Tuner of make_tuner stops on it
STOPPING = "\nstopping: finished trainings are kept, running ones train again on resume (Ctrl-C again: quit now)\n"


@contextlib.contextmanager
def _stop_on_signals(stopper: StopOnSignal) -> Iterator[None]:
    """SIGINT and SIGTERM set `stopper.signum` (Tune then ends the experiment); a second one quits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # embedded use from a thread: signals are the main thread's owner's business
        return

    def handler(signum: int, frame: Any) -> None:
        if stopper.signum is not None:
            raise Interrupted(signum)
        stopper.signum = signum
        os.write(2, STOPPING.encode())  # not print: a handler may run inside another print

    saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def fit(tuner) -> None:
    """Run the trainings; Ctrl-C or SIGTERM ends them (finished ones recorded) and raises `Interrupted`; a
    disk that is (nearly) full ends them the same way and raises the `DiskGuard`'s one line.
    Ray's deprecation and resource warnings are not the user's business.  `tuner` may be a zero-argument
    function that builds it: Tune writes the experiment folder when a Tuner is built, so a signal from then
    on must already meet the handler (a signal in between ended a command without its one line)."""
    SIGNALLED.signum = None
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # see StopOnSignal
    with warnings.catch_warnings(), _stop_on_signals(SIGNALLED):
        warnings.simplefilter("ignore")
        try:
            if not hasattr(tuner, "fit"):
                tuner = tuner()
            tuner.fit()
        except Exception as exc:  # a write of Tune's own (its logs, its state) met the full disk
            if GUARD.error is None and not is_full_disk(exc):
                raise
            GUARD.full(exc)
    if SIGNALLED.signum is not None:
        raise Interrupted(SIGNALLED.signum)
    if GUARD.error is not None:
        raise GUARD.error


def interrupted(exc: KeyboardInterrupt, done: int, total: int, again: str) -> Interrupted:
    """The line every training command ends with on Ctrl-C or SIGTERM: how far it got, and the command
    that continues it (which trains nothing twice)."""
    return Interrupted(getattr(exc, "signum", signal.SIGINT),
                       f"interrupted after {done}/{total} trainings; continue with: {again}")


class FinishedTrainings(Callback):
    """Tune callback base, in the driver: each finished training as (trial, status, result, error).

    A training ends `ok` or `diverged` (the trainable says so), `stopped` (a
    scheduler ended it at a rung: `stopped` maps a Tune trial id to that
    epoch), `failed` (the architecture raised, or it ended without saying),
    or `lost` (its node or worker was lost more often than the restarts
    allow: Tune reports only those as errors).  Subclasses write `finished`.
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
        self._finish(trial, status, result, result.get("error", "") if status not in ACCURACY_STATUSES else "")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        text = _error_text(trial)
        if checkpoint_met_full_disk(trial, text):  # not the architecture's fault: not recorded, trains again
            return
        self._finish(trial, "lost", trial.last_result or {},
                     f"lost after {trial.max_failures} restart(s): {error_line(trial, text)}")

    def _finish(self, trial, status: str, result: dict[str, Any], error: str) -> None:
        """`finished`, and a row that meets a full disk ends the experiment (the training trains again)."""
        try:
            self.finished(trial, status, result, error)
        except DiskFull as exc:
            GUARD.full(exc)

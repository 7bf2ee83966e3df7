"""A real three-node Ray cluster on loopback, with faults: run by tests/test_cluster_faults.py.

Run inside its own network namespace (`unshare -n`, loopback up), where every
Ray node binds 127.0.0.1 and no traffic leaves the namespace:

    python tests/cluster_faults.py OUT CIFAR_DIR

One cluster (a driver-only head and worker nodes of one CPU each) serves two
searches:

- `nodes`: while trainings run, the node of one whose epoch checkpoint Tune
  has registered is removed (all its processes stopped) and a replacement
  node joins; later another such node dies at once: its raylet and the
  workers it started are SIGKILLed, as when a machine is lost.  (A raylet killed alone leaves its
  training running until Ray's health check declares the node dead, some
  15 s; a short training may finish first, and then the fault hits the next
  training to be placed there, before its first epoch.)
- `driver`: the search's own process is SIGKILLed mid-training, once a
  training's checkpoint is in the run directory's experiment state, then the
  run is continued with `--resume` while the cluster stays up.

Faults wait for a checkpoint, never for a reported epoch: Tune registers an
epoch's checkpoint only when the trial's `save` call returns, after the result
was logged, so a node lost in between restarts its training from epoch 0 (two
red CI runs).  The gate reads what Tune restores from: the experiment state it
writes after each registered checkpoint, and the checkpoint's folder on disk.

It writes OUT/<case>.out (the searches' terminal output) and OUT/scenario.json
(what was done, exit statuses); the test reads the run directories.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Small, and long enough that a fault lands mid-training: 4 epochs of 512 images (faults wait for a checkpoint).
EPOCHS = 4
SEARCH = ["--budget", "smoke", "--epochs", str(EPOCHS), "--train-size", "512", "--val-size", "200",
          "--proxy-width", "0.5", "--no-baselines",
          "--objectives", "val_acc,macs", "--max-concurrent", "2", "--no-report", "--no-dashboard"]


def wait_for(what: str, check, timeout: float = 240.0, proc: subprocess.Popen | None = None):
    """Poll `check` until it returns something truthy; fail loudly on timeout or a search that ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the search ended (status {proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def running_on(temp_dir: Path) -> dict[str, tuple[str, int]]:
    """Trial id -> (node id, epochs done), for trainings with at least two epochs still to train.

    Read from Tune's result logs in the driver's staging folder (written as each
    result arrives; the copies in the run directory are synced only later).  A
    training that reported its last epoch may already have ended, and its node
    started the next training (then a fault would hit one with no checkpoint);
    two epochs left give the fault time to land.
    """
    trainings: dict[str, tuple[str, int]] = {}
    for log in temp_dir.glob("session_*/artifacts/*/attempt-*/driver_artifacts/*/result.json"):
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        try:
            last = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:  # a line being written
            continue
        if last.get("status") == "running" and 1 <= last.get("epoch", 0) <= EPOCHS - 2 and last.get("node"):
            trainings[last["trial_id"]] = (last["node"], int(last["epoch"]))
    return trainings


def checkpointed(states) -> dict[str, int]:
    """Trial id -> epoch of the checkpoint Tune would restore the training from, as persisted in `states`.

    Tune's experiment state (`experiment_state-*.json`, written again after every
    registered checkpoint) holds each trial's latest checkpoint; only one whose
    folder holds the training's state on disk counts.  Read with Tune's own
    decoder of the file.
    """
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    from search.trainable import STATE_FILE

    epochs: dict[str, int] = {}
    for path in states:
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):  # being written
            continue
        for trial_json, metadata_json in trials:
            manager = _TrainingRunMetadata.from_json_state(metadata_json).checkpoint_manager
            latest = manager.latest_checkpoint_result if manager is not None else None
            if latest is None or latest.checkpoint is None:
                continue
            if (Path(latest.checkpoint.path) / STATE_FILE).is_file():
                trial_id = json.loads(trial_json)["trial_id"]
                epochs[trial_id] = max(epochs.get(trial_id, 0), int(latest.metrics.get("epoch", 0)))
    return epochs


def busy_nodes(temp_dir: Path, nodes) -> dict[str, dict]:
    """Nodes among `nodes` running a training whose checkpoint for epoch >= 1 Tune has persisted:
    node -> {"trial": id, "checkpoint": that epoch, "reported": the last epoch reported}."""
    saved = checkpointed(temp_dir.glob("session_*/artifacts/*/attempt-*/driver_artifacts/experiment_state-*.json"))
    return {node: {"trial": trial_id, "checkpoint": saved[trial_id], "reported": epoch}
            for trial_id, (node, epoch) in running_on(temp_dir).items()
            if node in nodes and saved.get(trial_id, 0) >= 1}


def events(run: Path) -> list[str]:
    path = run / "events.log"
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith(" ")] if path.exists() else []


def curve_rows(run: Path) -> int:
    path = run / "curves.csv"
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def start_search(out: Path, case: str, address: str, cifar: str, *extra: str) -> subprocess.Popen:
    # The cluster and the search share this environment, RAY_AUTH_MODE included: the same authentication.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(out / f"{case}.out", "a")
    cmd = [sys.executable, "-m", "search.run", *extra, "--address", address, "--data-dir", cifar,
           "--storage-path", str(out / "runs"), "--name", case]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def add_worker(cluster, temp_dir: Path, workers: dict) -> None:
    """A one-CPU worker node with its own node slot (runtime.slot): as if on a machine of its own."""
    slot = temp_dir / f"slot-{len(workers)}-{time.monotonic_ns()}"
    slot.mkdir(parents=True)
    os.environ["GHOSTNAS_SLOT_DIR"] = str(slot)  # the raylet and its workers inherit it
    node = cluster.add_node(num_cpus=1)
    workers[node.node_id] = node


def kill_marked(entry: str) -> None:
    """SIGKILL every process with an environment entry that starts with `entry` ("NAME=VALUE...").

    Ray's processes inherit the environment they were started with, so a marker
    in it finds exactly one cluster's processes: here whatever the scenario's
    nodes left behind (workers can outlive their raylet); in tests/conftest.py
    a test head.
    """
    needle = b"\0" + entry.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in b"\0" + (proc / "environ").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def node_faults(cluster, workers: dict, out: Path, cifar: str, temp_dir: Path) -> dict:
    """Remove one busy node (and add a replacement), then SIGKILL another busy node's raylet and workers."""
    import psutil
    from ray._private import ray_constants

    run = out / "runs" / "nodes"
    proc = start_search(out, "nodes", cluster.address, cifar, "--trials", "4", *SEARCH)
    done: dict = {"gates": []}  # what each fault waited for: the training it hit and its persisted checkpoint
    busy = wait_for("a training with a persisted checkpoint", lambda: busy_nodes(temp_dir, set(workers)), proc=proc)
    victim = sorted(busy)[0]
    cluster.remove_node(workers.pop(victim))
    done["removed"] = victim
    done["gates"].append(busy[victim])
    add_worker(cluster, temp_dir, workers)  # the replacement
    wait_for("the restart event", lambda: events(run), proc=proc)
    busy = wait_for("another training with a persisted checkpoint",
                    lambda: busy_nodes(temp_dir, set(workers) - {victim}), proc=proc)
    victim = sorted(busy)[0]
    done["gates"].append(busy[victim])
    raylet = psutil.Process(workers.pop(victim).all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    for process in [raylet, *raylet.children(recursive=True)]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    done["killed"] = victim
    add_worker(cluster, temp_dir, workers)  # capacity for the rest of the search
    done["status"] = proc.wait(timeout=600)
    return done


def driver_kill(cluster, out: Path, cifar: str) -> dict:
    """SIGKILL the search once a checkpoint is in the run directory; `--resume` while the cluster stays up."""
    run = out / "runs" / "driver"
    proc = start_search(out, "driver", cluster.address, cifar, "--trials", "3", *SEARCH)
    states = run / "ray"
    wait_for("a checkpoint in the run directory",
             lambda: checkpointed(states.glob("attempt-*/experiment_state-*.json")), proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = start_search(out, "driver", cluster.address, cifar, "--resume", "--no-report", "--no-dashboard")
    return {"killed_at_rows": curve_rows(run), "status": resumed.wait(timeout=600)}


def main(out: Path, cifar: str) -> int:
    from ray.cluster_utils import Cluster

    out.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(f"/tmp/rayf-{os.getpid()}")  # short: Ray's socket paths live under it
    # Ray's Cluster writes the head's address to <RAY_TMPDIR or /tmp>/ray/ray_current_cluster without creating
    # the folder: on a fresh machine, before any other Ray ran, that was FileNotFoundError.  The scenario's own.
    os.environ["RAY_TMPDIR"] = str(temp_dir)
    (temp_dir / "ray").mkdir(parents=True, exist_ok=True)
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "temp_dir": str(temp_dir)})
    workers: dict = {}
    for _ in range(2):
        add_worker(cluster, temp_dir, workers)
    cluster.wait_for_nodes()
    report: dict = {"address": cluster.address}
    try:
        report["nodes"] = node_faults(cluster, workers, out, cifar, temp_dir)
        report["driver"] = driver_kill(cluster, out, cifar)
    finally:
        (out / "scenario.json").write_text(json.dumps(report, indent=2))
        cluster.shutdown()
        kill_marked(f"GHOSTNAS_SLOT_DIR={temp_dir}/")
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))

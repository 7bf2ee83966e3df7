"""Ctrl-C and SIGTERM end a command that trains with what it kept and the command that continues it."""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from runbuilder import build_run
from terminal import Terminal
from test_study_dashboard import dashboard_study

REPO = Path(__file__).resolve().parents[1]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e
def test_ctrl_c_in_a_terminal_says_interrupted_and_resume_finishes(cifar_dir, tmp_path):
    """A new user's search in a real terminal (local Ray, smoke budget): Ctrl-C after the first training ends it
    with the line that says how far it got and how to continue, exit 130; that command finishes the run."""
    args = ["search.run", "--trials", "3", "--budget", "smoke", "--train-size", "256", "--val-size", "200",
            "--proxy-width", "0.5",
            "--no-baselines", "--data-dir", str(cifar_dir), "--storage-path", str(tmp_path),
            "--name", "ctrlc", "--no-dashboard", "--no-report"]
    term = Terminal(args, REPO, columns=80)
    try:
        assert term.read_until("[1/3]", timeout=300), term.output[-3000:]
        term.ctrl_c()
        status = term.wait(timeout=120)
    finally:
        term.close()
    out = term.output
    # The start-up speaks of the run's own budget: no cpu calibration figure for smoke, wrapped at 80 columns.
    assert "Kendall tau" not in out and "not measured" in out and "python -m search.fidelity" in out, out
    start_up = out[out.index("\nproxy ranking: "):out.index("[1/3]")]
    # A word longer than the width (a path: /tmp/pytest-of-root/pytest-1108/... grows with the machine's session
    # count) stays whole on its own line, as textwrap leaves it; every other line fits 80 columns.
    lines = start_up.splitlines()
    assert len(lines) > 2 and all(len(ln) <= 80 or len(ln.split()) == 1 for ln in lines), start_up
    # The settings come back from run.json; where it runs and what it writes, from the command line.
    again = f"python -m search.run --name ctrlc --storage-path {tmp_path} --no-report --no-dashboard --resume"
    match = re.search(r"^search\.run: interrupted after (\d)/3 trainings; continue with: (.+)$", out, re.M)
    assert match and match.group(2) == again, out[-3000:]
    assert status == 130, out[-3000:]
    assert "stopping: finished trainings are kept, running ones train again on resume" in out
    assert "finished:" not in out and "Traceback" not in out, out[-3000:]
    before = rows(tmp_path / "ctrlc" / "trials.csv")
    assert len(before) == int(match.group(1)) and 1 <= len(before) < 3 and all(r["status"] == "ok" for r in before)
    stopped = dashboard_study(f"sqlite:///{tmp_path / 'ctrlc' / 'study.db'}")["trials"]
    assert {t["state"] for t in stopped} <= {"Complete", "Fail"}, "a stopped search shows no trial running"
    assert sum(t["state"] == "Complete" for t in stopped) == len(before)

    done = subprocess.run([sys.executable, *again.split()[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "finished: 3/3 trials" in done.stdout
    after = rows(tmp_path / "ctrlc" / "trials.csv")
    assert after[: len(before)] == before and [r["status"] for r in after] == ["ok"] * 3
    assert max(Counter((r["key"], r["seed"]) for r in after).values()) == 1, "nothing trained twice"
    # optuna-dashboard, pointed at the new run's study, names the objectives.
    shown = dashboard_study(f"sqlite:///{tmp_path / 'ctrlc' / 'study.db'}")
    assert shown["objective_names"] == ["val_acc", "macs", "latency_ms"]
    assert sum(t["state"] == "Complete" for t in shown["trials"]) == 3, shown["trials"]


@pytest.mark.e2e
@pytest.mark.parametrize("command, signum", [("search.confirm", signal.SIGINT), ("search.fidelity", signal.SIGTERM)])
def test_a_signal_to_the_process_group_ends_a_retraining_with_the_command_that_continues(
        command, signum, cifar_dir, ray_cluster, tmp_path):
    """The re-training commands on a (synthetic) run: Ctrl-C's SIGINT, or SIGTERM, reaches the process group
    once Tune runs the trainings (its experiment folder exists); the command stops them, says how far it got
    and how to continue, and exits 130 or 143."""
    run = build_run(tmp_path / "run", 2)
    extra = ["--seeds", "1"] if command == "search.confirm" else ["--sample", "2"]
    args = [str(run), "--epochs", "1", "--budget", "smoke", "--train-size", "256", *extra,
            "--data-dir", str(cifar_dir), "--address", ray_cluster, "--max-concurrent", "1"]
    proc = subprocess.Popen([sys.executable, "-m", command, *args], cwd=REPO, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    experiment = run / "ray" / f"{command.split('.')[1]}-0"
    try:
        deadline = time.monotonic() + 240
        while not experiment.is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert experiment.is_dir(), proc.stderr.read() if proc.poll() is not None else "no experiment folder"
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    total = int(re.search(r"(\d+) to (?:re-)?train", out).group(1))
    table = run / ("confirm.csv" if command == "search.confirm" else "fidelity.csv")
    assert "stopping: finished trainings are kept, running ones train again on resume" in err, err
    done = len(rows(table)) if table.exists() else 0
    assert err.splitlines()[-1] == (f"{command}: interrupted after {done}/{total} trainings; continue with: "
                                    f"python -m {command} {' '.join(args)}"), err
    assert proc.returncode == 128 + signum and "Traceback" not in err, err


def test_a_torn_state_snapshot_at_ctrl_c_prints_no_traceback_and_other_failures_still_do():
    """Tune logs a FileNotFoundError traceback when its state snapshot meets its own file mid-rename (seen when
    the signal lands as the first trainings start); that one is dropped, any other save failure is shown."""
    import logging

    from search.ray_runner import _quiet_torn_snapshots

    _quiet_torn_snapshots()
    _quiet_torn_snapshots()  # installed once however often a command starts Ray
    log = logging.getLogger("ray.tune.execution.experiment_state")
    assert sum(type(f).__name__ == "_TornSnapshot" for f in log.filters) == 1
    message = "Saving experiment state to storage at '/x/run/ray/confirm-0' failed with exception: "
    records: list[logging.LogRecord] = []
    seen = logging.Handler()
    seen.emit = records.append  # Ray's loggers do not propagate to pytest's capture: a handler of our own
    log.addHandler(seen)
    try:
        for exc in (FileNotFoundError(2, "Failed to open local file '.tmp-basic-variant-state.json'"),
                    PermissionError(13, "Permission denied")):
            try:
                raise exc
            except OSError:
                log.error(message, exc_info=True)
        try:
            raise FileNotFoundError(2, "gone")
        except OSError:
            log.error("some other Tune error", exc_info=True)
    finally:
        log.removeHandler(seen)
    shown = [(r.getMessage(), type(r.exc_info[1]).__name__) for r in records]
    assert shown == [(message, "PermissionError"), ("some other Tune error", "FileNotFoundError")]

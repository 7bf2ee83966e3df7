"""The search service end to end: real Ray, real Optuna storage, the real CIFAR sample."""
from __future__ import annotations

import csv
import json
import re
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from commands import free_port, in_process, python_m

from record.objectives import DEFAULT_OBJECTIVES
from record.rundir import TRAINED_STATUSES
from space import PRESETS, build_model, count_macs

REPO = Path(__file__).resolve().parents[1]


def read_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


search = partial(python_m, "search.run")  # `python -m search.run ARGS`, as a user runs it


# What the e2e searches check does not depend on how much each training computes: they train half-width
# copies (costs stay the real networks') and validate on 200 images.  `extra` can override both.
SMALL = ["--proxy-width", "0.5", "--val-size", "200"]


def smoke_args(cifar_dir: Path, storage: Path, name: str, *extra: str, small: bool = True) -> list[str]:
    return ["--budget", "smoke", "--data-dir", str(cifar_dir), "--storage-path", str(storage),
            "--name", name, "--no-report", *(SMALL if small else []), *extra]


@pytest.mark.e2e
def test_end_to_end_local_cluster(smoke_run):
    """The tour's search (docs/getting-started.md): 6 trials, smoke budget, the default objectives, on a local Ray."""
    run, proc = smoke_run
    rows = read_rows(run)
    assert len(rows) == 6
    assert all(r["status"] == "ok" for r in rows), rows
    assert {r["preset"] for r in rows} >= set(PRESETS), "every baseline is evaluated"
    assert len({r["key"] for r in rows}) == 6
    meta = json.loads((run / "run.json").read_text())
    assert meta["objectives"] == list(DEFAULT_OBJECTIVES) == ["val_acc", "macs", "latency_ms"]
    assert meta["directions"] == ["maximize", "minimize", "minimize"]
    assert (run / "study.db").is_file() and any((run / "ray").iterdir())
    assert "Ray dashboard" not in proc.stdout, "--no-dashboard"  # the dashboard's own line: the memory test
    assert "Pareto front (" in proc.stdout and "report command: python -m analysis.report" in proc.stdout
    assert all(0.0 <= float(r["val_acc"]) <= 1.0 and int(r["macs"]) > 0 and float(r["latency_ms"]) > 0 for r in rows)
    # A half-width proxy trained the accuracy axis; the costs are the real architectures'.
    assert meta["budget_settings"]["proxy_width"] == 0.5 and "at proxy width x0.5" in meta["trained_as"]
    by_preset = {r["preset"]: r for r in rows}
    for name in ("cnn", "ghostnet"):
        assert int(by_preset[name]["macs"]) == count_macs(build_model(PRESETS[name])), name
    # On the CPU the search says how far its proxy ranking can be trusted (trainer.budget.CPU_FIDELITY): the
    # calibration is the cpu budget's, so this budget's ranking was not measured, and the command that does.
    assert "proxy ranking: not measured for budget smoke with overrides" in proc.stdout
    assert "Kendall tau=" not in proc.stdout and f"python -m search.fidelity {run}" in " ".join(proc.stdout.split())
    # ... and how long the whole search should take, before any training ends (half width here: not measured).
    assert "expected duration: " in proc.stdout
    # ... and why this strategy is the CPU default, with both strategies' repeatability (search.oneshot.ONESHOT_CPU).
    assert "strategy standalone, the CPU default: it ranks more repeatably" in " ".join(proc.stdout.split())
    # Learning curves: one row per epoch of every training (1 epoch each on the smoke budget).
    with open(run / "curves.csv", newline="") as f:
        curves = list(csv.DictReader(f))
    assert sorted((c["key"], c["seed"]) for c in curves) == sorted((r["key"], r["seed"]) for r in rows)
    assert all(c["epoch"] == "1" and 0.0 <= float(c["val_acc"]) <= 1.0 for c in curves)
    # The layout was measured here, at this budget, and the run trains in the faster one (trainer.layout).
    choice = meta["layout_choice"]
    assert set(choice["seconds_per_step"]) == {"channels_last", "nchw"}
    assert choice["seconds_per_step"][choice["layout"]] == min(choice["seconds_per_step"].values())
    assert meta["budget_settings"]["channels_last"] == (choice["layout"] == "channels_last")
    assert f"training layout: {choice['layout']} (" in proc.stdout


@pytest.mark.e2e
def test_failures_and_infeasible_are_recorded(ray_cluster, cifar_dir, tmp_path):
    from space import build_model, count_macs

    macs = {name: count_macs(build_model(cfg)) for name, cfg in PRESETS.items()}
    limit = (macs["all_mca"] + macs["selective_mca"]) / 2  # all_mca is over budget, the rest fit
    env = {"GHOSTNAS_FAIL_KEYS": PRESETS["ghostnet"].key}
    done = search(*smoke_args(cifar_dir, tmp_path, "faults", "--trials", "4", "--objectives", "val_acc,macs",
                              "--max-macs", str(limit), "--sampler", "random", "--baseline-seeds", "1",
                              "--address", ray_cluster), env=env)
    assert done.returncode == 0, done.stderr
    rows = read_rows(tmp_path / "faults")
    by_preset = {r["preset"]: r for r in rows if r["preset"]}
    assert by_preset["ghostnet"]["status"] == "failed"
    assert "injected failure" in by_preset["ghostnet"]["error"]
    assert by_preset["all_mca"]["status"] == "infeasible" and by_preset["all_mca"]["val_acc"] == ""
    assert all(int(r["macs"]) <= limit for r in rows if r["status"] != "infeasible")
    assert len([r for r in rows if r["status"] in TRAINED_STATUSES]) == 4
    assert "failed 1" in done.stdout
    # The architecture's own error is its result: never retried as if its node had been lost.
    assert not (tmp_path / "faults" / "events.log").exists() and " lost" not in done.stdout


@pytest.mark.e2e
def test_a_training_past_its_time_limit_restarts_then_is_lost(ray_cluster, cifar_dir, tmp_path):
    """--trial-timeout far below one training: each attempt is ended, restarted once, then recorded as lost."""
    done = search(*smoke_args(cifar_dir, tmp_path, "slow", "--trials", "1", "--no-baselines", "--epochs", "3",
                              "--trial-timeout", "2", "--max-restarts", "1", "--address", ray_cluster))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = read_rows(tmp_path / "slow")
    assert [r["status"] for r in rows] == ["lost"] and rows[0]["error"].startswith("lost after 1 restart(s)")
    assert rows[0]["val_acc"] == "" and int(rows[0]["macs"]) > 0
    events = (tmp_path / "slow" / "events.log").read_text()
    assert "past its limit of 2 s" in events and "restart 1 of 1" in events and "recorded as lost" in events
    assert "lost 1" in done.stdout and "Traceback" not in done.stdout + done.stderr


@pytest.mark.e2e
def test_a_worker_killed_for_memory_restarts_then_is_lost_with_the_reason(cifar_dir, tmp_path):
    """Ray's memory monitor (its threshold set below what any node uses) kills the training's worker: that is
    infrastructure, so the training restarts, and once out of restarts it is lost, saying why and what to change."""
    port = free_port()
    done = search(*smoke_args(cifar_dir, tmp_path, "oom", "--trials", "1", "--no-baselines", "--max-restarts", "1",
                              "--train-size", "128", "--objectives", "val_acc,macs", "--dashboard-port", str(port)),
                  env={"RAY_memory_usage_threshold": "0.01", "RAY_memory_monitor_refresh_ms": "100"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # The one e2e search with Ray's dashboard: it starts on the port asked for, and says where.
    assert f"Ray dashboard: http://127.0.0.1:{port}" in done.stdout
    rows = read_rows(tmp_path / "oom")
    assert [r["status"] for r in rows] == ["lost"], rows
    assert rows[0]["error"].startswith("lost after 1 restart(s): Ray's memory monitor killed the training's worker")
    assert "--max-concurrent" in rows[0]["error"]
    events = (tmp_path / "oom" / "events.log").read_text()
    oom = r"node \w+ out of memory \([\d.]+\w+ used / [\d.]+\w+ limit\): training \w+ \(.*\)"
    assert re.search(rf"^\S+ {oom} restarts from epoch 0 \(restart 1 of 1\)$", events, re.M), events
    assert re.search(rf"^\S+ {oom} is recorded as lost after 1 restart\(s\)$", events, re.M), events
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.e2e
def test_two_searches_side_by_side_each_with_its_own_dashboard_propose_by_seed(cifar_dir, tmp_path):
    """Two searches started together on one machine, each its own local Ray: both finish, each dashboard on
    its own port (the first free from 8265), no raw Ray ERROR line; what they propose depends on the seed,
    not on what runs beside."""
    procs = {name: _start(smoke_args(cifar_dir, tmp_path, name, "--trials", "3", "--no-baselines", "--seed", "7",
                                     "--max-concurrent", "1", "--objectives", "val_acc,macs", "--epochs", "1",
                                     "--train-size", "256")) for name in ("a", "b")}
    keys, dashboards = [], []
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        keys.append([r["key"] for r in read_rows(tmp_path / name)])
        dashboards += re.findall(r"^Ray dashboard: http://127\.0\.0\.1:(\d+)$", out, re.M)
        assert not re.search(r"\bERROR\b", out + err) and "Traceback" not in out + err, out[-2000:] + err[-2000:]
    assert len(dashboards) == 2 and dashboards[0] != dashboards[1] and min(map(int, dashboards)) >= 8265, dashboards
    assert keys[0] == keys[1]
    assert len(set(keys[0])) == 3


def test_a_taken_dashboard_port_is_one_line_before_ray_starts(cifar_dir, tmp_path):
    """A port the user named and another program holds: one line, exit 2, nothing written (no Ray started)."""
    storage = tmp_path / "runs"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = in_process("search.run", "--data-dir", str(cifar_dir), "--storage-path", str(storage),
                          "--dashboard-port", str(port))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--dashboard-port {port} is taken on 127.0.0.1" in lines[0], done.stderr
    assert list(storage.glob("*")) == []


def test_the_dashboard_takes_the_next_free_port_where_the_default_is_held(monkeypatch):
    from search import ray_runner

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.setattr(ray_runner, "DASHBOARD_PORT", port)
        chosen = next(ray_runner.dashboard_ports(None))
        assert chosen > port and ray_runner.port_free(chosen) and not ray_runner.port_free(port)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--objectives", "val_acc,speed"], "unknown objective 'speed'"),
        (["--objectives", ""], "need at least one objective"),
        (["--sampler", "cmaes"], "unknown --sampler 'cmaes'"),
        (["--budget", "huge"], "unknown --budget 'huge'"),
        (["--kernel-sets", "3-4"], "kernels"),
        (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
        (["--resume", "--name", "nope"], "no search run to resume"),
        (["--resume", "--name", "nope", "--tri", "5"], "unrecognized arguments: --tri 5"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--val-size", "999999"], "--val-size 999999 leaves no training images"),
        (["--proxy-width", "1.5"], "--proxy-width must be in (0, 1]"),
        (["--epoch-images", "0"], "--epoch-images must be a positive number"),
        # Asks Ray: no node of the local cluster has 64 GPUs, so Tune would wait forever.
        pytest.param(["--gpus-per-trial", "64", "--no-dashboard"], "no node of the local Ray cluster can hold one "
                     "training's", marks=pytest.mark.e2e),  # starts a local Ray
        (["--max-restarts", "-1"], "--max-restarts must be at least 0"),
        (["--trial-timeout", "0"], "--trial-timeout must be a positive number"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(cifar_dir, tmp_path, args, message, request):
    storage = tmp_path / "runs"
    # The case that starts Ray runs as a real command; the others are answered before any Ray in-process.
    run = python_m if request.node.get_closest_marker("e2e") else in_process
    done = run("search.run", "--data-dir", str(cifar_dir), "--storage-path", str(storage), *args, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    # In the tests' network namespace Ray's core says it cannot reach 8.8.8.8 to learn its address
    # (there is no route, nothing is sent): the namespace's line, not the service's.
    lines = [ln for ln in done.stderr.strip().splitlines() if "network_util.cc" not in ln]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert list(storage.glob("*")) == [], "nothing written"


def test_missing_data_dir_exits_2(tmp_path):
    done = in_process("search.run", "--data-dir", str(tmp_path / "nowhere"), "--storage-path", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--download" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_help_lists_the_flags():
    done = search("--help", timeout=120)
    assert done.returncode == 0
    for flag in ("--trials", "--objectives", "--sampler", "--budget", "--resume", "--address",
                 "--max-concurrent", "--max-macs", "--baselines", "--storage-path", "--baseline-seeds", "--repeats",
                 "--val-size"):
        assert flag in done.stdout


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(proc: subprocess.Popen, run: Path, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "trials.csv").exists() and len(read_rows(run)) >= n:
            return
        assert proc.poll() is None, "search ended too early: " + proc.stderr.read()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"no {n} rows in {run} after {timeout} s")

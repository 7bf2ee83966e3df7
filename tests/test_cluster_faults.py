"""Cluster faults cost time, never an architecture: a real three-node Ray cluster, loopback only.

`tests/cluster_faults.py` runs in a fresh network namespace (`unshare -n`,
loopback up), where every Ray node binds 127.0.0.1 and nothing leaves the
namespace.  Two searches on one cluster: in the first a busy worker node is
removed (a replacement joins) and another busy node dies (its raylet and
workers SIGKILLed), each once its training's checkpoint is persisted; in the
second the search itself is SIGKILLed and resumed while the cluster stays up.
Here the run directories are checked, and each restarted training is trained
again uninterrupted in this process to show it ended the same.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cluster_faults import EPOCHS  # the scenario's trainings

pytestmark = pytest.mark.e2e  # multi-node Ray clusters and full trainings

REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def scenario(cifar_dir, tmp_path_factory) -> Path:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], capture_output=True).returncode != 0:
        message = "needs `unshare -n` (a network namespace: root or CAP_SYS_ADMIN) to keep Ray on loopback"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("cluster")
    proc = subprocess.run(
        [unshare, "-n", "sh", "-c", 'ip link set lo up && exec "$0" tests/cluster_faults.py "$1" "$2"',
         sys.executable, str(out), str(cifar_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _check_trainings(run: Path, trials: int) -> list[dict[str, str]]:
    """Every training ok, none twice, and one learning-curve row per epoch."""
    rows = _rows(run / "trials.csv")
    assert [r["status"] for r in rows] == ["ok"] * trials, [(r["status"], r["error"]) for r in rows]
    pairs = Counter((r["key"], r["seed"]) for r in rows)
    assert max(pairs.values()) == 1, pairs
    epochs: dict[tuple[str, str], list[int]] = {}
    for c in _rows(run / "curves.csv"):
        epochs.setdefault((c["key"], c["seed"]), []).append(int(c["epoch"]))
    assert set(epochs) == set(pairs)
    assert all(sorted(e) == list(range(1, EPOCHS + 1)) for e in epochs.values()), epochs
    return rows


def test_lost_nodes_restart_trainings_from_their_last_epoch(scenario, cifar_dir):
    import torch

    from record.arch import from_flat
    from trainer.budget import run_budget, run_split
    from trainer.data import load_cifar10
    from trainer.proxy import train_proxy

    done = json.loads((scenario / "scenario.json").read_text())
    assert done["nodes"]["status"] == 0 and done["nodes"]["removed"] != done["nodes"]["killed"]
    run = scenario / "runs" / "nodes"
    rows = _check_trainings(run, 4)
    # One event per lost node, in events.log and as one terminal line; no traceback, no Ray state dump.
    # Then one line per restarted training when it finishes: what its last attempt computed.
    logged = [ln for ln in (run / "events.log").read_text().splitlines() if not ln.startswith(" ")]
    restarts = [re.search(r"training (\w+) .* restarts from epoch (\d+) \(restart \d+ of", ln) for ln in logged]
    finishes = [re.search(r"^\S+ training (\w+) .* finished after (\d+) restart\(s\): its last attempt started "
                          r"from epoch (\d+) and trained (\d+) epoch\(s\)$", ln) for ln in logged]
    assert [m is not None for m in restarts].count(True) == 2, logged
    assert [ln for ln, r, f in zip(logged, restarts, finishes) if r is None and f is None] == [], logged
    # Each restart's epoch is Ray's checkpoint metadata; `resumed_from` is the last one per training.
    resumed_from = {m.group(1): int(m.group(2)) for m in restarts if m is not None}
    n_restarts = Counter(m.group(1) for m in restarts if m is not None)
    assert sorted((m.group(1), int(m.group(2))) for m in finishes if m is not None) == sorted(n_restarts.items())
    assert set(resumed_from) <= {r["trial_id"] for r in rows}
    out = (scenario / "nodes.out").read_text()
    assert "Traceback" not in out and "[state-dump]" not in out and "Tuner.restore" not in out
    # Each line names the node that was lost: Ray's own id for it, as the scenario removed or killed it.
    lost = sorted(re.findall(r"^node (\w+) lost: training", out, re.M))
    assert lost == sorted(done["nodes"][k][:8] for k in ("removed", "killed")), \
        [ln for ln in out.splitlines() if " lost" in ln]
    # What each restarted training's last attempt computed (the trainable's own count, not Ray's
    # metadata): it started where the restart said and trained only the remaining epochs.
    attempts = {m.group(1): (int(m.group(3)), int(m.group(4))) for m in finishes if m is not None}
    remaining = {trial_id: (epoch, EPOCHS - epoch) for trial_id, epoch in resumed_from.items()}
    assert attempts == remaining, "(started from, epochs trained) of each restarted training's last attempt " \
        "against (the restart's epoch, the epochs left): a restart that did not continue from its checkpoint"
    assert min(resumed_from.values()) >= 1, f"a training restarted before Ray had its checkpoint: {logged}"
    # Each fault waited for a checkpoint Tune had persisted; the training it hit resumed from that one or later.
    for gate in done["nodes"]["gates"]:
        assert resumed_from.get(gate["trial"], -1) >= gate["checkpoint"] >= 1, (gate, resumed_from)
    print(f"faults fired at {done['nodes']['gates']}; restarts from {resumed_from}")
    # A restarted training ends as if it had never stopped (CPU, one thread, same seed).
    meta = json.loads((run / "run.json").read_text())
    budget = run_budget(meta, **run_split(meta))
    data = load_cifar10(cifar_dir)
    curves = _rows(run / "curves.csv")
    torch.set_num_threads(1)
    for trial_id in resumed_from:
        row = next(r for r in rows if r["trial_id"] == trial_id)
        again = train_proxy(from_flat(row), data, budget, "cpu", seed=int(row["seed"]))
        assert float(row["val_acc"]) == again.val_acc
        curve = sorted((int(c["epoch"]), float(c["val_acc"])) for c in curves if c["trial_id"] == row["trial_id"])
        assert [a for _, a in curve] == again.val_accs


def test_a_killed_search_resumes_on_the_same_cluster(scenario):
    done = json.loads((scenario / "scenario.json").read_text())
    assert done["driver"]["status"] == 0 and done["driver"]["killed_at_rows"] >= 1
    run = scenario / "runs" / "driver"
    _check_trainings(run, 3)
    assert json.loads((run / "run.json").read_text())["attempts"] == 2
    out = (scenario / "driver.out").read_text()
    assert "Traceback" not in out and "Tuner.restore" not in out

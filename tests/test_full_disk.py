"""A full disk loses nothing (issue #39, item 2): tested on real small file systems (tmpfs in the test's
own mount namespace, tests/smallfs.py), never on a mocked `disk_usage`.

- The guard (`search.diskguard.DiskGuard`) stops a command before the disk fills, and the errors a full
  disk really raises — a write, the Optuna study on SQLite — are recognised as such.
- A smoke search whose disk another program fills mid-search stops in one line (exit 2) naming the free
  space and the command that continues; its finished trainings are kept, no training is recorded as
  lost, and `--resume` after space is freed trains only what is missing.

The table and run.json writes that meet a full disk are tested in tests/test_torn_files.py.
"""
from __future__ import annotations

import re

import pytest
from smallfs import run_in_small_fs

GUARD_SCRIPT = r"""
import json, shutil, sys, time
from pathlib import Path
import optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
from search.diskguard import DiskGuard, is_full_disk
where = Path(sys.argv[1])
guard = DiskGuard()
guard.arm(where / "ray", 1)  # not created yet: the guard watches its nearest existing parent
out = {"need": guard.need(), "stop_roomy": guard.stop_all()}
study = optuna.create_study(storage=f"sqlite:///{where}/study.db", study_name="s", directions=["maximize"])
free = shutil.disk_usage(where).free
(where / "ballast").write_bytes(b"x" * (free - guard.need() + (1 << 20)))  # another program fills the disk
time.sleep(1.05)  # the guard looks at the disk at most once a second
out["stop_low"] = guard.stop_all()
out["message"] = str(guard.error)
try:
    with open(where / "filler", "wb") as f:
        while True:
            f.write(b"x" * 65536)
            f.flush()
except OSError as exc:
    out["write"] = is_full_disk(exc)
try:
    for _ in range(50):
        trial = study.ask()
        study.tell(trial, 0.5)
    out["study"] = "no error"
except Exception as exc:
    out["study"] = [type(exc).__name__, is_full_disk(exc)]
    guard.arm(where, 1)
    guard.full(exc, "the study (study.db)")
    out["study_message"] = str(guard.error)
out["unrelated"] = is_full_disk(ValueError("bad key")) or is_full_disk("RuntimeError: CUDA out of memory")
print(json.dumps(out))
"""


def test_the_guard_stops_before_the_disk_fills_and_knows_a_full_disk_when_it_meets_one(tmp_path):
    where = tmp_path / "small"
    out = run_in_small_fs(where, "16m", GUARD_SCRIPT)
    assert out["need"] == 12 << 20, "an 8 MB checkpoint floor for one training at once, and 4 MB for the tables"
    assert out["stop_roomy"] is False
    assert out["stop_low"] is True
    message = out["message"]
    assert "\n" not in message and message.startswith("stopped before the disk filled: 11.0 MB free on the file "
                                                      f"system of {where / 'ray'}")
    assert "need about 12.0 MB: free some space, then continue with --resume" in message
    assert out["write"] is True
    assert out["study"] == ["StorageInternalError", True], "Optuna wraps SQLite's 'database or disk is full'"
    assert out["study_message"].startswith("no space left to write the study (study.db) (")
    assert "free on its file system; the next checkpoints and the tables need about 12.0 MB" in out["study_message"]
    assert out["unrelated"] is False


SEARCH_SCRIPT = r"""
import csv, json, shutil, subprocess, sys, time
from pathlib import Path
where, cifar = Path(sys.argv[1]), sys.argv[2]
cmd = [sys.executable, "-m", "search.run", "--budget", "smoke", "--trials", "4", "--epochs", "2", "--train-size", "256",
       "--val-size", "200", "--max-concurrent", "1", "--objectives", "val_acc,macs", "--no-report", "--no-dashboard",
       "--data-dir", cifar, "--storage-path", str(where), "--name", "full"]
table = where / "full" / "trials.csv"

def rows():
    if not table.exists():
        return []
    with open(table, newline="") as f:
        return list(csv.DictReader(f))

# 1. The disk is nearly full from the start: room for the guard's floor, not for the first checkpoint.
(where / "ballast").write_bytes(b"x" * (shutil.disk_usage(where).free - (20 << 20)))
at_start = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
start = {"rc": at_start.returncode, "out": at_start.stdout[-4000:], "err": at_start.stderr[-4000:], "rows": rows()}
(where / "ballast").unlink()

# 2. Another program fills the disk once the first training is recorded.
proc = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
deadline = time.monotonic() + 240
while len(rows()) < 1 and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.2)
free = shutil.disk_usage(where).free
(where / "ballast").write_bytes(b"x" * (free - (6 << 20)))  # another program leaves 6 MB free
out, err = proc.communicate(timeout=300)
first = {"rc": proc.returncode, "out": out[-4000:], "err": err[-4000:], "rows": rows()}
(where / "ballast").unlink()  # space freed
again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
print(json.dumps({"start": start, "first": first, "again": {"rc": again.returncode, "out": again.stdout[-3000:],
                  "err": again.stderr[-3000:], "rows": rows()},
                  "checkpoints": [str(p) for p in (where / "full" / "ray").glob("*/*/checkpoint_*")]}))
"""


@pytest.mark.e2e
def test_a_search_whose_disk_fills_stops_in_one_line_and_resumes_losing_nothing(cifar_dir, tmp_path):
    """A 200 MB disk, filled by another program twice.  (1) 20 MB free from the start: the first checkpoint
    (37 MB) meets the full disk in the worker; the search stops at that write in one line, and the training
    is not recorded as lost.  (2) Filled to 6 MB free once a training is recorded: the guard, which has seen
    a checkpoint's size, stops the search before a write fails (or at the write, if one came first); exit 2,
    one line, the recorded trainings stay.  (3) Space freed, --resume trains only the rest."""
    where = tmp_path / "small"
    out = run_in_small_fs(where, "200m", SEARCH_SCRIPT, str(cifar_dir), timeout=600)
    start, first, again = out["start"], out["first"], out["again"]
    assert start["rc"] == 2, start["out"][-2000:] + start["err"][-3000:]
    ours = [ln for ln in start["err"].splitlines() if ln.startswith("search.run:")]
    assert len(ours) == 1 and "Traceback" not in start["err"], start["err"]
    assert re.match(r"search\.run: error: no space left to write training \w+'s checkpoint \(\d", ours[0]), ours[0]
    assert ours[0].endswith("(0/4 trainings recorded)") and "--resume" in ours[0], ours[0]
    assert start["rows"] == [] and "restarts from epoch" not in start["out"], start["out"][-2000:]

    assert first["rc"] == 2, first["out"][-2000:] + first["err"][-3000:]
    ours = [ln for ln in first["err"].splitlines() if ln.startswith("search.run:")]  # not Ray's own log lines
    assert len(ours) == 1 and "Traceback" not in first["err"], first["err"]
    line = ours[0]
    assert line.startswith("search.run: error: ") and line.endswith(f"({len(first['rows'])}/4 trainings recorded)")
    assert ("stopped before the disk filled" in line or "no space left to write" in line), line
    assert "free some space, then continue with: python -m search.run --name full" in line and "--resume" in line
    kept = first["rows"]
    assert 1 <= len(kept) < 4 and all(r["status"] == "ok" for r in kept), kept

    assert again["rc"] == 0, again["out"][-2000:] + again["err"][-3000:]
    rows = again["rows"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    assert rows[:len(kept)] == kept, "the trainings recorded before the disk filled are kept as they were"
    assert len({(r["key"], r["seed"]) for r in rows}) == 4, "nothing trained twice (a preset trains 3 seeds)"
    assert out["checkpoints"] == [], "no checkpoint outlives its training"

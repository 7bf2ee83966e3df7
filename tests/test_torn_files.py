"""Torn and foreign files of a run directory (issue #39, item 3): each repaired by a stated rule or refused in
one line — never a traceback, never rows silently dropped.

Covered elsewhere: a torn last line of trials.csv is healed before the next append and skipped by readers
(tests/test_resume.py kills a search mid-line; tests/test_analysis.py reads one); the confirm table shares
that code (record.rundir.append_line).
"""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from commands import in_process
from smallfs import run_in_small_fs

from record.arch import to_flat
from record.rundir import RunDir, RunDirError, read_meta
from search.ledger import Ledger
from search.searcher import STUDY_NAME, reconcile_study
from search.study import open_study, repair_study
from tests.runbuilder import build_run, sample_archs
from tests.test_searcher import DIRECTIONS, OBJECTIVES, SPACE, ok_row

REPO = Path(__file__).resolve().parents[1]


def _study(tmp_path, n: int = 3):
    path = tmp_path / "study.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(f"sqlite:///{path}", OBJECTIVES, DIRECTIONS)
    study.optimize(lambda t: [t.suggest_float("x", 0, 1), 1.0], n_trials=n)
    return path


def test_a_sound_study_is_left_alone(tmp_path):
    path = _study(tmp_path)
    before = path.read_bytes()
    assert repair_study(path) is None and path.read_bytes() == before
    assert repair_study(tmp_path / "absent.db") is None


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty-header"])
def test_a_damaged_study_is_kept_aside_and_rebuilt_from_the_table(tmp_path, damage):
    """The rule: trials.csv is the record.  A study SQLite cannot read is renamed (never deleted) and a fresh
    study gets every finished architecture of the table before the sampler proposes anything."""
    path = _study(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 3], "garbage": b"not a database" * 200,
                      "empty-header": b"\0" * 100 + data[100:]}[damage])
    damaged = path.read_bytes()
    note = repair_study(path)
    assert note is not None and "kept as study.db.damaged-" in note and "rebuilds its study from trials.csv" in note
    aside = list(tmp_path.glob("study.db.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged and not path.exists()

    known = Ledger(OBJECTIVES, DIRECTIONS, n_val=1000)
    archs = sample_archs(3, seed=1, space=SPACE)
    for arch in archs:
        known.record({**ok_row(arch, [0.5, 1e7]), **to_flat(arch), "seed": "0"})  # values as the table has them
    url = f"sqlite:///{path}"
    open_study(url, OBJECTIVES, DIRECTIONS)
    assert reconcile_study(url, known, SPACE) == 3
    trials = optuna.load_study(study_name=STUDY_NAME, storage=url).get_trials()
    assert len(trials) == 3 and all(t.values[0] == 0.5 for t in trials)


def test_a_second_repair_never_overwrites_the_first_damaged_copy(tmp_path):
    for _ in range(2):
        (tmp_path / "study.db").write_bytes(b"junk" * 100)
        assert repair_study(tmp_path / "study.db") is not None
    assert len(list(tmp_path.glob("study.db.damaged-*"))) == 2


def test_a_study_another_program_holds_locked_is_one_line_and_untouched(tmp_path):
    path = _study(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time\n"
                               f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                               "c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception) as info:
            repair_study(path, wait_s=0.2)
        assert "is locked by another program" in str(info.value) and "\n" not in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    assert path.exists() and not list(tmp_path.glob("study.db.damaged-*"))
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 3


def test_a_run_from_a_newer_version_is_refused_by_every_reader(tmp_path, cifar_dir):
    run = build_run(tmp_path / "runs" / "future", 2, baselines=False)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "version": meta["version"] + 1}))
    with pytest.raises(RunDirError, match="written by a newer version of this tool"):
        read_meta(run)
    with pytest.raises(RunDirError, match="newer version"):
        RunDir.open(run)
    for argv in (["analysis.report", str(run), "-o", str(tmp_path / "r.html")],
                 ["search.run", "--name", "future", "--storage-path", str(tmp_path / "runs"), "--resume",
                  "--data-dir", str(cifar_dir)]):
        done = in_process(*argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "version" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path, cifar_dir):
    """A read-only run directory (here a file where the lock must go; a read-only mount answers the same
    OSError, tried by hand with a tmpfs remounted ro): resuming it is one line and changes nothing."""
    run = build_run(tmp_path / "runs" / "ro", 2, baselines=False)
    (run / ".lock").unlink()
    (run / ".lock").mkdir()  # open(..., "w") on it fails as on a read-only file system
    before = (run / "trials.csv").read_bytes()
    done = in_process("search.run", "--name", "ro", "--storage-path", str(tmp_path / "runs"), "--resume",
                      "--data-dir", str(cifar_dir))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write in run directory" in lines[0], done.stderr
    assert (run / "trials.csv").read_bytes() == before


def test_a_torn_last_line_of_confirm_csv_is_skipped_by_readers_and_healed_by_the_next_append(tmp_path):
    from record.rundir import open_confirm, read_confirm

    path = tmp_path / "confirm.csv"
    table = open_confirm(path)
    row = dict.fromkeys(table.columns, "") | {"system": "ghostnet", "seed": "0", "status": "ok"}
    table.append(row)
    with open(path, "a") as f:
        f.write("selective_mca,1,o")  # a confirmation killed mid-line (power lost before fsync)
    assert [(r["system"], r["seed"]) for r in read_confirm(path)] == [("ghostnet", "0")]
    resumed = open_confirm(path)  # search.confirm --resume: the torn bytes are cut, nothing else
    resumed.append(row | {"seed": "1"})
    assert [(r["system"], r["seed"]) for r in read_confirm(path)] == [("ghostnet", "0"), ("ghostnet", "1")]
    assert path.read_text().count("\n") == 3 and "selective_mca" not in path.read_text()


def test_checkpoints_no_attempt_can_resume_from_are_removed_and_a_supernets_epochs_stay(tmp_path):
    """A Ctrl-C'd search, confirmation or fidelity run leaves its running trainings' checkpoints in its
    experiment folder; the next attempt trains those from their first epoch, so `make_tuner` clears them
    (a smoke confirmation left 37 MB each time).  A supernet's epochs are what a resumed one-shot search
    continues from: kept."""
    from search.ray_runner import drop_stale_checkpoints

    ray = tmp_path / "ray"
    stale = [ray / "attempt-1" / "run_trial_a" / "checkpoint_000001", ray / "confirm-0" / "run_trial_b" /
             "checkpoint_000000", ray / "fidelity-2" / "run_trial_c" / "checkpoint_000003"]
    kept = ray / "supernets-1" / "run_trial_d" / "checkpoint_000002"
    for folder in (*stale, kept):
        folder.mkdir(parents=True)
        (folder / "training.pt").write_bytes(b"x" * 1000)
    (ray / "attempt-1" / "experiment_state-x.json").write_text("{}")
    assert drop_stale_checkpoints(ray) == 3000
    assert not any(f.exists() for f in stale) and (kept / "training.pt").exists()
    assert (ray / "attempt-1" / "experiment_state-x.json").exists() and (ray / "attempt-1" / "run_trial_a").is_dir()
    assert drop_stale_checkpoints(ray) == 0


FULL_DISK_SCRIPT = r"""
import json, sys
from pathlib import Path
from record.rundir import DiskFull, _write_json_atomic, append_line, read_trials
where = Path(sys.argv[1])
run_json = where / "run.json"
_write_json_atomic(run_json, {"version": 1, "note": "first"})
table = where / "table.csv"
table.touch()
append_line(table, ["n", "text"])
n, message = 0, None
try:
    while True:  # a search appending rows until the small file system is full
        append_line(table, [str(n), "x" * 100])
        n += 1
except DiskFull as exc:
    message = str(exc)
try:
    _write_json_atomic(run_json, {"version": 1, "note": "y" * 100000})
    json_message = None
except DiskFull as exc:
    json_message = str(exc)
print(json.dumps({"rows": n, "message": message, "json_message": json_message, "table": table.read_text(),
                  "run_json": run_json.read_text(), "left": sorted(p.name for p in where.iterdir())}))
"""


def test_a_full_disk_keeps_every_complete_line_and_the_last_run_json_and_says_so_in_one_line(tmp_path):
    """A real small file system (tmpfs in the test's own mount namespace) fills while a table is appended
    and run.json rewritten: each write that does not fit is one line naming the file and the space it
    needed; the table holds exactly the rows that fit, no torn line; run.json keeps its last version."""
    where = tmp_path / "small"
    result = run_in_small_fs(where, "32k", FULL_DISK_SCRIPT)
    assert result["rows"] > 10 and "\n" not in result["message"]
    assert result["message"].startswith(f"no space left to write {where / 'table.csv'}")
    assert "free on its file system, this write needed 1" in result["message"] and "--resume" in result["message"]
    assert result["json_message"].startswith(f"no space left to write {where / 'run.json'}")
    text = result["table"]
    assert text.endswith("\n")
    assert text.splitlines() == ["n,text"] + [f"{i},{'x' * 100}" for i in range(result["rows"])]
    assert json.loads(result["run_json"]) == {"version": 1, "note": "first"}
    assert result["left"] == ["run.json", "table.csv"], "the temporary file of the write that failed is gone"

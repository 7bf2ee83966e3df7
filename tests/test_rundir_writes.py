"""record.rundir's small writers in this process: sizes in messages, events.log lines, atomic text, a full disk.

The full-disk end to end (a real size-limited file system) is tests/test_full_disk.py and tests/test_torn_files.py;
these pin the pieces they rely on, in the test process where the mutation run (benchmarks/mutation.py) sees them.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from record import rundir
from record.rundir import DiskFull, append_event, human_size, write_text_atomic


@pytest.mark.parametrize("n, text", [(0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KB"),
                                     (1536, "1.5 KB"), (37_200_000, "35.5 MB"), (3 * 2**30, "3.0 GB"),
                                     (5 * 2**40, "5120.0 GB")])
def test_human_size(n, text):
    assert human_size(n) == text


def test_append_event_writes_a_stamped_line_and_an_indented_detail(tmp_path):
    log = tmp_path / "events.log"
    append_event(log, "first")
    append_event(log, "second", "why it happened")
    lines = log.read_text().split("\n")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(f"{stamp} first", lines[0]) and re.fullmatch(f"{stamp} second", lines[1]), lines
    assert lines[2:] == ["    why it happened", ""]


def test_write_text_atomic_replaces_the_file_through_a_temporary_one(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    write_text_atomic(path, "new ✓")
    assert path.read_text(encoding="utf-8") == "new ✓" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    write_text_atomic(path, "newer", tmp=tmp_path / "other.tmp")
    assert path.read_text() == "newer" and not (tmp_path / "other.tmp").exists()


def _failing_write(code: int):
    def write_text(self, text, encoding=None):
        Path.write_bytes(self, text.encode()[:3])  # a partial temporary file, as a full disk leaves one
        raise OSError(code, "simulated")
    return write_text


def test_a_full_disk_keeps_the_old_file_removes_the_temporary_and_says_what_it_needed(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    path.write_text("old")
    monkeypatch.setattr(Path, "write_text", _failing_write(errno.ENOSPC))
    with pytest.raises(DiskFull) as caught:
        write_text_atomic(path, "x" * 2048)
    monkeypatch.undo()
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    message = str(caught.value)
    assert f"no space left to write {path} (" in message and "this write needed 2.0 KB" in message
    assert "free on its file system" in message and "--resume" in message and "\n" not in message


def test_another_os_error_is_not_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    monkeypatch.setattr(Path, "write_text", _failing_write(errno.EACCES))
    with pytest.raises(PermissionError):
        write_text_atomic(path, "x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_disk_full_on_a_folder_it_cannot_measure_says_zero_free(tmp_path):
    err = DiskFull(tmp_path / "gone" / "trials.csv", 10)
    assert "(0 B free on its file system, this write needed 10 B)" in str(err)
    assert isinstance(err, rundir.RunDirError) and rundir.FULL_DISK == (errno.ENOSPC, errno.EDQUOT)

"""host.files.write_atomic: the whole new file or the old one, never half of either, and no litter."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from host.files import temp_path, write_atomic


def test_bytes_text_and_a_writer_each_land_whole(tmp_path):
    write_atomic(tmp_path / "a.bin", b"\x00\x01")
    write_atomic(tmp_path / "b.json", json.dumps({"é": 1}))
    write_atomic(tmp_path / "c.pt", lambda f: torch.save({"w": torch.arange(3)}, f))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "b.json").read_text(encoding="utf-8")) == {"é": 1}
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json", "c.pt"], "no temporary file left"


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "cache.npz"
    write_atomic(path, lambda f: np.savez(f, x=np.arange(4)))

    def torn(f):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # a kill (Ctrl-C) in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, torn)
    assert np.load(path)["x"].tolist() == [0, 1, 2, 3]
    assert not temp_path(path).exists() and [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_an_unwritable_place_raises_oserror_and_writes_nothing(tmp_path):
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_the_temporary_is_hidden_beside_the_target_and_per_process(tmp_path):
    import os

    tmp = temp_path(tmp_path / "table.json")
    assert tmp.parent == tmp_path and tmp.name.startswith(".table.json.") and str(os.getpid()) in tmp.name

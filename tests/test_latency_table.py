"""The per-block latency table: blocks and keys, building, prediction, the node slot, the search and the report.

A table is really built (a small menu, a few timed runs per block) and a
real search on the session's Ray cluster predicts from it.
"""
from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from commands import in_process
from space import N_BLOCKS, PRESETS, ArchConfig, SearchSpace, build_model
from space.blocks import block_keys, menu_configs, network_blocks
from runtime.latency_table import (LatencyTable, LatencyTableError, MissingEntriesError, build_table,
                                   predict_breakdown, predict_latency)
from runtime.slot import NodeSlot
from runtime.timing import Protocol
from timelimit import time_limit

REPO = Path(__file__).resolve().parents[1]
SMALL = SearchSpace(kernel_sets=((3, 5, 7),), ratios=(2,))
QUICK = Protocol(warmup=2, warmup_s=0.0, min_repeats=5, max_repeats=5, check_every=5)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def small_table(tmp_path_factory) -> Path:
    """A PyTorch-eager table (quick to build: ONNX Runtime tables export every block, test_latency_backends.py)."""
    path = tmp_path_factory.mktemp("table") / "table.json"
    build_table(path, SMALL, protocol=QUICK, backend="torch")
    return path


def _arch(bits: str, **kw) -> ArchConfig:
    return ArchConfig(mca=tuple(c == "1" for c in bits), **kw)


# ------------------------------------------------------------------ blocks and keys

def test_blocks_chain_to_the_network_and_keys_name_the_structure():
    model = build_model(PRESETS["selective_mca"]).eval()
    blocks = network_blocks(model)
    assert [b.kind for b in blocks] == ["stem", *["unit"] * N_BLOCKS, "head"]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        h = x
        for b in blocks:
            assert tuple(h.shape[1:]) == b.input_shape
            h = b.module(h)
        assert torch.allclose(h, model(x))
    keys = [b.key for b in blocks]
    assert keys[13] == keys[15] and keys[14] == keys[16], "bottlenecks 12/14 and 13/15 build identical modules"
    # at 2x2 every kernel set clips to 3-3-3: one entry, not three
    late = {k for kernels in ((3, 5, 7), (5, 7, 11), (7, 11, 21))
            for k in block_keys(_arch("0" * 12 + "1111", kernels=kernels))[13:17]}
    assert len(late) == 2 and all("mca=3-3-3" in k for k in late)
    # at 4x4 they differ (7 is the largest kernel a 4-pixel axis can use)
    mid = {block_keys(_arch("0" * 6 + "1" + "0" * 9, kernels=k))[7] for k in ((3, 5, 7), (5, 7, 11), (7, 11, 21))}
    assert len(mid) == 3


@pytest.mark.parametrize("backbone", ["vgg16", "resnet56"])
def test_every_backbone_splits_into_blocks(backbone):
    from space import presets_for

    model = build_model(presets_for(backbone)["selective_mca"]).eval()
    blocks = network_blocks(model)
    assert len(blocks) == 2 + SearchSpace(backbone=backbone).n_blocks
    assert all(f"net={backbone}" in b.key for b in blocks)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        h = x
        for b in blocks:
            h = b.module(h)
        assert torch.allclose(h, model(x))


def test_menu_configs_cover_every_block_of_the_menu():
    space = SearchSpace(kernel_sets=((3, 5, 7), (5, 7, 11)), ratios=(2, 3))
    covered = {k for c in menu_configs(space) for k in block_keys(c)}
    rng = random.Random(0)
    for _ in range(20):
        arch = ArchConfig(mca=tuple(rng.random() < 0.5 for _ in range(N_BLOCKS)),
                          kernels=rng.choice(space.kernel_sets), ratio=rng.choice(space.ratios))
        assert set(block_keys(arch)) <= covered


def test_menu_flags_parse_in_one_place():
    from search import options
    from space.search_space import parse_ints, parse_kernel_sets

    assert parse_kernel_sets("3-5-7, 5-7-11") == ((3, 5, 7), (5, 7, 11))
    assert parse_ints("2,3,4", "--ratios") == (2, 3, 4)
    with pytest.raises(ValueError, match="--ratios expects integers"):
        parse_ints("2,x", "--ratios")
    assert options.parse_kernel_sets is parse_kernel_sets and options.parse_ints is parse_ints


# ------------------------------------------------------------------ the table

def test_table_records_device_protocol_and_spread(small_table):
    data = json.loads(small_table.read_text())
    assert data["format"] == "ghostnas-latency-table" and data["torch"] == torch.__version__
    assert data["batch_size"] == 1 and data["input_size"] == 32 and data["clock"] == "thread"
    assert data["device"]["type"] == "cpu" and data["device"]["threads"] == 1
    assert data["device"]["label"].startswith("cpu ") and data["device"]["name"]
    needed = {k for c in [*menu_configs(SMALL), *PRESETS.values()] for k in block_keys(c)}
    assert set(data["entries"]) == needed
    for entry in data["entries"].values():
        assert entry["ci_low_ms"] <= entry["median_ms"] <= entry["ci_high_ms"] and entry["n"] == 5
        assert entry["p10_ms"] <= entry["p90_ms"]
    assert [f["preset"] for f in data["overhead"]["fit"]] == list(PRESETS)


def test_prediction_is_the_sum_of_entries_plus_the_constant(small_table):
    table = LatencyTable.load(small_table)
    arch = _arch("0110000111000011")
    keys = block_keys(arch)
    expected = sum(table.entries[k]["median_ms"] for k in keys) + table.data["overhead"]["constant_ms"]
    assert predict_latency(arch, table) == pytest.approx(expected, rel=1e-12)
    assert predict_latency(arch, small_table) == predict_latency(arch, table)  # a path works too


def test_flipping_one_mca_bit_changes_exactly_that_blocks_entry(small_table):
    table = LatencyTable.load(small_table)
    before = _arch("0000011111100000")
    for i in (0, 7, 15):
        bits = list(before.mca)
        bits[i] = not bits[i]
        after = ArchConfig(mca=tuple(bits))
        a, b = predict_breakdown(before, table), predict_breakdown(after, table)
        changed = [j for j in range(len(a)) if a[j] != b[j]]
        assert changed == [i + 1], (i, changed)  # position 0 of the breakdown is the stem
        assert ("mca=-" in a[i + 1][0]) != ("mca=-" in b[i + 1][0])
        assert predict_latency(after, table) - predict_latency(before, table) == pytest.approx(b[i + 1][1] - a[i + 1][1])


@settings(max_examples=12, deadline=None, derandomize=True)  # each example builds 3 networks' block lists
@given(st.lists(st.booleans(), min_size=N_BLOCKS, max_size=N_BLOCKS), st.integers(0, N_BLOCKS - 1))
def test_the_sum_rule_holds_for_any_placement_and_a_block_costs_its_own_entry(small_table, bits, i):
    """Hypothesis over placements: prediction = the blocks' medians + the constant, and MCA on one bottleneck
    changes the prediction by exactly that bottleneck's entries (on minus off), whatever the rest holds."""
    table = _loaded(small_table)
    arch = ArchConfig(mca=tuple(bits))
    expected = sum(table.entries[k]["median_ms"] for k in block_keys(arch)) + table.data["overhead"]["constant_ms"]
    assert predict_latency(arch, table) == pytest.approx(expected, rel=1e-12)
    on, off = (ArchConfig(mca=tuple(b if j != i else v for j, b in enumerate(bits))) for v in (True, False))
    entry_on, entry_off = block_keys(on)[i + 1], block_keys(off)[i + 1]  # position 0 is the stem
    assert predict_latency(on, table) - predict_latency(off, table) == pytest.approx(
        table.entries[entry_on]["median_ms"] - table.entries[entry_off]["median_ms"], abs=1e-9)


@lru_cache(maxsize=None)
def _loaded(path: Path) -> LatencyTable:
    return LatencyTable.load(path)


def test_missing_entries_are_named(small_table):
    arch = _arch("1" + "0" * 15, ratio=3)
    with pytest.raises(MissingEntriesError) as info:
        predict_latency(arch, small_table)
    units = set(block_keys(arch)[1:-1])  # the stem and head do not depend on s
    assert sorted(info.value.keys) == sorted(units) and len(units) == 13  # 16 positions, 3 pairs identical
    assert all("|s=3|" in k for k in units)
    assert "|s=3|d=3|mca=3-5-7" in str(info.value) and "lacks 13 block(s)" in str(info.value)


def test_rebuilding_keeps_measured_entries_and_measures_only_the_missing(small_table, tmp_path):
    path = tmp_path / "t.json"
    path.write_bytes(small_table.read_bytes())
    again = build_table(path, SMALL, protocol=QUICK, backend="torch")
    assert again.measured == 0 and not again.fitted
    assert json.loads(path.read_text()) == json.loads(small_table.read_text())
    data = json.loads(path.read_text())
    dropped = list(data["entries"])[3:6]
    for key in dropped:
        del data["entries"][key]
    data["overhead"] = None  # as a build interrupted before its last step leaves it
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="no fitted overhead"):
        predict_latency(PRESETS["ghostnet"], path)
    resumed = build_table(path, SMALL, protocol=QUICK, backend="torch")
    assert resumed.measured == 3 and resumed.fitted and set(dropped) <= set(resumed.table.entries)
    kept = json.loads(small_table.read_text())["entries"]
    assert all(resumed.table.entries[k] == v for k, v in kept.items() if k not in dropped)
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"], "no temporary file left behind"


def test_cli_refuses_a_table_of_another_device_in_one_line(small_table, tmp_path):
    path = tmp_path / "other.json"
    data = json.loads(small_table.read_text())
    data["device"].update(name="Some Other CPU", label="cpu Some Other CPU, 1 thread")
    path.write_text(json.dumps(data))
    done = in_process("runtime.latency_table", "-o", str(path), "--kernel-sets", "3-5-7", "--ratios", "2",
                      "--latency-backend", "torch")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Some Other CPU" in lines[0] and "choose another -o" in lines[0], done.stderr


@pytest.mark.parametrize("where, message", [("/proc/x.json", "cannot write /proc/x.json"),
                                            ("missing/x.json", "folder missing does not exist")])
def test_cli_refuses_an_output_it_could_never_save_in_one_line(where, message, tmp_path):
    done = in_process("runtime.latency_table", "-o", where, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr


# ------------------------------------------------------------------ the node slot

def test_a_measurement_waits_for_running_epochs_and_goes_before_the_next(tmp_path):
    slot = NodeSlot(tmp_path)
    events: list[str] = []
    in_epoch = threading.Event()
    waiting = threading.Event()

    def trainer() -> None:
        with slot.shared() as held:
            events.append("epoch 1 start")
            in_epoch.set()
            waiting.wait(5)
            time.sleep(0.3)  # the measurement is queued at the gate by now
            events.append("epoch 1 end")
            held.pause()  # the queued measurement runs here, before epoch 2
            events.append("epoch 2 start")

    def measurer() -> None:
        in_epoch.wait(5)
        waiting.set()
        with slot.exclusive():
            events.append("measure")

    # Daemon threads with a time limit: a deadlock fails here, with what happened so far, and never
    # keeps the test process from exiting.
    threads = [threading.Thread(target=trainer, daemon=True), threading.Thread(target=measurer, daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert [t.is_alive() for t in threads] == [False, False], f"deadlocked after {events}"
    assert events == ["epoch 1 start", "epoch 1 end", "measure", "epoch 2 start"]
    with time_limit(10, "exclusive() inside shared() must be refused, not wait for itself"):
        with slot.shared() as held, pytest.raises(RuntimeError, match="wait for itself"):
            with slot.exclusive():
                pass
    with time_limit(10, "a trial trading its own shared hold for the measurement"):
        with slot.shared() as held:
            with held.exclusive():
                pass


# ------------------------------------------------------------------ the search

def _search_args(cifar_dir: Path, storage: Path, name: str, *extra: str) -> list[str]:
    return ["--budget", "smoke", "--epochs", "1", "--train-size", "256", "--data-dir", str(cifar_dir),
            "--storage-path", str(storage), "--name", name, "--no-report", "--kernel-sets", "3-5-7",
            "--ratios", "2", "--baseline-seeds", "1", *extra]


@pytest.mark.e2e
def test_search_with_a_table_records_the_same_latency_in_two_runs(ray_cluster, cifar_dir, small_table, tmp_path):
    """Two searches (run side by side, one trial at a time each) predict the same latency_ms for the same nets."""
    table = LatencyTable.load(small_table)
    procs = [subprocess.Popen([sys.executable, "-m", "search.run",
                               *_search_args(cifar_dir, tmp_path, name, "--trials", "2", "--seed", str(seed),
                                             "--max-concurrent", "1", "--objectives", "val_acc,latency_ms",
                                             "--latency-table", str(small_table), "--latency-backend", "torch",
                                             "--address", ray_cluster)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed, name in enumerate(("a", "b"))]
    runs = []
    for name, proc in zip(("a", "b"), procs):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        with open(tmp_path / name / "trials.csv", newline="") as f:
            runs.append({r["key"]: r for r in csv.DictReader(f)})
        meta = json.loads((tmp_path / name / "run.json").read_text())
        assert meta["latency_source"] == f"table {table.device_label}, {table.backend_label}"
        assert meta["latency_backend"]["name"] == "torch" and meta["latency_table"]["backend"] == table.backend_label
        assert meta["latency_table"]["device"] == table.device_label
        assert meta["latency_layout"] == meta["latency_table"]["layout"] == table.layout
        assert meta["latency_table"]["path"] == str(small_table.resolve())
    shared = set(runs[0]) & set(runs[1])
    assert len(shared) == 2, "the baselines cnn and ghostnet come first in both runs"
    for key in shared:
        assert runs[0][key]["latency_ms"] == runs[1][key]["latency_ms"]
        arch = next(a for a in PRESETS.values() if a.key == key)
        assert float(runs[0][key]["latency_ms"]) == pytest.approx(predict_latency(arch, table))
        assert runs[0][key]["latency_p10_ms"] == ""  # a prediction has no measured spread


def _refused(cifar_dir: Path, tmp_path: Path, table: Path, *extra: str) -> None:
    """Run search.run in-process with a bad table: exit 2, one line, nothing written, Ray not started."""
    import ray

    from search.run import main

    storage = tmp_path / "runs"
    code = main(_search_args(cifar_dir, storage, "refused", "--latency-table", str(table), "--latency-backend",
                             "torch", *extra))
    assert code == 2
    assert list(storage.glob("*")) == [], "nothing written"
    assert not ray.is_initialized()


@pytest.mark.parametrize("case", ["missing", "torch", "malformed", "not-a-table", "backbone"])
def test_a_table_the_search_cannot_use_is_refused_in_one_line(case, cifar_dir, small_table, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    data = json.loads(small_table.read_text())
    extra: tuple[str, ...] = ()
    if case == "missing":
        extra = ("--ratios", "2,3")
        bad.write_text(json.dumps(data))
        expect = ["lacks 26 block(s)", "ratio 3 without MCA (width 1, d 3): 13 blocks",
                  "ratio 3 with MCA 3-5-7 (width 1, d 3): 13 blocks",
                  "--ratios 2,3"]
    elif case == "torch":
        data["torch"] = "1.13.0"
        bad.write_text(json.dumps(data))
        expect = ["built with torch 1.13.0", f"this is torch {torch.__version__}"]
    elif case == "malformed":
        bad.write_text(small_table.read_text()[:-40])
        expect = ["is not valid JSON"]
    elif case == "backbone":
        extra = ("--backbone", "vgg16")
        bad.write_text(json.dumps(data))
        expect = ["times ghostnet blocks", "--backbone vgg16"]
    else:
        bad.write_text(json.dumps({"entries": {}}))
        expect = ["is not a latency table"]
    capsys.readouterr()
    _refused(cifar_dir, tmp_path, bad, *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    what = f"{bad}" if case == "not-a-table" else f"latency table {bad}"
    assert err[0].startswith(f"search.run: error: {what}"), err
    assert all(e in err[0] for e in expect), err


def test_without_a_table_the_run_says_latency_is_measured_in_isolation():
    from search.latency import setup_latency

    import onnxruntime

    setup = setup_latency(None, SMALL, baselines=True, device="cpu", latency_threads=1)
    assert setup.table is None and setup.backend == "onnxruntime"  # the default on the CPU
    assert setup.source.startswith(f"measured in onnxruntime {onnxruntime.__version__} on cpu ")
    assert setup.source.endswith(", 1 thread, isolated")
    meta = setup.run_meta()
    assert meta["latency_source"] == setup.source and meta["latency_table"] is None
    assert meta["latency_layout"] == "onnx"
    assert meta["latency_backend"]["label"] == f"onnxruntime {onnxruntime.__version__}, 1 thread"
    eager = setup_latency(None, SMALL, baselines=True, device="cpu", latency_threads=1, backend="torch")
    assert eager.source.startswith(f"measured in torch {torch.__version__} on cpu ")
    assert eager.run_meta()["latency_layout"] == "channels_last"


# ------------------------------------------------------------------ the report

def test_report_labels_the_latency_axis_with_the_device(tmp_path):
    from analysis import figures
    from analysis.latency_label import latency_axis_label
    from analysis.load import load_run
    from analysis.report import write_report
    from record.arch import to_flat
    from record.rundir import RunDir

    source = "table cpu Test CPU 9000, 1 thread"
    run = RunDir.create(tmp_path / "run", {"name": "run", "objectives": ["val_acc", "latency_ms"],
                                           "directions": ["maximize", "minimize"], "trials": 3,
                                           "latency_source": source})
    for i, (name, arch) in enumerate(PRESETS.items()):
        if i == 3:
            break
        run.table.append({"trial_id": f"t{i}", "status": "ok", "key": arch.key, "preset": name, **to_flat(arch),
                          "val_acc": 0.3 + 0.01 * i, "macs": 10_000_000 + i, "params": 1000, "latency_ms": 5.0 + i})
    run.close()
    page = write_report([tmp_path / "run"], tmp_path / "r.html").read_text()
    assert f"latency_ms (batch 1, {source})" in page
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    fig = figures.tradeoff_figure(load_run(tmp_path / "run").ok, "latency_ms", "t", latency_axis_label([meta]))
    assert fig.layout.xaxis.title.text == f"latency_ms (batch 1, {source})"
    assert latency_axis_label([{}]) == "latency_ms (batch 1, source not recorded)"


def test_a_table_of_the_other_backend_is_refused_in_one_line(cifar_dir, small_table, tmp_path, capsys):
    """A torch table and a run of the default backend (ONNX Runtime on the CPU): one line, exit 2, nothing written."""
    import ray

    from search.run import main

    storage = tmp_path / "runs"
    capsys.readouterr()
    assert main(_search_args(cifar_dir, storage, "refused", "--latency-table", str(small_table))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"was timed in torch {torch.__version__}" in err[0], err
    assert "this run times in onnxruntime" in err[0] and "--latency-backend torch" in err[0]
    assert not storage.exists() or not any(storage.iterdir())
    assert not ray.is_initialized()
    capsys.readouterr()
    assert main(_search_args(cifar_dir, storage, "refused", "--latency-backend", "tensorrt")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown --latency-backend 'tensorrt'; choose from onnxruntime, onnxruntime-int8, torch" in err[0], err

"""Latency backends: the export is checked on every preset and a seeded sample of the menu, ONNX Runtime
times the network as deployed, and `runtime.export` writes the artifact (real torch.onnx, real ONNX Runtime)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from cli_kit import run_main
from space import ArchConfig, SearchSpace, build_model, presets_for
from runtime.backends import BACKENDS, check_backend, default_backend, describe_backend, runner, time_network
from runtime.latency import measure_latency
from runtime.onnx_export import TOLERANCE, ExportError, export_checked, ort_session
from runtime.timing import Protocol

QUICK = Protocol(warmup=2, warmup_s=0.0, min_repeats=10, max_repeats=10, check_every=10)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def sampled(n: int, seed: int) -> list[ArchConfig]:
    """`n` seeded architectures of the three CIFAR backbones' menus, MCA density uniform per architecture."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        space = SearchSpace(backbone=("ghostnet", "vgg16", "resnet56")[i % 3])
        density = rng.random()
        out.append(ArchConfig(mca=tuple(rng.random() < density for _ in range(space.n_blocks)),
                              kernels=rng.choice(space.kernel_sets), ratio=rng.choice(space.ratios),
                              backbone=space.backbone))
    return out


@torch.no_grad()
def calibrated(arch: ArchConfig) -> nn.Module:
    """`arch` with batch-norm statistics of its own activations, as training leaves them.

    Freshly built, eval-mode batch norm is the identity, so an untrained ResNet-56's logits reach the
    thousands and float32 alone differs in the 3rd decimal; a trained network's logits are O(1-10).
    """
    torch.manual_seed(0)
    model = build_model(arch)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a cumulative average over the calibration batches
    model.train()
    for _ in range(4):
        model(torch.randn(8, 3, 32, 32))
    return model.eval()


def _logit_difference(arch: ArchConfig) -> float:
    _, _, diff = export_checked(calibrated(arch), (3, 32, 32), name=arch.key)
    return diff


def test_backend_names_are_spelled_once_and_defaults_follow_the_device():
    from search.options import LATENCY_BACKENDS

    assert LATENCY_BACKENDS == BACKENDS == ("onnxruntime", "onnxruntime-int8", "torch")
    assert default_backend("cpu") == "onnxruntime" and default_backend("cuda") == "torch"
    info = describe_backend("onnxruntime", 1)
    assert info["version"] == onnxruntime.__version__ and info["label"] == f"onnxruntime {onnxruntime.__version__}, 1 thread"
    with pytest.raises(ValueError, match="must be one of onnxruntime, onnxruntime-int8, torch"):
        check_backend("tvm", "cpu")
    with pytest.raises(ValueError, match="times on the CPU"):
        check_backend("onnxruntime", "cuda")


def test_presets_export_with_the_logits_of_pytorch():
    """Quick layer: one preset of each backbone (every preset and 20 sampled architectures: the e2e test)."""
    for backbone, name in (("ghostnet", "selective_mca"), ("vgg16", "all_mca"), ("resnet56", "ghost")):
        assert _logit_difference(presets_for(backbone)[name]) <= TOLERANCE


@pytest.mark.e2e
def test_every_preset_and_a_sample_of_the_menu_export_with_the_logits_of_pytorch():
    archs = [cfg for b in ("ghostnet", "vgg16", "resnet56") for cfg in presets_for(b).values()] + sampled(21, 28)
    diffs = {a.key: _logit_difference(a) for a in archs}
    assert len(diffs) >= 12 + 20
    worst = max(diffs.values())
    print(f"max abs logit difference over {len(diffs)} architectures: {worst:.2e}")
    assert worst <= TOLERANCE


class _Unexportable(nn.Module):
    def forward(self, x):
        return torch.linalg.eigvals(x[0, 0]).real


class _TracesSomethingElse(nn.Module):
    def forward(self, x):
        return x if torch.jit.is_tracing() else x.flip(-1)


def test_an_architecture_that_cannot_export_is_one_line_naming_it(capfd):
    with pytest.raises(ExportError) as info:
        export_checked(_Unexportable(), (3, 4, 4), name="net-x")
    assert "cannot export net-x to ONNX" in str(info.value) and "\n" not in str(info.value)
    assert capfd.readouterr().out == ""  # the exporter's graph dump stays off the terminal
    with pytest.raises(ExportError, match="the ONNX export of net-y computes something else: max abs difference"):
        export_checked(_TracesSomethingElse(), (3, 4, 4), name="net-y")
    with pytest.raises(ExportError, match="net-z"):  # the trial path says it too, never falls back to torch
        measure_latency(_Unexportable(), "cpu", input_size=4, threads=1, backend="onnxruntime", name="net-z")


def test_onnxruntime_times_the_network_and_says_so():
    """What was measured, not how fast: eager against ONNX Runtime is `benchmarks/latency_backends.py`'s figure."""
    model = build_model(presets_for("ghostnet")["ghostnet"])
    lat = measure_latency(model, "cpu", threads=1, warmup=3, repeats=15, backend="onnxruntime")
    assert lat.backend == "onnxruntime" and lat.layout == "onnx" and 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert model.training, "the model's mode is restored"
    for backend in BACKENDS:
        timed = time_network(model, (3, 32, 32), backend=backend, protocol=QUICK)
        assert timed.n == 10 and 0 < timed.median_ms, backend
        with runner(model, (3, 32, 32), backend=backend) as call:  # int8 names its plan (no MCA: two to choose)
            assert call.plan in ({"all", "fp32"} if backend == "onnxruntime-int8" else {None}), (backend, call.plan)


def test_a_run_keeps_its_backend_on_resume_and_one_from_before_backends_keeps_torch():
    from search.latency import setup_latency

    small = SearchSpace(kernel_sets=((3, 5, 7),), ratios=(2,))
    old = {"name": "old", "latency_source": "measured on cpu X, 1 thread, isolated", "latency_table": None}
    setup = setup_latency(None, small, baselines=True, device="cpu", latency_threads=1, stored=old)
    assert setup.backend == "torch" and "created before latency backends and keeps torch" in setup.note
    assert setup.source.startswith(f"measured in torch {torch.__version__}")
    new = {"name": "new", "latency_table": None, "latency_backend": describe_backend("onnxruntime", 1)}
    assert setup_latency(None, small, baselines=True, device="cpu", latency_threads=1, stored=new).backend \
        == "onnxruntime"
    with pytest.raises(ValueError, match="run 'new' times latency in onnxruntime .* drop --latency-backend"):
        setup_latency(None, small, baselines=True, device="cpu", latency_threads=1, stored=new, backend="torch")
    with pytest.raises(ValueError, match="run 'old' times latency in torch"):
        setup_latency(None, small, baselines=True, device="cpu", latency_threads=1, stored=old,
                      backend="onnxruntime")


def test_confirm_md_and_the_report_name_the_runtime():
    from analysis.confirm import confirm_latency_source

    meta = {"latency_backend": describe_backend("onnxruntime", 1)}
    assert confirm_latency_source(meta) == (f"onnxruntime {onnxruntime.__version__}, 1 thread, "
                                            "measured on each training's node")
    assert confirm_latency_source({}).startswith("torch (PyTorch eager)")


# ------------------------------------------------------------------ runtime.export

def _export(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    from runtime.export import PROG, main

    capsys.readouterr()
    code = run_main(main, argv, prog=PROG)
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err.strip().splitlines()


def test_export_writes_a_checked_model_of_a_trained_network_and_times_it(tmp_path, capsys):
    arch = presets_for("ghostnet")["selective_mca"]
    torch.manual_seed(1)
    trained = build_model(arch)
    folder = tmp_path / "train"
    folder.mkdir()
    torch.save(trained.state_dict(), folder / "model.pt")
    (folder / "arch.json").write_text(json.dumps(arch.to_dict()))
    code, out, err = _export([str(folder), "-o", str(tmp_path / "model.onnx")], capsys)
    assert code == 0, err
    assert "logits check: max abs difference" in out[1]
    assert f"onnxruntime {onnxruntime.__version__}, 1 thread" in out[2] and out[2].startswith("latency: ")
    session = ort_session(str(tmp_path / "model.onnx"))
    assert session.get_modelmeta().custom_metadata_map["arch_key"] == arch.key
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = trained.eval()(x).numpy()
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() <= TOLERANCE  # the trained weights
    code, out, _ = _export([str(tmp_path / "model.onnx")], capsys)  # an existing model, timed
    assert code == 0 and out[0].endswith(arch.key) and out[1].startswith("latency: ")


@pytest.mark.parametrize("case", ["missing-onnx", "corrupt-onnx", "no-folder", "proc", "corrupt-checkpoint",
                                  "unknown-arch", "no-output"])
def test_export_refuses_bad_input_in_one_line_and_writes_nothing(case, tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    argv, expect = {
        "missing-onnx": ([str(tmp_path / "none.onnx")], "does not exist"),
        "corrupt-onnx": ([str(tmp_path / "bad.onnx")], "is not an ONNX model ONNX Runtime can load"),
        "no-folder": (["ghostnet", "-o", str(tmp_path / "missing" / "m.onnx")], "does not exist"),
        "proc": (["ghostnet", "-o", "/proc/m.onnx"], "cannot write /proc/m.onnx"),
        "corrupt-checkpoint": ([str(tmp_path / "bad.pt"), "-o", str(tmp_path / "m.onnx")], "cannot read"),
        "unknown-arch": (["nonet", "-o", str(tmp_path / "m.onnx")], "unknown arch 'nonet'"),
        "no-output": (["ghostnet"], "-o FILE"),
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = _export(argv, capsys)
    assert code == 2 and len(err) == 1 and expect in err[0] and err[0].startswith("runtime.export: error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------------ the device round trip

REPO = Path(__file__).resolve().parents[1]
# The device has onnxruntime and numpy only: torch and this project's packages are made unimportable,
# and -I keeps the working directory and PYTHONPATH off sys.path.
NO_TORCH = ("import sys, runpy; sys.modules.update(dict.fromkeys(['torch', 'space', 'trainer', 'search'])); "
            "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _on_device(folder: Path, *args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-I", "-c", NO_TORCH, str(folder / "time_blocks.py"), str(folder), *args,
                           "--min-repeats", "5", "--max-repeats", "5"], cwd=folder.parent, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.e2e
def test_blocks_timed_on_a_device_without_torch_make_a_table_the_search_takes(tmp_path, capsys):
    from search.latency import setup_latency
    from runtime.latency_table import LatencyTable, predict_latency
    from runtime.latency_table.cli import main as table_main

    small = SearchSpace(kernel_sets=((3, 5, 7),), ratios=(2,))
    folder = tmp_path / "blocks"
    assert run_main(table_main, ["export-blocks", str(folder), "--kernel-sets", "3-5-7", "--ratios", "2"],
                    prog="runtime.latency_table") == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    done = _on_device(folder, "-o", str(tmp_path / "table.json"))
    assert done.returncode == 0, done.stderr
    table = LatencyTable.load(tmp_path / "table.json")
    assert table.backend == "onnxruntime" and table.backend_label == f"onnxruntime {onnxruntime.__version__}, 1 thread"
    assert set(table.entries) == set(manifest["blocks"]) and table.overhead_ms is not None
    assert all(predict_latency(cfg, table) > 0 for cfg in presets_for("ghostnet").values())
    setup = setup_latency(tmp_path / "table.json", small, baselines=True, device="cpu", latency_threads=1)
    assert setup.backend == "onnxruntime" and setup.source.endswith(table.backend_label)
    with pytest.raises(ValueError, match="was timed in onnxruntime"):
        setup_latency(tmp_path / "table.json", small, baselines=True, device="cpu", latency_threads=1,
                      backend="torch")
    # a corrupt or missing block: one line naming the file, exit 2, no table
    (folder / manifest["blocks"][next(iter(manifest["blocks"]))]["file"]).write_bytes(b"truncated")
    bad = _on_device(folder, "-o", str(tmp_path / "other.json"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "0000.onnx is not an ONNX model ONNX Runtime can load" in bad.stderr
    (folder / "manifest.json").unlink()
    bad = _on_device(folder, "-o", str(tmp_path / "other.json"))
    assert bad.returncode == 2 and "cannot read" in bad.stderr and "manifest.json" in bad.stderr
    assert not (tmp_path / "other.json").exists()


@pytest.mark.e2e  # quantizes every block of a network and its whole (a minute of CPU)
def test_int8_blocks_timed_on_a_device_keep_each_blocks_fastest_plan_and_an_fp32_run_refuses_the_table(
        tmp_path, cifar_dir, capsys, monkeypatch):
    """export-blocks --int8 on one network's blocks (the selective_mca preset: MCA and plain bottlenecks; the
    menu's other blocks go through the same code), timed by the torch-free timer."""
    import runtime.block_export as block_export
    from runtime.latency_table import LatencyTable
    from runtime.latency_table.cli import main as table_main
    from search.run import main as search_main

    selective = presets_for("ghostnet")["selective_mca"]
    monkeypatch.setattr(block_export, "table_configs", lambda space: [selective])
    monkeypatch.setattr(block_export, "presets_for", lambda backbone: {"selective_mca": selective})
    folder = tmp_path / "blocks8"
    assert run_main(table_main, ["export-blocks", str(folder), "--kernel-sets", "3-5-7", "--ratios", "2", "--int8"],
                    prog="runtime.latency_table") == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backend"] == "onnxruntime-int8" and manifest["quantization"]["format"] == "QDQ"
    plans = {key: set(b["plans"]) for key, b in manifest["blocks"].items()}
    mca = {key for key in plans if "|mca=" in key and "|mca=-" not in key}
    assert mca and all(plans[k] == {"fp32", "all", "mca-fp32"} for k in mca), "an MCA block has three plans"
    assert all(plans[k] == {"fp32", "all"} for k in set(plans) - mca), "a block without MCA has two"
    assert set(manifest["presets"]["selective_mca"]["plans"]) == {"fp32", "all", "mca-fp32"}

    done = _on_device(folder, "-o", str(tmp_path / "table8.json"))
    assert done.returncode == 0, done.stderr
    table = LatencyTable.load(tmp_path / "table8.json")
    assert table.backend == "onnxruntime-int8"
    assert table.backend_label == f"onnxruntime-int8 {onnxruntime.__version__}, 1 thread"
    assert set(table.entries) == set(manifest["blocks"]) and table.overhead_ms is not None
    assert all(table.entries[k]["plan"] in plans[k] for k in plans), "each entry is one of its block's plans"
    # An int8 table given to a run that measures fp32: one line, exit 2, nothing written.
    storage = tmp_path / "runs"
    capsys.readouterr()
    code = search_main(["--budget", "smoke", "--data-dir", str(cifar_dir), "--storage-path", str(storage),
                        "--name", "x", "--latency-table", str(tmp_path / "table8.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "this run times in onnxruntime: use --latency-backend onnxruntime-int8" in err[0], err
    assert not storage.exists() or list(storage.iterdir()) == []


def test_export_blocks_refuses_a_folder_in_use_in_one_line(tmp_path, capsys):
    from runtime.latency_table.cli import main as table_main

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    capsys.readouterr()
    assert run_main(table_main, ["export-blocks", str(tmp_path / "used")], prog="runtime.latency_table") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an empty folder" in err[0]
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["x"]


# ------------------------------------------------------------------ the search

@pytest.mark.e2e
def test_a_search_times_latency_in_onnxruntime_by_default(ray_cluster, cifar_dir, tmp_path):
    """The baselines' latency_ms of a smoke search are measured in ONNX Runtime: run.json, the start-up line and
    every row say so, and each preset has a measured median inside its spread (a table's prediction has none).

    Whether those figures agree with the presets timed alone is a benchmark's figure
    (`benchmarks/search_latency.py`): two timings taken at different moments under the other test
    worker's load say nothing about the product (docs: the test rule).
    """
    import csv
    import math
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "search.run", "--budget", "smoke", "--epochs", "1", "--train-size", "256",
         "--val-size", "200", "--proxy-width", "0.5", "--data-dir", str(cifar_dir), "--storage-path", str(tmp_path),
         "--name", "ort", "--no-report", "--trials", "4", "--baseline-seeds", "1", "--kernel-sets", "3-5-7",
         "--ratios", "2", "--max-concurrent", "1", "--objectives", "val_acc,latency_ms", "--address", ray_cluster],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    label = f"onnxruntime {onnxruntime.__version__}, 1 thread"
    assert f"latency_ms: measured in onnxruntime {onnxruntime.__version__} on cpu " in done.stdout
    meta = json.loads((tmp_path / "ort" / "run.json").read_text())
    assert meta["latency_backend"]["name"] == "onnxruntime" and meta["latency_backend"]["label"] == label
    assert meta["latency_source"].startswith(f"measured in onnxruntime {onnxruntime.__version__}")
    with open(tmp_path / "ort" / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["preset"] for r in rows if r["preset"]} == set(presets_for("ghostnet"))
    for r in rows:
        p10, median, p90 = (float(r[c]) for c in ("latency_p10_ms", "latency_ms", "latency_p90_ms"))
        assert all(math.isfinite(v) for v in (p10, median, p90)) and 0 < p10 <= median <= p90, r

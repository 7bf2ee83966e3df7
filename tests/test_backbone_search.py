"""The paper's other systems end to end, and run directories from before backbones existed.

Real Ray (the session cluster), real Optuna storage, the real CIFAR sample,
real Chromium for the report.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from analysis.load import load_run
from commands import in_process, python_m
from space import ArchConfig, load_arch
from test_report_browser import open_report, trace_lengths

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def rows_of(run: Path) -> list[dict[str, str]]:
    with open(run / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e
def test_a_resnet56_search_reports_selects_and_trains(ray_cluster, cifar_dir, tmp_path, browser):
    """4-trial smoke search on Ghost-ResNet-56 → report in Chromium → analysis.select → trainer.train 1 epoch."""
    done = python_m("search.run", "--backbone", "resnet56", "--trials", "4", "--budget", "smoke", "--epochs", "1",
                    "--train-size", "256", "--val-size", "200", "--objectives", "val_acc,macs", "--max-concurrent", "1",
                    "--baseline-seeds", "1",
                    "--data-dir", str(cifar_dir), "--storage-path", str(tmp_path), "--name", "r56",
                    "--address", ray_cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "r56"
    rows = rows_of(run)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert all(r["backbone"] == "resnet56" and r["key"].startswith("net=resnet56|") for r in rows)
    assert {r["preset"] for r in rows} == {"plain", "ghost", "all_mca", "selective_mca"}
    assert "mca_26" in rows[0] and "mca_27" not in rows[0], "27 insertion points"
    assert json.loads((run / "run.json").read_text())["backbone"] == "resnet56"

    page, errors, blocked = open_report(browser, run / "report.html")
    assert errors == [] and blocked == []
    assert trace_lengths(page, "fig-mca-heatmap") == [2]
    assert page.evaluate("() => document.getElementById('fig-mca-heatmap').data[0].z[0].length") == 27
    page.close()

    best = tmp_path / "best.json"
    chosen = python_m("analysis.select", str(run), "-o", str(best))
    assert chosen.returncode == 0, chosen.stderr
    arch = ArchConfig.load(best)
    assert arch.backbone == "resnet56" and len(arch.mca) == 27
    trained = python_m("trainer.train", "--arch", str(best), "--epochs", "1", "--train-size", "256",
                       "--data-dir", str(cifar_dir), "--out", str(tmp_path / "trained"), "--threads", "2")
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((tmp_path / "trained" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["arch"] == arch.key

    # The study's answer on this backbone: its four presets, Ghost-ResNet-56 the reference (one seed each
    # keeps it short; the Welch columns have their own tests).
    confirmed = python_m("search.confirm", str(run), "--seeds", "1", "--epochs", "1", "--train-size", "128",
                         "--budget", "smoke", "--address", ray_cluster)
    assert confirmed.returncode == 0, confirmed.stdout[-2000:] + confirmed.stderr[-3000:]
    with open(run / "confirm.csv", newline="") as f:
        pairs = sorted((r["system"], r["seed"], r["status"], r["key"].split("|")[0]) for r in csv.DictReader(f))
    assert pairs == sorted((s, "0", "ok", "net=resnet56") for s in ("plain", "ghost", "all_mca", "selective_mca")), \
        "a pick that is a preset is trained once, as the preset"
    table = (run / "confirm.md").read_text()
    assert "Δ vs ghost [95 % CI, Welch]" in table and "| ghost |" in table and "ghostnet" not in table
    assert "needs 2 seeds each" in table and "all_mca vs ghost: not enough seeds to tell" in table


@pytest.mark.e2e
def test_a_run_from_before_backbones_loads_and_resumes(ray_cluster, cifar_dir, tmp_path):
    """tests/fixtures/run-v0.1 was written by the search of version 0.1 (no backbone column, baselines as a list)."""
    run = tmp_path / "run-v0.1"
    shutil.copytree(FIXTURES / "run-v0.1", run)
    before = rows_of(run)
    data = load_run(run)
    assert len(data.trials) == 2 and set(data.trials["backbone"]) == {"ghostnet"}
    assert data.arch(data.trials.iloc[0]).key == before[0]["key"]

    done = python_m("search.run", "--storage-path", str(tmp_path), "--name", "run-v0.1", "--resume",
                    "--trials", "3", "--data-dir", str(cifar_dir), "--no-report", "--address", ray_cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    after = rows_of(run)
    assert len(after) == 3
    for old, new in zip(before, after):  # the old rows are kept as they were (plus the new columns)
        assert {k: v for k, v in new.items() if k not in ("backbone", "seed", "inherited")} == old
        assert new["inherited"] == "", "an old row's accuracy was trained, not inherited: the column is empty"
        assert new["seed"] == "3", "an old row's seed is the run's (3): the only one it trained with"
    assert after[2]["backbone"] == "ghostnet" and after[2]["epochs"] == "1", "stored budget overrides apply"
    assert len({r["key"] for r in after}) == 3


@pytest.mark.e2e
def test_a_best_json_from_before_backbones_loads_and_trains(cifar_dir, tmp_path):
    arch = load_arch(FIXTURES / "best-v0.1.json")
    assert arch.backbone == "ghostnet" and arch.key.startswith("mca=")
    trained = python_m("trainer.train", "--arch", str(FIXTURES / "best-v0.1.json"), "--epochs", "1",
                       "--train-size", "128", "--data-dir", str(cifar_dir), "--out", str(tmp_path / "t"))
    assert trained.returncode == 0, trained.stderr[-3000:]


@pytest.mark.parametrize("module, args, message", [
    ("search.run", ["--backbone", "vgg19"], "choose from ghostnet, vgg16, resnet56"),
    ("search.run", ["--backbone", "resnet50"], "ImageNet"),
    ("search.run", ["--backbone", "vgg16", "--proxy-width", "0.5"], "has no width multiplier"),
    ("trainer.train", ["--arch", "WRONG_LENGTH", "--epochs", "1"], "27 booleans"),
    ("space.describe", ["--backbone", "vgg19"], "vgg19"),
])
def test_bad_backbone_input_is_one_line_exit_2(module, args, message, cifar_dir, tmp_path):
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"backbone": "resnet56", "mca": [False] * 16, "kernels": [3, 5, 7], "ratio": 2}))
    args = [str(wrong) if a == "WRONG_LENGTH" else a for a in args]
    if module != "space.describe":
        args += ["--data-dir", str(cifar_dir)]
    if module == "search.run":
        args += ["--storage-path", str(tmp_path / "runs")]
    done = in_process(module, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr

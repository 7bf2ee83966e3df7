"""The GPU check runs its whole pipeline on the CPU (--dry-run): per-preset layouts, Ray Tune packing, seed tau."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e  # Ray Tune packs trainings
def test_gpu_check_dry_run_prints_its_table(cifar_dir, tmp_path):
    out = tmp_path / "gpu_check.txt"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--data", str(cifar_dir),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert "[dry run: tiny sizes, figures mean nothing]" in text
    for preset in ("cnn", "ghostnet", "all_mca", "selective_mca"):
        assert any(line.startswith(preset) and line.rstrip().endswith("x") for line in text.splitlines()), preset
    rows = [line.split()[:2] for line in text.splitlines()]
    assert ["1", "1"] in rows and ["2", "0.5"] in rows, "1 and 2 trainings packed through Ray Tune"
    assert "recommended --gpus-per-trial " in text and "seed-vs-seed tau=" in text


def test_gpu_check_without_cuda_asks_for_dry_run():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the real check runs")
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "--dry-run" in done.stderr and len(done.stderr.strip().splitlines()) == 1

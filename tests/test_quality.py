"""Quality bar of full training: GhostNet-0.5 learns CIFAR-10 from the 5170-image sample.

Slow (minutes on 2 CPU cores), so it is excluded from the default run;
`pytest -m slow tests/test_quality.py` runs it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 15
TARGET = 0.55


@pytest.mark.slow
def test_ghostnet_half_width_reaches_target_accuracy(cifar_dir, tmp_path):
    """The default full-training recipe must actually train, not just run: >= 55 % test accuracy."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--arch", "ghostnet", "--width", "0.5", "--epochs", str(EPOCHS),
         "--data-dir", str(cifar_dir), "--out", str(out), "--device", "cpu", "--threads", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=3600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 5170  # every training image of the sample
    assert metrics["epochs"] == EPOCHS
    print(proc.stdout)
    assert metrics["test_acc"] >= TARGET, f"test_acc {metrics['test_acc']:.3f} < {TARGET}\n{proc.stdout}"

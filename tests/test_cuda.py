"""The CUDA lane: what only a GPU exercises, in one file.  On a CUDA machine:

    python -m pytest tests/test_cuda.py -m "e2e or not e2e" && python benchmarks/gpu_check.py --data <cifar10>

Skipped, with the reason, where CUDA is absent (this project's CI).  It checks:
bf16 autocast against fp32 on one training step; channels_last on cuDNN; the
`gpu` budget for a few steps; two trainings packed on one GPU through Ray Tune
(`--gpus-per-trial 0.5`); a smoke search and a `search.confirm` on CUDA; and
latency on CUDA in each backend the service offers there.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from space import PRESETS, build_model
from trainer.budget import get_budget
from trainer.data import load_cifar10
from runtime.latency import measure_latency
from trainer.loop import autocast
from trainer.proxy import train_proxy

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: the CUDA lane runs on a GPU machine (see the module docstring)")
CUDA = torch.device("cuda")
# bf16 keeps 8 bits of mantissa: one step's loss agrees with fp32 to about 1 % and its gradients point the
# same way (cosine > 0.99); larger gaps mean autocast covers an op it should not (or misses one it should).
BF16_LOSS_RTOL = 2e-2
BF16_GRAD_COSINE = 0.99


@pytest.fixture(scope="module")
def data(cifar_dir):
    return load_cifar10(cifar_dir)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    if bf16:
        with autocast(CUDA):
            loss = torch.nn.functional.cross_entropy(model(x), y)
    else:
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])


def test_bf16_autocast_step_matches_fp32_within_tolerance(data):
    torch.manual_seed(0)
    model = build_model(PRESETS["selective_mca"]).to(CUDA).train()
    x = (data.train_images[:64].float() / 255).to(CUDA)
    y = data.train_labels[:64].to(CUDA)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss32, grad32 = _step(model, x, y, bf16=False)
    model.load_state_dict(state)  # the same BatchNorm statistics for the second step
    loss16, grad16 = _step(model, x, y, bf16=True)
    assert abs(loss16 - loss32) <= BF16_LOSS_RTOL * abs(loss32), (loss16, loss32)
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0).item()
    assert cosine > BF16_GRAD_COSINE, cosine


def test_channels_last_on_cudnn_gives_the_nchw_logits(data):
    torch.manual_seed(0)
    model = build_model(PRESETS["all_mca"]).to(CUDA).eval()
    x = (data.test_images[:32].float() / 255).to(CUDA)
    with torch.no_grad():
        nchw = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, nchw, atol=1e-3, rtol=1e-3), (cl - nchw).abs().max().item()


def test_the_gpu_budget_trains_a_few_steps_in_bf16_and_channels_last(data):
    budget = get_budget("gpu", epochs=1, train_size=1024, val_size=512)
    assert budget.channels_last
    result = train_proxy(PRESETS["ghostnet"], data, budget, "cuda", seed=0)
    assert result.status == "ok", result.error
    assert 0.0 <= result.val_acc <= 1.0 and result.images_per_s > 0


def test_latency_on_cuda_in_each_backend():
    """torch is the CUDA backend (the default there); onnxruntime refuses CUDA in one line (CPU provider only)."""
    from cli_kit import UserError
    from runtime.backends import check_backend, default_backend

    assert default_backend("cuda") == "torch"
    model = build_model(PRESETS["ghostnet"])
    lat = measure_latency(model, "cuda", warmup=5, repeats=20, backend="torch")
    assert lat.median_ms > 0 and lat.layout == "channels_last"
    with pytest.raises(UserError, match="onnxruntime times on the CPU"):
        check_backend("onnxruntime", "cuda")


def _search(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.e2e
def test_two_trainings_packed_on_one_gpu_then_confirm_on_cuda(cifar_dir, tmp_path):
    """A smoke search with --gpus-per-trial 0.5 (two trainings share the GPU), then search.confirm on CUDA."""
    done = _search("search.run", "--trials", "4", "--budget", "smoke", "--gpus-per-trial", "0.5",
                   "--max-concurrent", "2", "--baseline-seeds", "1", "--objectives", "val_acc,macs,latency_ms",
                   "--data-dir", str(cifar_dir), "--storage-path", str(tmp_path), "--name", "cuda",
                   "--no-dashboard")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "up to 2 at once" in done.stdout
    meta = json.loads((tmp_path / "cuda" / "run.json").read_text())
    assert meta["device"] == "cuda"
    with open(tmp_path / "cuda" / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    confirmed = _search("search.confirm", str(tmp_path / "cuda"), "--seeds", "1", "--epochs", "1",
                        "--train-size", "512", "--budget", "smoke")
    assert confirmed.returncode == 0, confirmed.stdout[-3000:] + confirmed.stderr[-3000:]
    assert (tmp_path / "cuda" / "confirm.md").is_file()

"""Proxy training, the device loader and latency on the real CIFAR-10 sample (CPU)."""
from __future__ import annotations

import pytest
import torch

from space import PRESETS, build_model
from trainer.budget import BUDGETS, get_budget
from trainer.data import load_cifar10
from trainer.device import resolve_device
from trainer.latency import measure_latency
from trainer.loader import MEAN, STD, DeviceLoader
from trainer.proxy import train_proxy


@pytest.fixture(scope="module")
def data(cifar_dir):
    return load_cifar10(cifar_dir)


def test_smoke_proxy_training_beats_chance(data):
    seen = []
    result = train_proxy(PRESETS["ghostnet"], data, get_budget("smoke"), "cpu", seed=0, on_epoch=seen.append)
    assert result.status == "ok" and result.error == ""
    # 516 validation images: chance is 10 % with a standard deviation of 1.3 points.
    assert result.val_acc > 0.14
    assert result.epochs == 1 and len(result.train_losses) == 1 and result.images_per_s > 0
    assert [s.epoch for s in seen] == [1] and seen[0].accuracy == result.val_acc


def test_proxy_training_is_deterministic_on_cpu(data):
    budget = get_budget("smoke", train_size=256)
    a = train_proxy(PRESETS["cnn"], data, budget, "cpu", seed=5)
    b = train_proxy(PRESETS["cnn"], data, budget, "cpu", seed=5)
    assert a.train_losses == b.train_losses and a.val_acc == b.val_acc


def test_absurd_learning_rate_ends_as_diverged(data):
    result = train_proxy(PRESETS["ghostnet"], data, get_budget("smoke", lr=1e6, epochs=3), "cpu")
    assert result.status == "diverged" and result.val_acc is None
    assert "nan" in result.error or "inf" in result.error
    assert result.epochs == 0


def test_loader_augments_on_device_with_crops_and_flips(data):
    images = data.train_images[:64]
    loader = DeviceLoader(images, data.train_labels[:64], 64, torch.device("cpu"), train=True, seed=1)
    raw = loader.augment(images)
    assert raw.shape == images.shape and raw.dtype == torch.uint8
    # Every augmented image is a (possibly flipped) 32x32 window of its zero-padded original.
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(16):
        windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4)
        assert any(torch.equal(w, raw[i]) or torch.equal(w.flip(-1), raw[i]) for w in windows.reshape(-1, 3, 32, 32))
    assert not torch.equal(raw, images)


def test_eval_loader_is_ordered_normalised_and_complete(data):
    loader = DeviceLoader(data.test_images[:1000], data.test_labels[:1000], 300, torch.device("cpu"), train=False)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [300, 300, 300, 100]
    x0 = batches[0][0][0]
    expected = (data.test_images[0].float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(x0, expected, atol=1e-5)


def test_latency_reports_spread_and_restores_model_state():
    model = build_model(PRESETS["ghostnet"]).train()
    threads = torch.get_num_threads()
    lat = measure_latency(model, "cpu", threads=1, warmup=2, repeats=7)
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms and lat.cv >= 0
    assert lat.threads == 1 and lat.device == "cpu"
    assert model.training and torch.get_num_threads() == threads


def test_budgets_and_overrides():
    assert set(BUDGETS) == {"smoke", "cpu", "gpu"}
    assert get_budget("cpu", epochs=7, lr=None).epochs == 7
    with pytest.raises(ValueError, match="unknown --budget 'huge'"):
        get_budget("huge")
    with pytest.raises(ValueError, match="--epochs must be positive"):
        get_budget("smoke", epochs=0)


def test_device_resolution():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")

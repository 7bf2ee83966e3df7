"""Proxy training, the device loader and latency on the real CIFAR-10 sample (CPU)."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from space import PRESETS, build_model, count_params
from trainer.budget import BUDGETS, get_budget, run_budget
from trainer.data import load_cifar10
from host.device import resolve_device
from runtime.latency import measure_latency
from trainer.loader import MEAN, STD, DeviceLoader
from trainer.loop import evaluate_accuracy, make_training, train_epoch
from trainer.proxy import proxy_arch, train_proxy
from host.device import LAYOUT


@pytest.fixture(scope="module")
def data(cifar_dir):
    return load_cifar10(cifar_dir)


@pytest.mark.e2e
def test_smoke_proxy_training_beats_chance(data):
    seen = []
    result = train_proxy(PRESETS["ghostnet"], data, get_budget("smoke"), "cpu", seed=0, on_epoch=seen.append)
    assert result.status == "ok" and result.error == ""
    # 516 validation images: chance is 10 % with a standard deviation of 1.3 points.
    assert result.val_acc > 0.14
    assert result.epochs == 1 and len(result.train_losses) == 1 and result.images_per_s > 0
    assert [s.epoch for s in seen] == [1] and seen[0].accuracy == result.val_acc


def test_proxy_training_is_deterministic_on_cpu(data):
    budget = get_budget("smoke", train_size=256, val_size=100, bn_images=64)
    a = train_proxy(PRESETS["cnn"], data, budget, "cpu", seed=5)
    b = train_proxy(PRESETS["cnn"], data, budget, "cpu", seed=5)
    assert a.train_losses == b.train_losses and a.val_acc == b.val_acc


def test_absurd_learning_rate_ends_as_diverged(data):
    result = train_proxy(PRESETS["ghostnet"], data, get_budget("smoke", lr=1e6, epochs=3, train_size=256, val_size=100), "cpu")
    assert result.status == "diverged" and result.val_acc is None
    assert re.fullmatch(r"training loss became (nan|-?inf) at epoch 1(, step \d+)?", result.error), result.error
    assert result.epochs == 0


def test_loader_augments_on_device_with_crops_and_flips(data):
    images = data.train_images[:64]
    loader = DeviceLoader(images, data.train_labels[:64], 64, torch.device("cpu"), train=True, seed=1)
    raw = loader.augment(images)
    assert raw.shape == images.shape and raw.dtype == torch.uint8
    # Every augmented image is a 32x32 window of its zero-padded original, flipped or not; with
    # this seed both kinds occur among the first 16, and some windows are shifted (crops).
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    kinds = []
    for i in range(16):
        windows = list(padded[i].unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, 32, 32))
        plain = any(torch.equal(w, raw[i]) for w in windows)
        flipped = any(torch.equal(w.flip(-1), raw[i]) for w in windows)
        assert plain != flipped, f"image {i} is not exactly one window, flipped or not"
        kinds.append("flipped" if flipped else "plain")
    assert set(kinds) == {"plain", "flipped"}, kinds
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
    during: list[tuple[int, bool]] = []  # what each pass ran with, not what the result echoes
    model.register_forward_pre_hook(lambda m, _args: during.append((torch.get_num_threads(), m.training)))
    lat = measure_latency(model, "cpu", threads=1, warmup=2, repeats=7)
    assert during == [(1, False)] * 9, "one thread, eval mode, 2 warm-up + 7 timed passes"
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms and lat.ci_low_ms <= lat.median_ms <= lat.ci_high_ms
    assert lat.p10_ms < lat.p90_ms and lat.n == 7  # seven timed passes of a real network never take the same ns
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


def test_proxy_knobs_are_validated_and_described():
    with pytest.raises(ValueError, match="--proxy-width must be in"):
        get_budget("cpu", proxy_width=1.5)
    with pytest.raises(ValueError, match="--ema must be in"):
        get_budget("cpu", ema=1.0)
    with pytest.raises(ValueError, match="--epoch-images must be positive"):
        get_budget("cpu", epoch_images=0)
    text = get_budget("cpu", epochs=2, epoch_images=30_000, proxy_width=0.5, ema=0.98, tta=True).trained_as()
    assert text.startswith("2 epochs of 30,000 images per epoch from the whole training split at proxy width x0.5")
    assert "EMA 0.98" in text and "flip TTA" in text
    assert get_budget("smoke").trained_as().startswith("1 epoch of 1,024 training images, batch 64")


def test_run_budget_keeps_what_a_run_was_created_with():
    # A run from before budgets were recorded resumes with its preset as it was then (NCHW on the CPU).
    old = run_budget({"budget": "cpu", "budget_overrides": {"epochs": 3}})
    assert (old.epochs, old.channels_last, old.proxy_width) == (3, False, 1.0)
    recorded = get_budget("smoke", proxy_width=0.25, epoch_images=100)
    again = run_budget({"budget": "smoke", "budget_settings": dataclasses.asdict(recorded)}, val_size=300)
    assert again == dataclasses.replace(recorded, val_size=300)


def test_epoch_images_draw_a_fresh_subset_every_epoch(data):
    images, labels = data.train_images[:200], torch.arange(200)
    loader = DeviceLoader(images, labels, 25, torch.device("cpu"), train=True, seed=3, epoch_images=100)
    assert len(loader) == 4
    first = torch.cat([y for _, y in loader])
    second = torch.cat([y for _, y in loader])
    assert len(first) == len(second) == 100 and len(set(first.tolist())) == 100
    assert set(first.tolist()) != set(second.tolist()), "each epoch draws its own images"
    # Evaluation loaders ignore it: they always see every image.
    assert len(DeviceLoader(images, labels, 25, torch.device("cpu"), train=False, epoch_images=100)) == 8


def test_proxy_width_trains_a_narrower_copy(data):
    budget = get_budget("smoke", train_size=256, proxy_width=0.5, val_size=100, bn_images=64)
    arch = PRESETS["ghostnet"]
    assert proxy_arch(arch, budget).width == 0.5 and proxy_arch(arch, get_budget("smoke")) is arch
    assert count_params(build_model(proxy_arch(arch, budget))) < count_params(build_model(arch)) / 2
    result = train_proxy(arch, data, budget, "cpu", seed=0)
    assert result.status == "ok" and 0 <= result.val_acc <= 1


def test_weight_average_is_what_gets_evaluated(data):
    budget = get_budget("smoke", train_size=256, ema=0.9)
    torch.manual_seed(0)
    model = build_model(PRESETS["cnn"])
    loader = DeviceLoader(data.train_images[:256], data.train_labels[:256], 64, torch.device("cpu"), seed=0)
    training = make_training(model, loader, budget)
    assert training.ema is not None and training.evaluated is training.ema.module
    train_epoch(model, loader, training.optimizer, training.scheduler, training.criterion, ema=training.ema)
    w, avg = next(model.parameters()), next(training.evaluated.parameters())
    assert not torch.equal(w, avg), "the average lags the weights"
    assert make_training(model, loader, get_budget("smoke")).evaluated is model


def test_flip_tta_averages_each_image_with_its_mirror(data):
    torch.manual_seed(0)
    model = build_model(PRESETS["cnn"]).eval()
    loader = DeviceLoader(data.test_images[:200], data.test_labels[:200], 100, torch.device("cpu"), train=False)
    with torch.no_grad():
        correct = sum(int(((model(x) + model(x.flip(-1))).argmax(1) == y).sum()) for x, y in loader)
    assert evaluate_accuracy(model, loader, tta=True) == correct / 200


def test_channels_last_training_is_deterministic_and_the_default(data):
    assert all(b.channels_last for b in BUDGETS.values())
    budget = get_budget("smoke", train_size=128, val_size=100, bn_images=64)
    a = train_proxy(PRESETS["selective_mca"], data, budget, "cpu", seed=2)
    b = train_proxy(PRESETS["selective_mca"], data, budget, "cpu", seed=2)
    assert a.status == "ok" and a.train_losses == b.train_losses and a.val_acc == b.val_acc


def _layouts_seen(model: torch.nn.Module) -> list[tuple[bool, bool]]:
    """Per forward pass of `model`: (input in channels_last, stem weight in channels_last), as the network sees them."""
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    seen: list[tuple[bool, bool]] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(
        (args[0].is_contiguous(memory_format=torch.channels_last),
         stem.weight.is_contiguous(memory_format=torch.channels_last))))
    return seen


def test_latency_is_measured_in_the_deployment_layout():
    # What the timed passes received, not what the result says: 1 warm-up + 3 timed passes each.
    nchw = build_model(PRESETS["ghostnet"])
    seen = _layouts_seen(nchw)
    assert measure_latency(nchw, "cpu", threads=1, warmup=1, repeats=3, layout="nchw").layout == "nchw"
    assert seen == [(False, False)] * 4
    deployed = build_model(PRESETS["ghostnet"])
    seen = _layouts_seen(deployed)
    assert measure_latency(deployed, "cpu", threads=1, warmup=1, repeats=3).layout == LAYOUT == "channels_last"
    assert seen == [(True, True)] * 4
    with pytest.raises(ValueError, match="layout must be one of"):
        measure_latency(deployed, "cpu", threads=1, warmup=1, repeats=3, layout="nhwc")

"""The training layout is measured, chosen by its timings, cached per machine and budget, and applied to the budget."""
from __future__ import annotations

import json

import pytest

from space import PRESETS
from trainer.budget import get_budget
from trainer.data import load_cifar10
from trainer.layout import LAYOUTS, LayoutChoice, cache_key, choose_layout, faster, layout_for

TINY = dict(batch_size=16, proxy_width=0.25)
ARCHS = [PRESETS["cnn"], PRESETS["all_mca"]]


@pytest.fixture(scope="module")
def data(cifar_dir):
    return load_cifar10(cifar_dir)


def test_the_faster_layout_is_chosen_from_both_timings(data):
    budget = get_budget("cpu", **TINY)
    choice = choose_layout(ARCHS, data, budget, "cpu", threads=1, steps=2, rounds=1, names=["cnn", "all_mca"])
    assert set(choice.seconds_per_step) == set(LAYOUTS)
    assert all(v > 0 for v in choice.seconds_per_step.values())
    assert choice.seconds_per_step[choice.layout] == min(choice.seconds_per_step.values())
    assert choice.speedup() >= 1.0
    assert (choice.archs, choice.threads, choice.steps, choice.rounds) == (("cnn", "all_mca"), 1, 2, 1)
    meta = choice.to_meta()
    assert meta["layout"] == choice.layout and meta["seconds_per_step"] == choice.seconds_per_step
    assert choice.layout in choice.line() and "per step of cnn+all_mca" in choice.line()


def test_apply_sets_the_budgets_layout_and_nothing_else():
    budget = get_budget("cpu")
    nchw = LayoutChoice("nchw", {"channels_last": 2.0, "nchw": 1.0}, 2, 1, 1, "cpu", ("x",)).apply(budget)
    assert nchw.channels_last is False
    assert nchw == get_budget("cpu", channels_last=False)
    assert LayoutChoice("channels_last", {"channels_last": 1.0, "nchw": 2.0}, 2, 1, 1, "cpu", ("x",)).apply(
        nchw).channels_last is True


def test_the_fewer_seconds_win_and_a_tie_goes_to_channels_last():
    assert faster({"channels_last": 2.0, "nchw": 1.0}) == "nchw"
    assert faster({"nchw": 1.0, "channels_last": 1.5}) == "nchw"
    assert faster({"channels_last": 1.0, "nchw": 1.0}) == "channels_last"
    assert faster({"nchw": 1.0, "channels_last": 1.0}) == "channels_last"
    tie = LayoutChoice("channels_last", {"channels_last": 1.0, "nchw": 1.0}, 2, 1, 1, "cpu", ("x",))
    assert tie.speedup() == 1.0


def test_the_choice_is_measured_once_per_machine_and_budget(data, tmp_path):
    budget = get_budget("cpu", **TINY)
    first = layout_for(ARCHS, data, budget, "cpu", threads=1, steps=1, rounds=1, cache=tmp_path)
    assert not first.cached
    files = list(tmp_path.glob("layout-*.json"))
    assert len(files) == 1
    again = layout_for(ARCHS, data, budget, "cpu", threads=1, steps=1, rounds=1, cache=tmp_path)
    assert again.cached and again.layout == first.layout and again.seconds_per_step == first.seconds_per_step
    assert "cached" in again.line()
    # Epochs, image counts and the current layout do not change a step's cost: same key.
    same = get_budget("cpu", **TINY, epochs=7, train_size=999, channels_last=False)
    assert cache_key(ARCHS, same, "cpu", 1, 1, 1) == cache_key(ARCHS, budget, "cpu", 1, 1, 1)
    # The batch, the width, the threads and the architectures do.
    assert cache_key(ARCHS, get_budget("cpu", batch_size=32, proxy_width=0.25), "cpu", 1, 1, 1) != \
        cache_key(ARCHS, budget, "cpu", 1, 1, 1)
    assert cache_key(ARCHS, budget, "cpu", 2, 1, 1) != cache_key(ARCHS, budget, "cpu", 1, 1, 1)
    assert cache_key(ARCHS[:1], budget, "cpu", 1, 1, 1) != cache_key(ARCHS, budget, "cpu", 1, 1, 1)


def test_a_corrupt_cache_file_is_measured_again(data, tmp_path):
    budget = get_budget("cpu", **TINY)
    key = cache_key(ARCHS, budget, "cpu", 1, 1, 1)
    (tmp_path / f"layout-{key}.json").write_text("{not json")
    choice = layout_for(ARCHS, data, budget, "cpu", threads=1, steps=1, rounds=1, cache=tmp_path)
    assert not choice.cached
    stored = json.loads((tmp_path / f"layout-{key}.json").read_text())
    assert stored["layout"] == choice.layout and stored["seconds_per_step"] == choice.seconds_per_step

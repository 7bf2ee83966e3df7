"""`python -m search.int8`: a trained network written as the int8 model a device runs, scored beside fp32
(real export, real ONNX Runtime quantization, the real CIFAR sample).  What it wrote and computed, never how
fast: the plans' speed is `benchmarks/int8_plans.py`'s figure."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from cli_kit import run_main
from runtime.onnx_export import ort_session
from runtime.quantize import top1
from space import presets_for
from test_latency_backends import calibrated

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _int8(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    from search.int8 import PROG, main

    capsys.readouterr()
    code = run_main(main, argv, prog=PROG)
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err.strip().splitlines()


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A trainer.train output folder (arch.json + model.pt) of the selective_mca preset, BN statistics calibrated."""
    arch = presets_for("ghostnet")["selective_mca"]
    folder = tmp_path_factory.mktemp("train")
    torch.save(calibrated(arch).state_dict(), folder / "model.pt")
    (folder / "arch.json").write_text(json.dumps(arch.to_dict()))
    return arch, folder


def _test_batch(cifar_dir):
    from search.int8 import _images
    from trainer.budget import get_budget
    from trainer.data import load_cifar10
    from trainer.proxy import training_loaders

    _, test, _ = training_loaders(load_cifar10(cifar_dir), get_budget("smoke", channels_last=False), 0,
                                  torch.device("cpu"), "test", with_training=False)
    return _images(test)


def test_writes_the_int8_model_it_scored_with_its_plan_and_both_accuracies(trained_folder, cifar_dir, tmp_path, capsys):
    arch, folder = trained_folder
    out_file = tmp_path / "best.int8.onnx"
    code, out, err = _int8([str(folder), "-o", str(out_file), "--data-dir", str(cifar_dir), "--calibration", "32"],
                           capsys)
    assert code == 0, err
    # An MCA network: all three plans are built and timed, and the fastest is shipped.
    plans = dict((p, float(ms)) for p, ms in re.findall(r"(all|mca-fp32|fp32) ([\d.]+) ms", out[0]))
    assert set(plans) == {"all", "mca-fp32", "fp32"}, out[0]
    shipped = re.search(r"int8 plan (\S+) \(the fastest", out[0]).group(1)
    assert plans[shipped] == min(plans.values())
    assert "calibrated on 32 un-augmented training images" in out[1] and "scored on 1017 test images" in out[1]
    accs = re.search(r"fp32 ([\d.]+) %, int8 ([\d.]+) % \(int8 - fp32 ([+-][\d.]+) points \[([+-][\d.]+), "
                     r"([+-][\d.]+)\], 95 % CI paired by image\); top-1 agreement ([\d.]+) %", out[2])
    assert accs, out[2]
    fp32, int8, delta, low, high, agree = map(float, accs.groups())
    assert delta == pytest.approx(int8 - fp32, abs=0.011) and low <= delta <= high and 0 < agree <= 100

    # The file is the model that was scored: it says what it is, and classifies the test batch as printed.
    session = ort_session(str(out_file))
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["arch_key"] == arch.key and meta["producer"] == "ghostnas search.int8"
    assert json.loads(meta["quantization"])["plan"] == shipped and json.loads(meta["quantization"])["format"] == "QDQ"
    images, labels = _test_batch(cifar_dir)
    assert 100 * np.mean(top1(session, images) == labels) == pytest.approx(int8, abs=0.005)
    ops = {n.op_type for n in __import__("onnx").load(str(out_file)).graph.node}
    assert ("QuantizeLinear" in ops) == (shipped != "fp32")


def test_an_untrained_architecture_says_its_accuracy_means_nothing(cifar_dir, tmp_path, capsys):
    code, out, err = _int8(["cnn", "-o", str(tmp_path / "cnn.int8.onnx"), "--data-dir", str(cifar_dir),
                            "--calibration", "8"], capsys)
    assert code == 0, err
    assert out[-1].startswith("untrained weights: these accuracies mean nothing")


@pytest.mark.parametrize("case", ["missing", "no-folder", "calibration", "threads", "data", "imagenet", "no-output"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, trained_folder, cifar_dir, tmp_path, capsys):
    _, folder = trained_folder
    target = str(tmp_path / "m.onnx")
    argv, expect = {
        "missing": ([str(tmp_path / "nope.pt"), "-o", target], "does not exist"),
        "no-folder": ([str(folder), "-o", str(tmp_path / "gone" / "m.onnx")], "folder"),
        "calibration": ([str(folder), "-o", target, "--calibration", "0"], "--calibration must be at least 1"),
        "threads": ([str(folder), "-o", target, "--threads", "0"], "--threads must be at least 1"),
        "data": ([str(folder), "-o", target, "--data-dir", str(tmp_path / "no-cifar")], "CIFAR-10"),
        "imagenet": (["resnet50:plain", "-o", target], "not a CIFAR-10 network"),
        "no-output": ([str(folder)], "-o"),
    }[case]
    if case not in ("data", "imagenet"):
        argv += ["--data-dir", str(cifar_dir)]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = _int8(argv, capsys)
    assert code == 2 and len(err) == 1 and expect in err[0] and err[0].startswith("search.int8: error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before

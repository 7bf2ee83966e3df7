"""`python -m trainer.train` end to end on the real CIFAR-10 sample: files, resume, user errors.

The first training runs the real CLI in a subprocess (as a user would); the
others run its `__main__` in-process (tests/commands.py), which skips only the
interpreter's start.  A width-0.25 arch and a 256-image training subset
(`--train-size`) make each training seconds.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from commands import in_process, python_m

from space import ArchConfig, get_preset

FAST = ["--train-size", "256", "--batch-size", "64", "--device", "cpu", "--threads", "1"]


def train(*args: str) -> subprocess.CompletedProcess:
    return in_process("trainer.train", *args)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("trainer.train: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def best_json(tmp_path_factory) -> Path:
    """An ArchConfig JSON as analysis.select writes it (best.json): selective MCA at width 0.25."""
    arch = ArchConfig(**{**get_preset("selective_mca").to_dict(), "width": 0.25})
    path = tmp_path_factory.mktemp("arch") / "best.json"
    path.write_text(json.dumps(arch.to_dict(), indent=2) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(best_json, cifar_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One epoch of a best.json architecture: (out dir, finished process)."""
    out = tmp_path_factory.mktemp("train") / "run"
    proc = python_m("trainer.train", "--arch", str(best_json), "--epochs", "1", "--data-dir", str(cifar_dir),
                    "--out", str(out), *FAST, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def test_train_writes_model_arch_and_metrics(trained, best_json):
    out, proc = trained
    assert {"checkpoint.pt", "model.pt", "arch.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.tmp"))
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("epoch 1/1 loss ") and " test_acc " in lines[0] and "img/s ETA 0:00:00" in lines[0]
    arch = ArchConfig.load(out / "arch.json")
    assert arch == ArchConfig.load(best_json)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arch"] == arch.key
    assert metrics["epochs"] == 1 and len(metrics["history"]) == 1
    epoch = metrics["history"][0]
    assert set(epoch) >= {"train_loss", "test_acc", "images_per_s", "seconds"}
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["test_acc"] == epoch["test_acc"]
    assert metrics["macs"] > 0 and metrics["params"] > 0 and metrics["device"] == "cpu"
    assert metrics["train_images"] == 256 and metrics["seconds"] > 0
    state = torch.load(out / "model.pt", weights_only=True)
    from space import build_model
    build_model(arch).load_state_dict(state)  # the weights fit the arch they are saved with


def test_resume_continues_to_the_total_epochs(trained, cifar_dir, best_json):
    out, _ = trained
    before = json.loads((out / "metrics.json").read_text())["history"][0]
    proc = train("--arch", str(best_json), "--epochs", "2", "--data-dir", str(cifar_dir), "--out", str(out),
                 "--resume", "--device", "cpu", "--threads", "1")  # settings come from the checkpoint
    assert proc.returncode == 0, proc.stdout + proc.stderr
    epochs = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("epoch 2/2 ")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["history"][0] == before
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_resume_with_another_arch_is_a_user_error(trained, cifar_dir):
    out, _ = trained
    proc = train("--arch", "ghostnet", "--width", "0.25", "--epochs", "3", "--data-dir", str(cifar_dir),
                 "--out", str(out), "--resume", "--device", "cpu")
    assert_user_error(proc, "differs from the checkpoint")


def test_existing_checkpoint_without_resume_is_a_user_error(trained, cifar_dir, best_json):
    out, _ = trained
    proc = train("--arch", str(best_json), "--data-dir", str(cifar_dir), "--out", str(out), *FAST)
    assert_user_error(proc, "--resume", "--out")


@pytest.mark.parametrize("case", ["unknown_arch", "malformed_json", "missing_data", "resume_without_checkpoint",
                                  "cuda_absent", "bad_epochs", "unknown_flag"])
def test_user_errors_exit_2_with_one_line_and_write_nothing(case, cifar_dir, tmp_path):
    if case == "cuda_absent" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    bad_json = tmp_path / "best.json"
    bad_json.write_text('{"mca": [true, false,')
    out = tmp_path / "out"
    base = ["--data-dir", str(cifar_dir), "--out", str(out), "--epochs", "1"]
    args, needle = {
        "unknown_arch": (["--arch", "no_such_arch", *base], "no_such_arch"),
        "malformed_json": (["--arch", str(bad_json), *base], "malformed"),
        "missing_data": (["--arch", "ghostnet", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)],
                         "not found"),
        "resume_without_checkpoint": (["--arch", "ghostnet", "--resume", *base], "no checkpoint.pt"),
        "cuda_absent": (["--arch", "ghostnet", "--device", "cuda", *base], "CUDA"),
        "bad_epochs": (["--arch", "ghostnet", *base, "--epochs", "0"], "--epochs"),
        "unknown_flag": (["--arch", "ghostnet", "--no-such-flag", *base], "--no-such-flag"),
    }[case]
    assert_user_error(train(*args, "--device", "cpu") if case != "cuda_absent" else train(*args), needle)
    assert not out.exists()


def test_divergence_exits_1_with_a_message(cifar_dir, tmp_path):
    """An absurd learning rate makes the loss NaN: a clear message and exit 1, not a traceback."""
    proc = train("--arch", "ghostnet", "--width", "0.25", "--epochs", "2", "--data-dir", str(cifar_dir),
                 "--out", str(tmp_path / "out"), "--train-size", "128", "--batch-size", "32", "--lr", "1e12",
                 "--device", "cpu", "--threads", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "diverged" in proc.stderr and "--lr" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory) -> Path:
    """A supernet file as a one-shot search writes it (its menu at proxy width 0.25, random weights)."""
    from space import SearchSpace
    from space.supernet import Supernet, supernet_space

    space = supernet_space(SearchSpace(kernel_sets=((3, 5, 7),), ratios=(2, 3)), 0.25)
    torch.manual_seed(3)
    net = Supernet(space)
    path = tmp_path_factory.mktemp("supernets") / "seed-0.pt"
    torch.save({"meta": {"space": space.to_dict()}, "state_dict": net.state_dict(), "seed": 0}, path)
    return path


def test_inherit_fine_tunes_the_path_a_supernet_holds(supernet_file, best_json, cifar_dir, tmp_path):
    """`--inherit`: the training starts from the path's weights (space.supernet.extract), not a fresh init."""
    import trainer.train as train_mod
    from trainer.supernet import load_supernet

    args = train_mod.build_parser().parse_args(["--arch", str(best_json), "--inherit", str(supernet_file),
                                                 "--epochs", "1", "--data-dir", str(cifar_dir),
                                                 "--out", str(tmp_path / "ft"), *FAST])
    setup = train_mod.prepare(args)
    arch = ArchConfig.from_dict(json.loads(best_json.read_text()))
    want = load_supernet(supernet_file).extract(arch).state_dict()
    started = {}
    real_make_training = train_mod.make_training

    def spy(model, *rest, **kw):  # the weights the training starts from, before its first step
        started.update({k: v.clone() for k, v in model.state_dict().items()})
        return real_make_training(model, *rest, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "make_training", spy)
        assert train_mod.run(setup) == 0
    assert started.keys() == want.keys() and all(torch.equal(started[k], want[k]) for k in want)
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["inherited_from"] == str(supernet_file.resolve()) == metrics["settings"]["inherit"]
    again = train("--arch", str(best_json), "--inherit", str(supernet_file), "--resume", "--data-dir", str(cifar_dir),
                  "--out", str(tmp_path / "ft"), *FAST)
    assert_user_error(again, "a resumed training continues from its checkpoint (drop --inherit)")
    # A fresh training of the same arch and seed starts elsewhere.
    fresh = train_mod.prepare(train_mod.build_parser().parse_args(
        ["--arch", str(best_json), "--data-dir", str(cifar_dir), "--out", str(tmp_path / "fresh"), *FAST]))
    assert fresh.inherit is None and fresh.inherit_path is None


@pytest.mark.parametrize("extra, says", [
    (["--width", "1.0"], "holds width-0.25 copies (it trained at a proxy width); add --width 0.25"),
    (["--arch", "cnn"], "outside the supernet's menu"),
    (["--inherit", "README.md"], "README.md is not a supernet file of search.run --strategy oneshot"),
    (["--inherit", "nowhere.pt"], "--inherit nowhere.pt: no such file"),
])
def test_inherit_refuses_what_the_supernet_cannot_give_in_one_line(supernet_file, best_json, cifar_dir, tmp_path,
                                                                   extra, says):
    args = ["--arch", str(best_json), "--inherit", str(supernet_file), "--data-dir", str(cifar_dir),
            "--out", str(tmp_path / "x"), *FAST]
    for flag in ("--arch", "--inherit"):
        if flag in extra:
            i = args.index(flag)
            args[i:i + 2] = []
    if "--arch" in extra and "--width" not in extra:
        extra = [*extra, "--width", "0.25"]
    assert_user_error(train(*args, *extra), says)
    assert not (tmp_path / "x").exists()

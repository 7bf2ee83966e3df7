"""`search.run --strategy oneshot` end to end: supernets on Ray Tune, a kill -9 mid-training, scores in the table."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from cluster_faults import checkpointed
from cli_kit import UserError
from commands import in_process
from test_search import _start, read_rows, search, smoke_args

@pytest.mark.e2e  # trains supernets on Ray
def test_a_oneshot_search_trains_supernets_resumes_them_and_scores_every_architecture_on_each(
        ray_cluster, cifar_dir, tmp_path):
    flags = ["--strategy", "oneshot", "--supernets", "2", "--supernet-epochs", "3", "--trials", "8",
             "--train-size", "512", "--objectives", "val_acc,macs", "--max-concurrent", "2", "--address", ray_cluster]
    args = smoke_args(cifar_dir, tmp_path, "oneshot", *flags)
    run = tmp_path / "oneshot"
    proc = _start(args)
    # kill -9 once a supernet's epoch checkpoint is persisted (never on a reported epoch: see tests/cluster_faults.py)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if any(e >= 1 for e in checkpointed(run.glob("ray/supernets-1/experiment_state-*.json")).values()):
            break
        assert proc.poll() is None, "search ended before a supernet checkpoint: " + proc.stderr.read()[-2000:]
        time.sleep(0.2)
    else:
        raise AssertionError("no supernet checkpoint after 300 s")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not list((run / "supernets").glob("*.pt")) or len(list((run / "supernets").glob("*.pt"))) < 2

    done = search(*args, "--resume")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "from an earlier attempt's checkpoint" in done.stdout and "(0 from an earlier" not in done.stdout
    assert "Traceback" not in done.stderr
    files = sorted(p.name for p in (run / "supernets").glob("*.pt"))
    assert files == ["seed-0.pt", "seed-1.pt"]
    for name in files:
        saved = torch.load(run / "supernets" / name, map_location="cpu", weights_only=False)
        assert len(saved["val_accs"]) == 3 and saved["meta"]["space"]["width"] == 0.5, "3 epochs at proxy width"

    rows = read_rows(run)
    assert len(rows) == 8 and all(r["status"] == "ok" and r["inherited"] == "1" and r["epochs"] == "0" for r in rows)
    seeds: dict[str, set[str]] = {}
    for r in rows:
        seeds.setdefault(r["key"], set()).add(r["seed"])
        assert 0.0 <= float(r["val_acc"]) <= 1.0 and int(r["macs"]) > 0
    assert all(s == {"0", "1"} for s in seeds.values()), "every architecture scored on each supernet"
    assert "cnn" not in {r["preset"] for r in rows}, "s=1 is in no supernet of the default menu"
    assert {"ghostnet", "all_mca", "selective_mca"} <= {r["preset"] for r in rows}
    meta = json.loads((run / "run.json").read_text())
    assert meta["strategy"] == "oneshot" and meta["supernets"] == 2 and meta["attempts"] == 2
    assert "one-shot: every architecture is scored" in done.stdout and " ± " in done.stdout
    # Scores re-estimate BatchNorm on 2,048 training images (512 is the budget's): recorded, so a resume keeps it.
    assert meta["budget_settings"]["bn_images"] == 2048 and "on 2,048 training images" in done.stdout
    assert "one-shot on the CPU: two supernets of 6 epochs" in " ".join(done.stdout.split())
    # analysis.effects takes the run through its per-supernet fit (the supernet the unit): 4 architectures are
    # too few for the additive model, said in one line (tests/test_effects_oneshot.py: a run large enough).
    effects = in_process("analysis.effects", str(run))
    err = effects.stderr.strip()
    assert effects.returncode == 2 and len(err.splitlines()) == 1 and "architectures with an ok training" in err, err

    # A supernet file of another menu is refused in one line, and nothing is scored with it.
    other = {"meta": {**saved["meta"], "space": {**saved["meta"]["space"], "ratios": [2, 3]}}, "state_dict": {}}
    torch.save(other, run / "supernets" / "seed-1.pt")
    refused = search(*args, "--resume", "--trials", "10")
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    lines = [ln for ln in refused.stderr.strip().splitlines() if "network_util.cc" not in ln]
    assert len(lines) == 1 and "seed-1.pt was trained for another run: its space is" in lines[0], refused.stderr
    assert len(read_rows(run)) == 8


@pytest.mark.parametrize("args, message", [
    (["--supernets", "3"], "--supernets apply to --strategy oneshot only"),
    (["--strategy", "oneshot", "--repeats", "2"], "--repeats does not apply to --strategy oneshot"),
    (["--strategy", "oneshot", "--scheduler", "moasha"], "--scheduler moasha does not apply to --strategy oneshot"),
    (["--strategy", "oneshot", "--supernets", "1"], "--supernets must be at least 2"),
    (["--strategy", "fewshot"], "unknown --strategy 'fewshot'; choose from standalone, oneshot"),
    (["--strategy", "oneshot", "--path-sampling", "greedy"], "unknown --path-sampling 'greedy'"),
])
def test_oneshot_flags_that_cannot_work_are_one_line(cifar_dir, tmp_path, args, message):
    done = in_process("search.run", "--data-dir", str(cifar_dir), "--storage-path", str(tmp_path / "runs"), *args)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()

REPO = Path(__file__).resolve().parents[1]


def test_the_flag_names_the_path_samplings_the_trainer_knows():
    from search.options import PATH_SAMPLINGS
    from trainer.supernet import PATH_SAMPLINGS as TRAINER_PATH_SAMPLINGS

    assert PATH_SAMPLINGS == TRAINER_PATH_SAMPLINGS


def test_a_resumed_run_checks_the_oneshot_flags_against_its_stored_strategy(tmp_path):
    """`--name N --resume --supernets 3` on a one-shot run is the run's own setting, not a standalone clash."""
    from search.options import merge_stored, parse_args

    stored = {"strategy": "oneshot", "supernets": 3, "supernet_epochs": 10, "path_sampling": "fair",
              "scheduler": "fifo", "baseline_seeds": 3, "repeats": 1}
    opts = merge_stored(parse_args(["--name", "r", "--resume", "--supernets", "3"]), stored)
    assert opts.strategy == "oneshot" and opts.baseline_seeds == 3
    with pytest.raises(UserError, match="--repeats does not apply to --strategy oneshot"):
        merge_stored(parse_args(["--name", "r", "--resume", "--repeats", "2"]), stored)
    with pytest.raises(UserError, match="--supernets apply to --strategy oneshot only"):
        merge_stored(parse_args(["--name", "r", "--resume", "--supernets", "3"]), {"strategy": "standalone"})


def test_oneshot_scores_with_batchnorm_on_2048_images_unless_told():
    """docs/oneshot.md: BN on 2,048 images lifts a supernet's agreement with itself from tau 0.37-0.53 to 0.70-0.76."""
    from search.options import ONESHOT_BN_IMAGES, parse_args

    assert ONESHOT_BN_IMAGES == 2048
    assert parse_args(["--strategy", "oneshot"]).budget_overrides["bn_images"] == 2048
    assert parse_args(["--strategy", "oneshot", "--bn-images", "512"]).budget_overrides["bn_images"] == 512
    assert "bn_images" not in parse_args([]).budget_overrides, "stand-alone proxies keep the budget's 512"
    assert parse_args(["--bn-images", "0"]).budget_overrides["bn_images"] == 0
    with pytest.raises(UserError, match="--bn-images must be at least 0, got -1"):
        parse_args(["--bn-images", "-1"])


def test_the_cpu_default_strategy_quotes_the_repeatability_measured_here():
    """search.oneshot.ONESHOT_CPU recomputed from the committed benchmark CSV; the default follows the data."""
    import pandas as pd

    from analysis.rank import bootstrap_interval, kendall_tau
    from search.oneshot import ONESHOT_CPU
    from search.options import ONESHOT_BN_IMAGES, parse_args
    from trainer.budget import CPU_FIDELITY

    data = pd.read_csv(REPO / "benchmarks" / "data" / "oneshot_fidelity_common.csv")
    col = f"bn{ONESHOT_CPU.bn_images}_a"
    both = data.dropna(subset=[f"supernet_0_{col}", f"supernet_1_{col}"])
    a, b = both[f"supernet_0_{col}"].to_numpy(), both[f"supernet_1_{col}"].to_numpy()
    lo, hi = bootstrap_interval(kendall_tau, a, b)
    assert ONESHOT_CPU.archs == len(both) and ONESHOT_CPU.bn_images == ONESHOT_BN_IMAGES
    assert (ONESHOT_CPU.tau, ONESHOT_CPU.lo, ONESHOT_CPU.hi) == pytest.approx((kendall_tau(a, b), lo, hi), abs=0.005)
    text = (REPO / "benchmarks" / "data" / "oneshot_fidelity_common.txt").read_text()
    assert f"{ONESHOT_CPU.epochs} epochs of the cpu budget" in text and f"train {ONESHOT_CPU.supernet_hours} CPU-h" in text
    # The default is the strategy that ranks more repeatably at this machine's cost, and the line says so.
    assert parse_args([]).strategy == ("standalone" if CPU_FIDELITY.tau > ONESHOT_CPU.tau else "oneshot")
    line = ONESHOT_CPU.standalone_line(CPU_FIDELITY)
    assert f"tau={CPU_FIDELITY.tau:+.2f}" in line and f"tau={ONESHOT_CPU.tau:+.2f}" in line

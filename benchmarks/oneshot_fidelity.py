"""Do weight-sharing supernets agree with each other?  Repeatability of one-shot scores, measured.

    python benchmarks/oneshot_fidelity.py --data ../shared/cifar10-subset --epochs 30 --archs 200

Trains `--supernets` GhostNet supernets (`trainer.supernet`, FairNAS-style
balanced paths unless --path-sampling says otherwise) that differ only in their
seed, each on the budget's images for `--epochs` epochs, one process per
supernet (the cores are used side by side).  Every supernet then scores the
same architectures — the menu's presets and `--archs` drawn at random from
the menu — with inherited weights, BatchNorm re-estimated on `--bn-images`
training images, on the validation split of its seed.

It prints, for each pair of supernets:
- Kendall tau between their scores of the same architectures, with a
  bootstrap 95 % interval (`analysis.rank`);
- the correlation r of their 16 bottleneck effects (least squares of the
  score on the 16 MCA bits, kernel set and ratio: the effects model's main
  terms), with its Fisher-z interval;
and the CPU-seconds of each phase.  The literature's bar: supernets under
different seeds rank a 64-architecture CIFAR-10 space at a mean tau of 0.54
(Zhang et al. 2020).  Writes benchmarks/data/oneshot_fidelity.txt and the
scores (oneshot_fidelity.csv).
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from space import ArchConfig, SearchSpace, presets_for  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def menu_sample(space: SearchSpace, n: int, seed: int) -> list[ArchConfig]:
    """The presets the menu holds, then `n` distinct architectures drawn uniformly from the menu."""
    archs = [a for a in presets_for(space.backbone).values() if a.ratio in space.ratios]
    keys = {a.key for a in archs}
    rng = random.Random(seed)
    while len(archs) < n + 3:
        arch = space.from_params({**{f"mca_{i}": rng.random() < 0.5 for i in range(space.n_blocks)},
                                  "kernels": rng.choice(space.kernel_choices), "ratio": rng.choice(space.ratios)})
        if arch.key not in keys:
            keys.add(arch.key)
            archs.append(arch)
    return archs


def one_supernet(job: dict) -> dict:
    """Train one supernet and score every architecture with it (runs in its own process, one thread)."""
    import torch

    from trainer.budget import get_budget
    from trainer.data import load_cifar10
    from trainer.supernet import score_subnets, train_supernet

    torch.set_num_threads(1)
    data = load_cifar10(job["data"])
    budget = get_budget("cpu", epochs=job["epochs"], train_size=job["train_size"], val_size=job["val_size"])
    split = job["split_seed"]
    start = time.process_time()
    trained = train_supernet(SearchSpace(), data, budget, seed=job["seed"], sampling=job["sampling"],
                             bn_images=job["bn_images"], split_seed=split)
    train_s = time.process_time() - start
    if job["keep"]:
        Path(job["keep"]).mkdir(parents=True, exist_ok=True)
        torch.save(trained.supernet.state_dict(), Path(job["keep"]) / f"seed-{job['seed']}.pt")
    start = time.process_time()
    scores = score_subnets(trained.supernet, job["archs"], data, budget, job["seed"], bn_images=job["bn_images"],
                           split_seed=split)
    score_s = time.process_time() - start
    again = job["archs"][:job["rescore"]]
    bn = job["rescore_bn"]
    start = time.process_time()
    first = (scores[:len(again)] if bn == job["bn_images"] else
             rescore(trained.supernet, again, data, budget, job["seed"], split, bn, offset=0))
    second = rescore(trained.supernet, again, data, budget, job["seed"], split, bn, offset=bn)
    rescore_s = time.process_time() - start
    return {"seed": job["seed"], "scores": scores, "train_s": train_s, "score_s": score_s,
            "curve": trained.val_accs, "status": trained.status, "again": (first, second), "rescore_s": rescore_s}


def rescore(net, archs: list[ArchConfig], data, budget, seed: int, split_seed: int, bn_images: int,
            offset: int) -> list[float]:
    """The architectures scored on the same supernet and validation split, with BatchNorm re-estimated on
    training images [offset, offset + bn_images): two disjoint sets measure the scoring's own noise."""
    import torch

    from trainer.loader import DeviceLoader
    from trainer.loop import EVAL_BATCH
    from trainer.proxy import proxy_split, training_loaders
    from trainer.supernet import score

    if not archs:
        return []
    _, val, _ = training_loaders(data, budget, seed, torch.device("cpu"), "val", bn_images=bn_images,
                                 with_training=False, split_seed=split_seed)
    idx = proxy_split(data, budget, split_seed)[0][offset:offset + bn_images]
    bn = DeviceLoader(data.train_images[idx], data.train_labels[idx], EVAL_BATCH, torch.device("cpu"), train=False,
                      seed=seed, channels_last=budget.channels_last)
    return [score(net, arch, budget, bn, val) for arch in archs]


def paired_tau_difference(xa, ya, xb, yb, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of tau(xb, yb) - tau(xa, ya), resampling the architectures together
    (both taus recomputed on each resample, so the interval is paired)."""
    rng = np.random.default_rng(seed)
    xa, ya, xb, yb = (np.asarray(v, dtype=float) for v in (xa, ya, xb, yb))
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(xa), len(xa))
        d = kendall_tau(xb[idx], yb[idx]) - kendall_tau(xa[idx], ya[idx])
        if np.isfinite(d):
            diffs.append(d)
    if not diffs:
        return float("nan"), float("nan")
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def design(archs: list[ArchConfig], space: SearchSpace) -> np.ndarray:
    """Intercept, the 16 MCA bits, kernel-set and ratio dummies (first level the reference)."""
    rows = []
    for a in archs:
        k = [float(any(a.mca) and a.kernels == ks) for ks in space.kernel_sets[1:]]
        s = [float(a.ratio == r) for r in space.ratios[1:]]
        rows.append([1.0, *map(float, a.mca), *k, *s])
    return np.array(rows)


def bit_effects(scores: list[float], x: np.ndarray, n_bits: int) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(x, np.asarray(scores), rcond=None)
    return coef[1:1 + n_bits]


def fisher_ci(r: float, n: int) -> tuple[float, float]:
    z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), 1.96 / np.sqrt(n - 3)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/cifar10-subset")
    p.add_argument("--supernets", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--archs", type=int, default=200)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--bn-images", type=int, default=512)
    p.add_argument("--path-sampling", default="fair", choices=("fair", "uniform", "sandwich"))
    p.add_argument("--rescore", type=int, default=0,
                   help="score the first N architectures again with BN on a disjoint image set (scoring noise)")
    p.add_argument("--rescore-bn", type=int, default=None,
                   help="BN images of the rescoring (default --bn-images): both sets, and the supernets compared")
    p.add_argument("--common-split", action="store_true",
                   help="every supernet trains and validates on seed 0's split (default: each on its seed's)")
    p.add_argument("--keep", default=None, help="save each trained supernet's state_dict here (seed-S.pt)")
    p.add_argument("--out", default=str(DATA / "oneshot_fidelity.txt"))
    args = p.parse_args()

    space = SearchSpace()
    archs = menu_sample(space, args.archs, seed=0)
    jobs = [{"data": args.data, "seed": seed, "epochs": args.epochs, "train_size": args.train_size,
             "val_size": args.val_size, "bn_images": args.bn_images, "sampling": args.path_sampling, "archs": archs,
             "rescore": args.rescore, "rescore_bn": args.rescore_bn or args.bn_images,
             "split_seed": 0 if args.common_split else seed, "keep": args.keep}
            for seed in range(args.supernets)]
    started = time.time()
    with mp.get_context("spawn").Pool(min(len(jobs), mp.cpu_count())) as pool:
        results = pool.map(one_supernet, jobs)
    wall = time.time() - started

    x = design(archs, space)
    lines = [f"one-shot repeatability: {args.supernets} GhostNet supernets (seeds 0..{args.supernets - 1}), "
             f"path sampling {args.path_sampling}, {args.epochs} epochs of the cpu budget on {args.data} "
             f"(train size {args.train_size or 'all'}), BN on {args.bn_images} images, "
             f"{'one split (seed 0' + chr(39) + 's) for all' if args.common_split else 'each on its seed' + chr(39) + 's split'}; "
             f"{len(archs)} architectures (3 presets + {len(archs) - 3} uniform from the menu)"]
    for r in results:
        lines.append(f"  supernet seed {r['seed']}: {r['status']}, reference path val_acc by epoch "
                     f"{' '.join(f'{a:.3f}' for a in r['curve'])}; train {r['train_s'] / 3600:.2f} CPU-h, "
                     f"scoring {r['score_s']:.0f} CPU-s ({r['score_s'] / len(archs):.2f} s per architecture); "
                     f"scores {np.mean(r['scores']):.3f} mean, {np.std(r['scores']):.3f} SD")
    rb = args.rescore_bn or args.bn_images
    for r in results:
        first, second = r["again"]
        if first:
            n = len(first)
            tau = kendall_tau(first, second)
            lo, hi = bootstrap_interval(kendall_tau, first, second)
            diff = np.asarray(first) - np.asarray(second)
            lines.append(f"  supernet seed {r['seed']} scored twice (BN on disjoint {rb}-image sets, same "
                         f"validation split): Kendall tau {tau:+.2f} [{lo:+.2f}, {hi:+.2f}] over {n} architectures; "
                         f"score difference SD {np.std(diff, ddof=1) * 100:.2f} points; {r['rescore_s']:.0f} CPU-s")
    for a, b in itertools.combinations(results, 2):
        tau = kendall_tau(a["scores"], b["scores"])
        lo, hi = bootstrap_interval(kendall_tau, a["scores"], b["scores"])
        ea, eb = bit_effects(a["scores"], x, space.n_blocks), bit_effects(b["scores"], x, space.n_blocks)
        r = float(np.corrcoef(ea, eb)[0, 1])
        rlo, rhi = fisher_ci(r, len(ea))
        lines.append(f"  seeds {a['seed']} vs {b['seed']}: Kendall tau {tau:+.2f} [{lo:+.2f}, {hi:+.2f}] over "
                     f"{len(archs)} architectures; bottleneck effects r {r:+.2f} [{rlo:+.2f}, {rhi:+.2f}] (n=16)")
        if a["again"][0] and rb != args.bn_images:
            n = len(a["again"][0])
            xa, ya, xb, yb = a["scores"][:n], b["scores"][:n], a["again"][0], b["again"][0]
            t_small, t_big = kendall_tau(xa, ya), kendall_tau(xb, yb)
            dlo, dhi = paired_tau_difference(xa, ya, xb, yb)
            lines.append(f"  seeds {a['seed']} vs {b['seed']} on the first {n}: Kendall tau {t_small:+.2f} with BN on "
                         f"{args.bn_images} images, {t_big:+.2f} on {rb}; difference {t_big - t_small:+.2f} "
                         f"[{dlo:+.2f}, {dhi:+.2f}] (paired bootstrap)")
    lines.append(f"  wall {wall / 60:.1f} min on {min(len(jobs), mp.cpu_count())} processes")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.write_text(text + "\n")
    import csv

    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", *(f"supernet_{r['seed']}" for r in results),
                    *(f"supernet_{r['seed']}_bn{rb}_{part}" for r in results for part in "ab")])
        for i, arch in enumerate(archs):
            again = [f"{r['again'][j][i]:.4f}" if i < len(r["again"][j]) else "" for r in results for j in (0, 1)]
            w.writerow([arch.key, *(f"{r['scores'][i]:.4f}" for r in results), *again])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Budget calibration: does a short proxy training rank architectures like a longer one?

A fixed, seeded set of architectures (the four presets plus random draws from
the default search space) is trained at several proxy budgets and at a
reference budget at least 4x the longest proxy, with two seeds each, on
CIFAR-10 with a 5,000-image validation split (binomial SE ≈ 0.7 points).
Per budget it prints the CPU seconds per trial, the seed standard deviation
of val_acc, the standard deviation between the architectures' seed means
(the signal), Kendall's τ between the budget's seed-mean accuracies and the
reference's, with a bootstrap 95 % interval over architectures, and τ between
its own two seeds — the ceiling: where a budget's seeds disagree, nothing
can rank like it; then

    recommended budget: NAME (tau=X.XX [lo, hi], Y s/trial)

— the cheapest proxy whose τ reaches 0.6.  Trainings run in two processes
with one torch thread each; seconds are CPU seconds of the training process,
so a busy machine slows the run down but does not change the figures much.
Results are appended to a CSV as they finish, so a killed run resumes.

    python benchmarks/proxy_fidelity.py --data ../shared/cifar10-jpeg/cifar10-jpeg.tar.gz        # ~1 h
    python benchmarks/proxy_fidelity.py --data ../shared/cifar10-jpeg/cifar10-jpeg.tar.gz --quick
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from space import N_BLOCKS, PRESETS, ArchConfig, SearchSpace  # noqa: E402

# name: (epochs, training images) — proxies from cheapest up, then the reference (>= 4x the longest proxy).
BUDGETS = {
    "p1": (1, 500),
    "p2": (1, 1500),
    "p3": (2, 3000),
    "ref": (8, 3000),
}
QUICK = {"p1": (1, 250), "p2": (1, 500), "p3": (2, 500), "ref": (8, 500)}
QUICK_RANDOM, QUICK_VAL = 4, 1000  # --quick: 8 architectures, 1,000 validation images (the pipeline, not the figures)
SEEDS = (0, 1)
TARGET_TAU = 0.6
FIELDS = ["arch", "key", "budget", "seed", "val_acc", "cpu_seconds", "wall_seconds"]


def architectures(n_random: int, seed: int = 0) -> list[tuple[str, ArchConfig]]:
    """The presets, then seeded random draws (placement bits p=0.3, any kernel set and ratio)."""
    space = SearchSpace()
    rng = random.Random(seed)
    out = list(PRESETS.items())
    keys = {cfg.key for _, cfg in out}
    while len(out) < len(PRESETS) + n_random:
        cfg = ArchConfig(mca=tuple(rng.random() < 0.3 for _ in range(N_BLOCKS)), kernels=rng.choice(space.kernel_sets),
                         ratio=rng.choice(space.ratios))
        if cfg.key not in keys:
            keys.add(cfg.key)
            out.append((f"rand{len(out) - len(PRESETS)}", cfg))
    return out


_DATA = None


def _init(data_path: str) -> None:
    import torch

    global _DATA
    torch.set_num_threads(1)
    from trainer.data import load_cifar10

    _DATA = load_cifar10(data_path)


def _train(job: tuple[str, dict, str, int, int, int, int | None]) -> dict:
    from trainer.budget import get_budget
    from trainer.proxy import train_proxy

    name, arch, budget_name, epochs, train_size, seed, val_size = job
    budget = get_budget("cpu", epochs=epochs, train_size=train_size, val_size=val_size)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = train_proxy(ArchConfig.from_dict(arch), _DATA, budget, "cpu", seed=seed, eval_every=epochs)
    return {"arch": name, "key": ArchConfig.from_dict(arch).key, "budget": budget_name, "seed": seed,
            "val_acc": result.val_acc if result.val_acc is not None else float("nan"),
            "cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0}


def summarise(rows: list[dict], budgets: dict, out=print) -> dict:
    """Print the per-budget table and the recommendation; return the figures (the search's CPU
    start-up line quotes them, and a test checks it against this CSV)."""
    acc: dict[tuple[str, str], list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for r in sorted(rows, key=lambda r: int(r["seed"])):  # acc lists in seed order (rows arrive in any order)
        acc.setdefault((r["budget"], r["arch"]), []).append(float(r["val_acc"]))
        cpu.setdefault(r["budget"], []).append(float(r["cpu_seconds"]))
    # Only architectures with every budget and seed count: a partial run compares like with like.
    archs = sorted(a for a in {r["arch"] for r in rows}
                   if all(len(acc.get((b, a), [])) == len(SEEDS) for b in budgets))
    ref = {a: np.mean(acc[("ref", a)]) for a in archs if ("ref", a) in acc}
    out(f"\n{len(archs)} architectures x {len(SEEDS)} seeds; reference = {budgets['ref'][0]} epochs on "
        f"{budgets['ref'][1]} images")
    out(f"{'budget':<6} {'epochs':>6} {'images':>6} {'cpu s/trial':>11} {'seed sd':>8} {'arch sd':>8} {'mean acc':>8}  "
        f"{'tau vs ref [95% CI]':<24} seed 0 vs 1 tau [95% CI]")
    table: dict[str, dict] = {}
    for name, (epochs, size) in budgets.items():
        names = [a for a in archs if (name, a) in acc and a in ref]
        if not names:
            continue
        per_arch = [acc[(name, a)] for a in names]
        sd = np.sqrt(np.mean([np.var(v, ddof=1) for v in per_arch if len(v) > 1])) if any(len(v) > 1 for v in per_arch) else float("nan")
        means = np.array([np.mean(v) for v in per_arch])
        ref_means = np.array([ref[a] for a in names])
        tau = kendall_tau(means, ref_means)
        lo, hi = bootstrap_interval(kendall_tau, means, ref_means, n_boot=2000, seed=0)
        seconds = float(np.mean(cpu[name]))
        # The ceiling: how well the budget ranks like *itself* under another seed.  A reference whose
        # two seeds disagree cannot be matched by any proxy.
        s0, s1 = np.array([v[0] for v in per_arch]), np.array([v[1] for v in per_arch])
        self_tau = kendall_tau(s0, s1)
        self_lo, self_hi = bootstrap_interval(kendall_tau, s0, s1, n_boot=2000, seed=0)
        table[name] = {"budget": name, "epochs": epochs, "images": size, "tau": tau, "lo": lo, "hi": hi,
                       "seconds": seconds, "seed_sd": float(sd), "arch_sd": float(means.std(ddof=1)),
                       "self_tau": self_tau, "n": len(names)}
        out(f"{name:<6} {epochs:>6} {size:>6} {seconds:>11.1f} {100 * sd:>7.2f}p {100 * means.std(ddof=1):>7.2f}p "
            f"{100 * means.mean():>7.2f}%  {f'{tau:+.2f} [{lo:+.2f}, {hi:+.2f}]':<24} "
            f"{self_tau:+.2f} [{self_lo:+.2f}, {self_hi:+.2f}]  (n={len(names)})")
    proxies = [table[n] for n in table if n != "ref"]
    passing = [b for b in proxies if b["tau"] >= TARGET_TAU]
    if passing:
        b = passing[0]
        out(f"recommended budget: {b['budget']} (tau={b['tau']:.2f} [{b['lo']:.2f}, {b['hi']:.2f}], "
            f"{b['seconds']:.0f} s/trial)")
        return {"recommended": b, "best": b, "table": table, "archs": len(archs)}
    best = max(proxies, key=lambda b: b["tau"])
    out(f"recommended budget: none reaches tau >= {TARGET_TAU} (best {best['budget']}: tau={best['tau']:.2f} "
        f"[{best['lo']:.2f}, {best['hi']:.2f}], {best['seconds']:.0f} s/trial)")
    return {"recommended": None, "best": best, "table": table, "archs": len(archs)}


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("CIFAR10_DIR", "../shared/cifar10-jpeg/cifar10-jpeg.tar.gz"))
    p.add_argument("--random", type=int, default=None,
                   help=f"random architectures besides the 4 presets (default 8; {QUICK_RANDOM} with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny budgets: the whole pipeline in minutes")
    p.add_argument("--workers", type=int, default=2, help="training processes, one torch thread each")
    p.add_argument("--out", default=None, help="results CSV (default benchmarks/data/proxy_fidelity[-quick].csv)")
    args = p.parse_args()
    budgets = QUICK if args.quick else BUDGETS
    out = Path(args.out or Path(__file__).parent / "data" / f"proxy_fidelity{'-quick' if args.quick else ''}.csv")
    archs = architectures(QUICK_RANDOM if args.quick and args.random is None else
                          8 if args.random is None else args.random)
    val_size = QUICK_VAL if args.quick else None
    done: list[dict] = read_rows(out) if out.exists() else []
    have = {(r["arch"], r["budget"], int(r["seed"])) for r in done}
    # One architecture at a time (reference first): a run cut short still gives complete architectures.
    jobs = [(n, cfg.to_dict(), b, e, s, seed, val_size) for n, cfg in archs
            for b, (e, s) in sorted(budgets.items(), key=lambda kv: kv[0] != "ref")
            for seed in SEEDS if (n, b, seed) not in have]
    print(f"{len(archs)} architectures, budgets {budgets}, {len(jobs)} trainings to go "
          f"({len(done)} already in {out})", flush=True)
    if not jobs:
        summarise(done, budgets)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not out.exists()
    started = time.perf_counter()
    with open(out, "a", newline="") as f, mp.get_context("spawn").Pool(args.workers, _init, (args.data,)) as pool:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for i, row in enumerate(pool.imap_unordered(_train, jobs), 1):
            writer.writerow(row)
            f.flush()
            done.append(row)
            elapsed = time.perf_counter() - started
            print(f"[{i}/{len(jobs)}] {row['budget']:<4} {row['arch']:<14} seed {row['seed']} "
                  f"val_acc {100 * row['val_acc']:.2f}% cpu {row['cpu_seconds']:.0f}s "
                  f"ETA {elapsed / i * (len(jobs) - i) / 60:.0f} min", flush=True)
    summarise(done, budgets)


if __name__ == "__main__":
    main()

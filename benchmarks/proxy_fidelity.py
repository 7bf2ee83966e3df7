"""Budget calibration: which proxy budget ranks architectures the same way under another seed?

A fixed, seeded set of architectures (the four presets plus random draws from
the default search space; 16 in all by default) is trained at several proxy
budgets with two seeds each, on all 45,000 CIFAR-10 training images (a budget
may see a fresh part of them each epoch, or train a narrower copy) with a
5,000-image validation split (binomial SE about 0.7 points).  The recipe is the
`cpu` preset's.  Per budget it prints the CPU seconds per training, the seed
standard deviation of val_acc (the noise), the standard deviation between the
architectures' seed means and their ratio, Kendall's tau between
its two seeds with a bootstrap 95 % interval over architectures (self-
consistency: no reference needed), tau against the longest budget (the
reference), and the hours a 200-trial search at that budget takes on 2 cores
(two trainings at a time, by the measured CPU seconds); then

    recommended budget: NAME (...)

-- the cheapest budget whose self tau reaches 0.8 (goal; 0.6 is the floor) within
8 hours, else the best self tau within 8 hours.  Trainings run in two processes
with one torch thread each; seconds are CPU seconds of the training process, so
a busy machine slows the run down but does not change the figures much.
Results are appended to a CSV as they finish, so a killed run resumes;
architecture by architecture, so a run cut short still compares like with like.

    python benchmarks/proxy_fidelity.py --data ../shared/cifar10-jpeg/cifar10-jpeg.tar.gz        # many hours
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

# name: (epochs, images per epoch from the whole training split (None: all), proxy width), cheapest first.
# The last one is the reference (tau against it is the second yardstick): the longest budget measured, one
# full-width epoch (461 CPU-s per training on average, 12.8 h for a 200-trial search: past the night already).
BUDGETS = {
    "h-half": (1, 22_500, 0.5),
    "h-1": (1, None, 0.5),
    "f-1": (1, None, 1.0),
}
# What a run trains first: the cheap budgets for every architecture, then the reference.
PASSES = (("h-half", "h-1"), ("f-1",))
QUICK = {"h-half": (1, 250, 0.5), "h-1": (1, 500, 0.5), "f-1": (1, 500, 1.0)}
QUICK_PASSES = (("h-half", "h-1", "f-1"),)
QUICK_RANDOM, QUICK_TRAIN, QUICK_VAL = 4, 1000, 1000  # --quick: 8 architectures on 1,000 + 1,000 images
N_RANDOM = 12
SEEDS = (0, 1)
GOAL_TAU, FLOOR_TAU = 0.8, 0.6
SEARCH_TRIALS, SEARCH_HOURS, CORES = 200, 8.0, 2  # an overnight 200-trial search on 2 cores, 1 thread a training
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


def _train(job: tuple[str, dict, str, tuple, int, int | None, int | None]) -> dict:
    from trainer.budget import get_budget
    from trainer.proxy import train_proxy

    name, arch, budget_name, (epochs, epoch_images, width), seed, train_size, val_size = job
    budget = get_budget("cpu", epochs=epochs, epoch_images=epoch_images, proxy_width=width, train_size=train_size,
                        val_size=val_size)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = train_proxy(ArchConfig.from_dict(arch), _DATA, budget, "cpu", seed=seed, eval_every=epochs)
    return {"arch": name, "key": ArchConfig.from_dict(arch).key, "budget": budget_name, "seed": seed,
            "val_acc": result.val_acc if result.val_acc is not None else float("nan"),
            "cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0}


def search_hours(cpu_seconds: float, trials: int = SEARCH_TRIALS, cores: int = CORES) -> float:
    """Hours of a `trials`-training search at one torch thread per training, `cores` trainings at a time."""
    return trials * cpu_seconds / cores / 3600


def true_spread(arch_sd: float, seed_sd: float, seeds: int = len(SEEDS)) -> float:
    """The SD of the architectures' own accuracies: the spread of `seeds`-seed means less their seed noise."""
    return float(np.sqrt(max(0.0, arch_sd ** 2 - seed_sd ** 2 / seeds)))


def seeds_for(tau: float, seed_sd: float, signal: float) -> float:
    """Seeds per architecture whose means would rank like another such mean with Kendall tau `tau`.

    For normal accuracies, tau = (2/pi) arcsin(rho) (Greiner's relation), and two
    k-seed means correlate with rho = signal^2 / (signal^2 + seed_sd^2 / k).
    """
    rho = np.sin(np.pi * tau / 2)
    return float("inf") if signal <= 0 else float(np.ceil(rho / (1 - rho) * seed_sd ** 2 / signal ** 2))


def summarise(rows: list[dict], budgets: dict, out=print) -> dict:
    """Print the per-budget table and the recommendation; return the figures (the search's CPU
    start-up line quotes them, and a test checks it against this CSV).

    Per budget, the architectures with both seeds count; tau against the
    reference uses those that also have the reference.
    """
    acc: dict[tuple[str, str], dict[int, float]] = {}
    cpu: dict[str, list[float]] = {}
    for r in rows:
        acc.setdefault((r["budget"], r["arch"]), {})[int(r["seed"])] = float(r["val_acc"])
        cpu.setdefault(r["budget"], []).append(float(r["cpu_seconds"]))
    complete = {b: sorted(a for (bb, a), v in acc.items() if bb == b and all(s in v for s in SEEDS)) for b in budgets}
    reference = list(budgets)[-1]
    ref = {a: np.mean(list(acc[(reference, a)].values())) for a in complete.get(reference, [])}
    archs = sorted({a for names in complete.values() for a in names})
    ref_epochs, _, ref_width = budgets[reference]
    out(f"\n{len(archs)} architectures x {len(SEEDS)} seeds; reference = {reference} ({ref_epochs} epoch(s) at width "
        f"{ref_width:g}); search hours: {SEARCH_TRIALS} trainings, {CORES} at a time")
    out(f"{'budget':<7} {'ep':>2} {'img/ep':>6} {'width':>5} {'cpu s':>6} {'hours':>5} {'seed sd':>8} {'arch sd':>8} "
        f"{'s/n':>5} {'signal':>7} {'k@0.6':>5} {'mean acc':>8}  {'seed 0 vs 1 tau [95% CI]':<25} "
        f"{'tau vs ref [95% CI]':<24} n")
    table: dict[str, dict] = {}
    for name, (epochs, images, width) in budgets.items():
        names = complete.get(name, [])
        if len(names) < 3:
            continue
        s0 = np.array([acc[(name, a)][SEEDS[0]] for a in names])
        s1 = np.array([acc[(name, a)][SEEDS[1]] for a in names])
        means = (s0 + s1) / 2
        seed_sd = float(np.sqrt(np.mean((s0 - s1) ** 2) / 2))  # pooled over architectures, 2 seeds each
        arch_sd = float(means.std(ddof=1))
        self_tau = kendall_tau(s0, s1)
        self_lo, self_hi = bootstrap_interval(kendall_tau, s0, s1, n_boot=2000, seed=0)
        with_ref = [i for i, a in enumerate(names) if a in ref]
        if len(with_ref) >= 3 and name != reference:
            m, r = means[with_ref], np.array([ref[names[i]] for i in with_ref])
            tau, (lo, hi) = kendall_tau(m, r), bootstrap_interval(kendall_tau, m, r, n_boot=2000, seed=0)
            vs_ref = f"{tau:+.2f} [{lo:+.2f}, {hi:+.2f}] n={len(with_ref)}"
        else:
            tau = lo = hi = float("nan")
            vs_ref = "-"
        seconds = float(np.mean(cpu[name]))
        signal = true_spread(arch_sd, seed_sd)
        table[name] = {"signal": signal, "seeds_for_floor": seeds_for(FLOOR_TAU, seed_sd, signal),"budget": name, "epochs": epochs, "images": images, "width": width, "seconds": seconds,
                       "hours": search_hours(seconds), "seed_sd": seed_sd, "arch_sd": arch_sd,
                       "snr": arch_sd / seed_sd if seed_sd else float("inf"), "mean": float(means.mean()),
                       "self_tau": self_tau, "self_lo": self_lo, "self_hi": self_hi,
                       "tau": tau, "lo": lo, "hi": hi, "n": len(names)}
        t = table[name]
        out(f"{name:<7} {epochs:>2} {images or 'all':>6} {width:>5g} {seconds:>6.0f} {t['hours']:>5.1f} "
            f"{100 * seed_sd:>7.2f}p {100 * arch_sd:>7.2f}p {t['snr']:>5.2f} {100 * signal:>6.2f}p "
            f"{t['seeds_for_floor']:>5g} {100 * t['mean']:>7.2f}%  "
            f"{f'{self_tau:+.2f} [{self_lo:+.2f}, {self_hi:+.2f}]':<25} {vs_ref:<24} {len(names)}")
    result = {"table": table, "archs": len(archs), "recommended": None, "best": None}
    affordable = [t for t in table.values() if t["hours"] <= SEARCH_HOURS]
    if not affordable:
        out(f"recommended budget: none measured fits a {SEARCH_TRIALS}-trial search in {SEARCH_HOURS:g} h")
        return result
    for goal in (GOAL_TAU, FLOOR_TAU):
        passing = sorted((t for t in affordable if t["self_tau"] >= goal), key=lambda t: t["seconds"])
        if passing:
            b = result["recommended"] = result["best"] = passing[0]
            out(f"recommended budget: {b['budget']} (the cheapest with seed-vs-seed tau >= {goal:g} in "
                f"{SEARCH_HOURS:g} h: tau={b['self_tau']:.2f} [{b['self_lo']:.2f}, {b['self_hi']:.2f}], "
                f"{b['seconds']:.0f} CPU-s/training, {b['hours']:.1f} h)")
            return result
    b = result["best"] = max(affordable, key=lambda t: t["self_tau"])
    out(f"what stops it: at {b['budget']} the architectures' own spread is {100 * b['signal']:.2f} points against "
        f"a seed SD of {100 * b['seed_sd']:.2f}; tau {FLOOR_TAU:g} would take {b['seeds_for_floor']:g} seeds per "
        f"architecture ({b['seeds_for_floor'] * b['hours']:.0f} h)")
    out(f"recommended budget: none within {SEARCH_HOURS:g} h reaches seed-vs-seed tau >= {FLOOR_TAU:g} (best "
        f"{b['budget']}: tau={b['self_tau']:.2f} [{b['self_lo']:.2f}, {b['self_hi']:.2f}], "
        f"{b['seconds']:.0f} CPU-s/training, {b['hours']:.1f} h)")
    return result


def pooled(out: Path, fields: list[str], jobs: list, train, init, data: str, workers: int):
    """Run `train` over `jobs` in `workers` spawned processes (`init(data)` once in each: one torch thread,
    the data loaded once), appending every finished job's rows to the CSV `out` at once, so a killed run
    resumes; yields (finished so far, that job's rows)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not out.exists()
    with open(out, "a", newline="") as f, mp.get_context("spawn").Pool(workers, init, (data,)) as pool:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new_file:
            writer.writeheader()
        for i, result in enumerate(pool.imap_unordered(train, jobs), 1):
            rows = result if isinstance(result, list) else [result]
            writer.writerows(rows)
            f.flush()
            yield i, rows


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("CIFAR10_DIR", "../shared/cifar10-jpeg/cifar10-jpeg.tar.gz"))
    p.add_argument("--random", type=int, default=None,
                   help=f"random architectures besides the 4 presets (default {N_RANDOM}; {QUICK_RANDOM} with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny budgets: the whole pipeline in minutes")
    p.add_argument("--workers", type=int, default=2, help="training processes, one torch thread each")
    p.add_argument("--out", default=None, help="results CSV (default benchmarks/data/proxy_fidelity[-quick].csv)")
    p.add_argument("--budgets", default=None, help="train only these budgets, comma-separated (default all)")
    args = p.parse_args()
    budgets, passes = (QUICK, QUICK_PASSES) if args.quick else (BUDGETS, PASSES)
    if args.budgets:
        unknown = set(args.budgets.split(",")) - set(budgets)
        if unknown:
            p.error(f"unknown budget(s) {', '.join(sorted(unknown))}; choose from {', '.join(budgets)}")
        passes = tuple(tuple(b for b in group if b in args.budgets.split(",")) for group in passes)
    out = Path(args.out or Path(__file__).parent / "data" / f"proxy_fidelity{'-quick' if args.quick else ''}.csv")
    archs = architectures(QUICK_RANDOM if args.quick and args.random is None else
                          N_RANDOM if args.random is None else args.random)
    train_size, val_size = (QUICK_TRAIN, QUICK_VAL) if args.quick else (None, None)
    done: list[dict] = read_rows(out) if out.exists() else []
    have = {(r["arch"], r["budget"], int(r["seed"])) for r in done}
    jobs = [(n, cfg.to_dict(), b, budgets[b], seed, train_size, val_size) for group in passes for n, cfg in archs
            for b in group for seed in SEEDS if (n, b, seed) not in have]
    print(f"{len(archs)} architectures, budgets {budgets}, {len(jobs)} trainings to go "
          f"({len(done)} already in {out})", flush=True)
    if not jobs:
        summarise(done, budgets)
        return
    started = time.perf_counter()
    for i, (row,) in pooled(out, FIELDS, jobs, _train, _init, args.data, args.workers):
        done.append(row)
        elapsed = time.perf_counter() - started
        print(f"[{i}/{len(jobs)}] {row['budget']:<6} {row['arch']:<14} seed {row['seed']} "
              f"val_acc {100 * row['val_acc']:.2f}% cpu {row['cpu_seconds']:.0f}s "
              f"ETA {elapsed / i * (len(jobs) - i) / 60:.0f} min", flush=True)
    summarise(done, budgets)


if __name__ == "__main__":
    main()

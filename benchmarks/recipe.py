"""Which recipe changes cut a short proxy training's seed noise and raise its accuracy at equal cost?

Each training variant (learning rate, batch size, weight decay) trains the same
architectures with the same two seeds at one proxy budget on CIFAR-10; every
training is then evaluated four ways from the same weights: the weights
themselves, with flip test-time augmentation (TTA), an exponential moving
average of the weights (EMA), and EMA + TTA.  Per (variant, evaluation) it
prints the CPU seconds per training, the mean accuracy, its difference from
the current recipe paired over (architecture, seed) with a bootstrap 95 %
interval, the pooled seed SD and its ratio to the current recipe's (bootstrap
95 % interval over architectures).  Results are appended to a CSV, so a killed
run resumes.

    python benchmarks/recipe.py --data ../shared/cifar10-jpeg/cifar10-jpeg.tar.gz          # ~40 min on 2 cores
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.proxy_fidelity import architectures, pooled  # noqa: E402

# The recipe the `cpu` budget trained with before this benchmark (the yardstick): every variant starts from it,
# so the table reproduces whatever the `cpu` preset is today ("combo" is what it became).
BASE = {"batch_size": 128, "lr": 0.2, "weight_decay": 5e-4, "zero_init": False, "ema": 0.0, "tta": False}
# Training variants: changes to BASE.
VARIANTS = {
    "base": {},
    "lr0.4": {"lr": 0.4},
    "lr0.8": {"lr": 0.8},
    "bs256": {"batch_size": 256, "lr": 0.4},
    "wd5e-5": {"weight_decay": 5e-5},
    "lr0.1": {"lr": 0.1},
    "lr0.05": {"lr": 0.05},
    "bs64": {"batch_size": 64, "lr": 0.1},
    "adamw": {"optimizer": "adamw", "lr": 0.004, "weight_decay": 0.05},
    "zinit": {"zero_init": True},
    "combo": {"zero_init": True, "batch_size": 64, "lr": 0.1, "weight_decay": 5e-5},
}
EVALS = ("raw", "tta", "ema", "ema+tta")
EMA_DECAY = 0.98
SEEDS = (0, 1)
FIELDS = ["variant", "arch", "seed", "eval", "val_acc", "cpu_seconds"]
# The screening budget: half an epoch of all 45,000 images at half width (about 1 CPU-minute per training).
SCREEN = {"epochs": 1, "epoch_images": 22_500, "proxy_width": 0.5}
ARCHS = ("cnn", "ghostnet", "selective_mca", "rand1")
# --goal: the yardstick, the four presets after two full-data epochs at full width, old recipe vs new
# (one seed each: about 35 minutes on 2 cores).
GOAL = {"epochs": 2, "epoch_images": None, "proxy_width": 1.0}
GOAL_ARCHS, GOAL_SEEDS, GOAL_VARIANTS = ("cnn", "ghostnet", "all_mca", "selective_mca"), (0,), ("base", "combo")

_DATA = None


def _init(data_path: str) -> None:
    import torch

    global _DATA
    torch.set_num_threads(1)
    from trainer.data import load_cifar10

    _DATA = load_cifar10(data_path)


def _train(job: tuple[str, str, dict, int, dict]) -> list[dict]:
    """One training, evaluated the four ways (the loop's own functions, the proxy's split and BN recalibration)."""
    import torch

    from space import ArchConfig, build_model
    from trainer.budget import get_budget
    from trainer.loader import DeviceLoader
    from trainer.loop import (EVAL_BATCH, evaluate_accuracy, make_ema, make_training, recalibrate_bn, train_epoch,
                              zero_init_residuals)
    from trainer.proxy import proxy_arch, proxy_split

    variant, name, arch, seed, screen = job
    budget = get_budget("cpu", **screen, **{**BASE, **VARIANTS[variant]})
    cpu0 = time.process_time()
    torch.manual_seed(seed)
    model = build_model(proxy_arch(ArchConfig.from_dict(arch), budget)).to(memory_format=torch.channels_last)
    if budget.zero_init:
        zero_init_residuals(model)
    train_idx, val_idx = proxy_split(_DATA, budget, seed)

    def loader(idx, train, batch=EVAL_BATCH):
        return DeviceLoader(_DATA.train_images[idx], _DATA.train_labels[idx], batch, torch.device("cpu"),
                            train=train, seed=seed, channels_last=True,
                            epoch_images=budget.epoch_images if train else None)

    train, val, bn = loader(train_idx, True, budget.batch_size), loader(val_idx, False), \
        loader(train_idx[:budget.bn_images], False)
    training = make_training(model, train, budget)
    ema = make_ema(model, EMA_DECAY)
    for epoch in range(budget.epochs):
        train_epoch(model, train, training.optimizer, training.scheduler, training.criterion, epoch, ema)
    train_cpu = time.process_time() - cpu0
    rows = []
    for ev in EVALS:
        net = ema.module if ev.startswith("ema") else model
        t = time.process_time()
        recalibrate_bn(net, bn)
        acc = evaluate_accuracy(net, val, tta=ev.endswith("tta"))
        rows.append({"variant": variant, "arch": name, "seed": seed, "eval": ev, "val_acc": acc,
                     "cpu_seconds": train_cpu + time.process_time() - t})
    return rows


def _boot(fn, n: int, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = [fn(rng.integers(0, n, n)) for _ in range(reps)]
    return float(np.nanpercentile(vals, 2.5)), float(np.nanpercentile(vals, 97.5))


def summarise(rows: list[dict], out=print, screen: dict = SCREEN, seeds: tuple[int, ...] = SEEDS) -> dict:
    acc = {(r["variant"], r["eval"], r["arch"], int(r["seed"])): float(r["val_acc"]) for r in rows}
    cpu = {}
    for r in rows:
        cpu.setdefault((r["variant"], r["eval"]), []).append(float(r["cpu_seconds"]))
    archs = sorted({r["arch"] for r in rows})
    base = [(a, s) for a in archs for s in seeds if ("base", "raw", a, s) in acc]
    out(f"\n{len(archs)} architectures x {len(seeds)} seed(s); budget {screen}; EMA decay {EMA_DECAY}")
    out(f"{'variant':<8} {'eval':<8} {'cpu s':>6} {'mean acc':>8}  {'diff vs base [95% CI]':<26} "
        f"{'seed sd':>8}  sd ratio vs base [95% CI]")
    table = {}
    for variant in VARIANTS:
        for ev in EVALS:
            pairs = [(a, s) for a, s in base if (variant, ev, a, s) in acc]
            full = [a for a in archs if len(seeds) > 1
                    and all((variant, ev, a, s) in acc and ("base", "raw", a, s) in acc for s in seeds)]
            if not pairs:
                continue
            x = np.array([acc[(variant, ev, a, s)] for a, s in pairs])
            b = np.array([acc[("base", "raw", a, s)] for a, s in pairs])
            d = x - b
            lo, hi = _boot(lambda i: d[i].mean(), len(d))
            # Pooled seed SD: per architecture, the two seeds' difference / sqrt(2).
            dv = np.array([acc[(variant, ev, a, SEEDS[0])] - acc[(variant, ev, a, SEEDS[1])] for a in full])
            db = np.array([acc[("base", "raw", a, SEEDS[0])] - acc[("base", "raw", a, SEEDS[1])] for a in full])
            if full:
                sd, sd_b = np.sqrt(np.mean(dv ** 2) / 2), np.sqrt(np.mean(db ** 2) / 2)
                rlo, rhi = _boot(lambda i: np.sqrt(np.mean(dv[i] ** 2) / max(np.mean(db[i] ** 2), 1e-12)), len(full))
            else:  # one seed per architecture: no seed SD
                sd = sd_b = rlo = rhi = float("nan")
            seconds = float(np.mean(cpu[(variant, ev)]))
            table[(variant, ev)] = {"acc": x.mean(), "diff": d.mean(), "lo": lo, "hi": hi, "sd": sd,
                                    "sd_ratio": sd / sd_b if sd_b else float("nan"), "seconds": seconds}
            out(f"{variant:<8} {ev:<8} {seconds:>6.0f} {100 * x.mean():>7.2f}%  "
                f"{f'{100 * d.mean():+.2f}p [{100 * lo:+.2f}, {100 * hi:+.2f}]':<26} {100 * sd:>7.2f}p  "
                f"{sd / sd_b if sd_b else float('nan'):.2f} [{rlo:.2f}, {rhi:.2f}]  (n={len(pairs)})")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("CIFAR10_DIR", "../shared/cifar10-jpeg/cifar10-jpeg.tar.gz"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--goal", action="store_true",
                   help="the presets after 2 full-data epochs at full width, base vs combo, one seed (~35 min)")
    p.add_argument("--out", default=None, help="results CSV (default benchmarks/data/recipe[_goal].csv)")
    args = p.parse_args()
    screen, names, seeds = (GOAL, GOAL_ARCHS, GOAL_SEEDS) if args.goal else (SCREEN, ARCHS, SEEDS)
    variants = ",".join(GOAL_VARIANTS) if args.goal and args.variants == ",".join(VARIANTS) else args.variants
    out = Path(args.out or Path(__file__).parent / "data" / f"recipe{'_goal' if args.goal else ''}.csv")
    archs = dict(architectures(8))
    done = list(csv.DictReader(open(out, newline=""))) if out.exists() else []
    have = {(r["variant"], r["arch"], int(r["seed"])) for r in done}
    # Architecture by architecture: a run cut short still compares every variant on the same ones.
    jobs = [(v, a, archs[a].to_dict(), s, screen) for a in names for s in seeds for v in variants.split(",")
            if (v, a, s) not in have]
    print(f"{len(jobs)} trainings to go ({len(have)} in {out})", flush=True)
    for i, rows in pooled(out, FIELDS, jobs, _train, _init, args.data, args.workers) if jobs else ():
        done.extend(rows)
        r = rows[0]
        print(f"[{i}/{len(jobs)}] {r['variant']:<7} {r['arch']:<14} seed {r['seed']} "
              + " ".join(f"{x['eval']} {100 * x['val_acc']:.2f}%" for x in rows)
              + f" cpu {r['cpu_seconds']:.0f}s", flush=True)
    summarise(done, screen=screen, seeds=seeds)


if __name__ == "__main__":
    main()

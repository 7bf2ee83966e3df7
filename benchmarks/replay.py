"""Replay benchmark: samplers x schedulers on recorded learning curves, whole searches in seconds.

Every comparison of samplers or schedulers costs hours of real training, so
this benchmark turns one recorded search into a benchmark, as NAS-Bench-301
does: a *surrogate* fitted on the recorded architectures' learning curves
(val_acc after each epoch) predicts the curve of any architecture of the
menu.  The surrogate is k-nearest-neighbours over the architecture's
encoding (placement bits, kernel set, ratio, log MACs): the mean curve of the
k closest recorded architectures, k chosen by leave-one-out Kendall τ, which
is printed with its bootstrap interval — a replay cannot tell samplers apart
better than its surrogate ranks architectures.  MACs are exact: they are
additive over the units (a net's MACs = its no-MCA net's + each MCA block's),
tabulated once and checked against every recorded architecture.

The replays use the real Optuna samplers (ask/tell over the real
`SearchSpace`) and the real scheduler logic (`search.moasha.Rungs`), at a
fixed compute budget counted in epochs: fifo trains every proposal for the
full E epochs; moasha judges it at the rungs and stops it there.  As in the
search, the baselines come first and run to the end, a duplicate proposal is
told its known values without training, a stopped training is told its rung
values (COMPLETE), and the front (hypervolume) holds fully trained
architectures only.  Hypervolume is the share of the search's fixed box
(val_acc 1 → 0.1, MACs 0 → 2 x the costliest baseline).

    # the recorded search (about an hour on 2 cores), then its curves as the benchmark's table
    python -m search.run --trials 40 --sampler random --epochs 6 --train-size 1500 --val-size 1500 \\
        --baseline-seeds 1 --objectives val_acc,macs --data-dir ../shared/cifar10-jpeg/cifar10-jpeg.tar.gz \\
        --name replay-table --no-dashboard
    python benchmarks/replay.py --from-run runs/replay-table      # writes benchmarks/data/replay_curves.csv
    python benchmarks/replay.py                                   # the replays, from the committed table

It prints mean hypervolume with a 95 % interval (t over seeds) per sampler x
scheduler, then

    moasha/fifo: hv_ratio=X.XX compute_ratio=Y.YY
    nsga2/random: hv_ratio=X.XX

hv_ratio (moasha/fifo) compares final hypervolumes at equal compute;
compute_ratio is the share of fifo's compute after which moasha's
hypervolume first reaches 0.95 x fifo's final one (median over seeds;
targets: hv_ratio ≥ 0.95 at compute_ratio ≤ 0.5).  nsga2/random compares the
default sampler with random search at equal trials (fifo; target ≥ 1.15).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from analysis.pareto import BOX_COST_FACTOR, hypervolume_min  # noqa: E402
from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from record.arch import arch_columns, from_flat  # noqa: E402
from record.stats import CHANCE  # noqa: E402
from search.moasha import Rungs, default_rungs  # noqa: E402
from search.searcher import make_sampler, point_of  # noqa: E402
from space import PRESETS, ArchConfig, SearchSpace, build_model, count_macs  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "replay_curves.csv"
SAMPLERS = ("nsga2", "tpe", "random")
SCHEDULERS = ("fifo", "moasha")
KS = (1, 3, 5, 8)


# ------------------------------------------------------------------ the table
def table_from_run(run: Path) -> list[dict[str, str]]:
    """Long rows (architecture columns, macs, epoch, val_acc) of every ok training with a full curve."""
    from record.rundir import read_curves, read_trials

    _, trials = read_trials(run / "trials.csv")
    curves = read_curves(run / "curves.csv")
    by_training: dict[tuple[str, str], dict[int, str]] = {}
    for c in curves:
        by_training.setdefault((c["key"], c["seed"]), {})[int(c["epoch"])] = c["val_acc"]
    out = []
    for t in trials:
        if t["status"] != "ok":
            continue
        curve = by_training.get((t["key"], t["seed"]), {})
        epochs = int(t["epochs"])
        if sorted(curve) != list(range(1, epochs + 1)):
            continue
        flat = {c: t[c] for c in arch_columns() if c in t}
        for e in range(1, epochs + 1):
            out.append({"key": t["key"], **flat, "macs": t["macs"], "epoch": e, "val_acc": curve[e]})
    return out


def write_table(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_table(path: Path) -> tuple[list[ArchConfig], np.ndarray, np.ndarray]:
    """(architectures, curves [n, E], macs [n]) from the long CSV."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    archs: dict[str, tuple[ArchConfig, int, dict[int, float]]] = {}
    for r in rows:
        entry = archs.setdefault(r["key"], (from_flat(r), int(r["macs"]), {}))
        entry[2][int(r["epoch"])] = float(r["val_acc"])
    epochs = max(len(c) for _, _, c in archs.values())
    kept = [(a, m, c) for a, m, c in archs.values() if len(c) == epochs]
    return ([a for a, _, _ in kept], np.array([[c[e] for e in range(1, epochs + 1)] for _, _, c in kept]),
            np.array([m for _, m, _ in kept], dtype=float))


# ------------------------------------------------------------------ exact MACs, fast
class MacsTable:
    """MACs of any menu architecture by additivity: the no-MCA net of its ratio plus each MCA block."""

    def __init__(self, space: SearchSpace) -> None:
        n = space.n_blocks
        self.base: dict[int, int] = {}
        self.block: dict[tuple[int, tuple[int, ...], int], int] = {}
        for ratio in sorted({*space.ratios, 1}):
            self.base[ratio] = count_macs(build_model(ArchConfig(mca=(False,) * n, ratio=ratio)))
            for kernels in space.kernel_sets:
                for i in range(n):
                    bits = tuple(j == i for j in range(n))
                    macs = count_macs(build_model(ArchConfig(mca=bits, kernels=kernels, ratio=ratio)))
                    self.block[(ratio, tuple(kernels), i)] = macs - self.base[ratio]

    def __call__(self, arch: ArchConfig) -> int:
        return self.base[arch.ratio] + sum(self.block[(arch.ratio, tuple(arch.kernels), i)]
                                           for i, bit in enumerate(arch.mca) if bit)


# ------------------------------------------------------------------ the surrogate
def features(arch: ArchConfig, macs: float, space: SearchSpace) -> np.ndarray:
    bits = [float(b) for b in arch.mca]
    kernels = [float(tuple(arch.kernels) == tuple(k)) for k in space.kernel_sets] if any(arch.mca) else \
        [0.0] * len(space.kernel_sets)
    ratios = [float(arch.ratio == r) for r in sorted({*space.ratios, 1})]
    return np.array([*bits, *kernels, *ratios, 4.0 * math.log10(macs)])


class Surrogate:
    """k-nearest-neighbour learning curves (mean curve of the k closest recorded architectures)."""

    def __init__(self, x: np.ndarray, curves: np.ndarray, k: int) -> None:
        self.x, self.curves, self.k = x, curves, min(k, len(x))

    def predict(self, f: np.ndarray) -> np.ndarray:
        d = np.sqrt(((self.x - f) ** 2).sum(axis=1))
        nearest = np.lexsort((np.arange(len(d)), d))[: self.k]
        return self.curves[nearest].mean(axis=0)


def leave_one_out_tau(x: np.ndarray, curves: np.ndarray, k: int) -> tuple[float, tuple[float, float]]:
    """Kendall τ between each recorded architecture's final accuracy and the surrogate fitted without it."""
    pred = [Surrogate(np.delete(x, i, 0), np.delete(curves, i, 0), k).predict(x[i])[-1] for i in range(len(x))]
    true = curves[:, -1]
    return kendall_tau(pred, true), bootstrap_interval(kendall_tau, pred, true, seed=0)


# ------------------------------------------------------------------ one replayed search
def replay(sampler: str, scheduler: str, seed: int, space: SearchSpace, surrogate: Surrogate, macs_of: MacsTable,
           budget: int, epochs: int, rungs: tuple[int, ...], eta: float, ref_macs: float,
           population: int = 20) -> list[tuple[int, float, bool]]:
    """(epochs spent, hypervolume share, trained to the end?) after each training, until `budget` epochs are spent."""
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=make_sampler(sampler, seed, population))
    ladder = Rungs(rungs, eta, ["maximize", "minimize"])
    box = (1.0 - CHANCE) * ref_macs
    known: dict[str, list[float]] = {}
    front: list[tuple[float, float]] = []  # minimisation points (-acc, macs) of fully trained architectures
    history: list[tuple[int, float, bool]] = []
    spent = 0

    def train(arch: ArchConfig, stoppable: bool) -> list[float]:
        nonlocal spent
        macs = float(macs_of(arch))
        curve = surrogate.predict(features(arch, macs, space))
        stop = None
        for r in ladder.epochs:
            if r >= epochs:
                break
            if not ladder.decide(r, arch.key, (curve[r - 1], macs)) and stoppable and scheduler == "moasha":
                stop = r
                break
        used = stop or epochs
        spent += used
        if stop is None:
            front.append((-curve[-1], macs))
        hv = hypervolume_min(np.array(front), [-CHANCE, ref_macs]) / box if front else 0.0
        history.append((spent, hv, stop is None))
        return [float(curve[used - 1]), macs]

    for name, cfg in PRESETS.items():  # baselines: first, never stopped; told when the menu can express them
        values = train(cfg, stoppable=False)
        known[cfg.key] = values
        params = point_of(space, cfg)
        if params is not None:
            study.enqueue_trial(params)
    duplicates = 0
    while spent < budget and duplicates < 500:
        trial = study.ask()
        arch = space.suggest(trial)
        if arch.key in known:
            study.tell(trial, known[arch.key])
            duplicates += 1
            continue
        known[arch.key] = train(arch, stoppable=True)
        study.tell(trial, known[arch.key])
    return [x for x in history if x[0] <= budget] or [(0, 0.0, False)]


def hv_at(history: list[tuple[int, float, bool]], compute: float) -> float:
    """Hypervolume after `compute` epochs (the last point at or before it)."""
    best = 0.0
    for s, h, _ in history:
        if s > compute:
            break
        best = h
    return best


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and a 95 % t interval over seeds."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    m = float(a.mean())
    if len(a) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - half, m + half


def ratio_interval(a: list[float], b: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95 % interval of mean(a) / mean(b), resampling each side's seeds; seeded."""
    rng = np.random.default_rng(seed)
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ratios = [a_[rng.integers(0, len(a_), len(a_))].mean() / b_[rng.integers(0, len(b_), len(b_))].mean()
              for _ in range(n_boot)]
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    return float(lo), float(hi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from-run", type=Path, help="build the table from this run directory (trials.csv + curves.csv)")
    p.add_argument("--table", type=Path, default=DATA, help=f"learning-curve table (default {DATA.name})")
    p.add_argument("--seeds", type=int, default=8, help="replays per sampler x scheduler (default 8)")
    p.add_argument("--trials", type=int, default=40, help="compute budget = this many full trainings (default 40)")
    p.add_argument("--eta", type=float, default=3.0, help="moasha reduction factor (default 3)")
    p.add_argument("--fifo-only", action="store_true",
                   help="samplers under fifo only (long budgets: moasha runs many more, cheaper trainings)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    if args.from_run:
        rows = table_from_run(args.from_run)
        if not rows:
            print(f"{args.from_run}: no ok training with a full learning curve", file=sys.stderr)
            return 2
        write_table(rows, args.table)
        print(f"wrote {args.table} ({len({r['key'] for r in rows})} architectures, {len(rows)} rows)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace()
    archs, curves, macs = read_table(args.table)
    epochs = curves.shape[1]
    macs_of = MacsTable(space)
    wrong = [a.key for a, m in zip(archs, macs) if macs_of(a) != int(m)]
    if wrong:
        print(f"MACs are not additive for {len(wrong)} recorded architectures, e.g. {wrong[0]}", file=sys.stderr)
        return 1
    x = np.array([features(a, m, space) for a, m in zip(archs, macs)])
    print(f"table: {len(archs)} architectures x {epochs} epochs; MACs additivity checked on all of them")
    print(f"final val_acc: mean {curves[:, -1].mean():.2%}, range {curves[:, -1].min():.2%}..{curves[:, -1].max():.2%}")
    taus = {k: leave_one_out_tau(x, curves, k) for k in KS}
    for k, (tau, (lo, hi)) in taus.items():
        print(f"surrogate kNN k={k}: leave-one-out Kendall tau {tau:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    k = max(KS, key=lambda k: taus[k][0])
    surrogate = Surrogate(x, curves, k)
    tau_macs = kendall_tau(macs, curves[:, -1])
    print(f"chosen k={k}; for scale, tau(MACs, final val_acc) = {tau_macs:+.2f}")
    rungs = default_rungs(epochs, args.eta)
    budget = args.trials * epochs
    ref_macs = BOX_COST_FACTOR * max(macs_of(cfg) for cfg in PRESETS.values())
    print(f"replays: budget {budget} epochs (= {args.trials} full trainings of {epochs} epochs), "
          f"moasha rungs {','.join(map(str, rungs))} eta {args.eta:g}, {args.seeds} seeds each\n")
    results: dict[tuple[str, str], list[list[tuple[int, float]]]] = {}
    print(f"{'sampler':<8} {'scheduler':<9} {'final hv [95% CI]':<26} {'trainings':>9} {'full':>5}")
    for sampler in SAMPLERS:
        for scheduler in SCHEDULERS[:1] if args.fifo_only else SCHEDULERS:
            runs = [replay(sampler, scheduler, seed, space, surrogate, macs_of, budget, epochs, rungs, args.eta,
                           ref_macs) for seed in range(args.seeds)]
            results[(sampler, scheduler)] = runs
            m, lo, hi = mean_ci([h[-1][1] for h in runs])
            n_train = np.mean([len(h) for h in runs])
            n_full = np.mean([sum(1 for _, _, full in h if full) for h in runs])
            print(f"{sampler:<8} {scheduler:<9} {m:.4f} [{lo:.4f}, {hi:.4f}]   {n_train:9.1f} {n_full:5.1f}", flush=True)
    fifo = [h[-1][1] for h in results[("nsga2", "fifo")]]
    rand = [h[-1][1] for h in results[("random", "fifo")]]
    if args.fifo_only:
        tpe = [h[-1][1] for h in results[("tpe", "fifo")]]
        base = results[("nsga2", "fifo")][0][len(PRESETS) - 1][1]
        g = {name: [v - base for v in vals] for name, vals in (("nsga2", fifo), ("tpe", tpe), ("random", rand))}
        print(f"hypervolume after the {len(PRESETS)} baselines: {base:.4f}; gain over them: nsga2/random "
              "{:.2f} [{:.2f}, {:.2f}], tpe/random {:.2f} [{:.2f}, {:.2f}]".format(
                  np.mean(g["nsga2"]) / np.mean(g["random"]), *ratio_interval(g["nsga2"], g["random"]),
                  np.mean(g["tpe"]) / np.mean(g["random"]), *ratio_interval(g["tpe"], g["random"])))
        print("hv ratios (bootstrap 95 % over seeds): nsga2/random [{:.2f}, {:.2f}], tpe/random {:.2f} [{:.2f}, "
              "{:.2f}]".format(*ratio_interval(fifo, rand), np.mean(tpe) / np.mean(rand), *ratio_interval(tpe, rand)))
        print(f"nsga2/random: hv_ratio={np.mean(fifo) / np.mean(rand):.2f}")
        return 0
    moasha = [h[-1][1] for h in results[("nsga2", "moasha")]]
    # The baselines come first in every replay, so the hypervolume after them is one number: what a
    # search adds is the rest.  The ratios are on whole hypervolumes; the "gain" ones on what
    # the search adds above the baselines, which is where samplers and schedulers differ.
    base = results[("nsga2", "fifo")][0][len(PRESETS) - 1][1]

    def first_reaching(target: float) -> list[float]:
        return [next((s / budget for s, v, _ in h if v >= target), math.inf) for h in results[("nsga2", "moasha")]]

    needed = first_reaching(0.95 * float(np.mean(fifo)))
    needed_gain = first_reaching(base + 0.95 * (float(np.mean(fifo)) - base))
    compute_ratio = float(np.median(needed))
    half = [hv_at(h, budget / 2) for h in results[("nsga2", "moasha")]]

    def gains(values: list[float]) -> list[float]:
        return [v - base for v in values]

    def show(values: list[float]) -> str:
        return " ".join("inf" if math.isinf(v) else f"{v:.2f}" for v in values)

    print(f"\n(seconds: {time.perf_counter() - started:.0f}; moasha/fifo with nsga2, the default sampler)")
    print(f"hypervolume after the {len(PRESETS)} baselines: {base:.4f}; a search adds "
          f"{np.mean(gains(fifo)):+.4f} (nsga2 fifo), {np.mean(gains(rand)):+.4f} (random fifo)")
    print("moasha at half the compute: {:.2f} [{:.2f}, {:.2f}] x fifo's final hypervolume".format(
        np.mean(half) / np.mean(fifo), *ratio_interval(half, fifo)))
    print(f"compute to 0.95 x fifo's final hypervolume, per seed: {show(needed)} (the baselines alone reach it "
          f"when this is <= {len(PRESETS) * epochs / budget:.2f})")
    print(f"compute to 0.95 x fifo's gain over the baselines, per seed: {show(needed_gain)}; "
          f"median {np.median(needed_gain):.2f}")
    print("gain ratios (bootstrap 95 % over seeds): moasha/fifo {:.2f} [{:.2f}, {:.2f}], nsga2/random {:.2f} "
          "[{:.2f}, {:.2f}], tpe/random {:.2f} [{:.2f}, {:.2f}]".format(
              np.mean(gains(moasha)) / np.mean(gains(fifo)), *ratio_interval(gains(moasha), gains(fifo)),
              np.mean(gains(fifo)) / np.mean(gains(rand)), *ratio_interval(gains(fifo), gains(rand)),
              *(lambda t: (np.mean(gains(t)) / np.mean(gains(rand)), *ratio_interval(gains(t), gains(rand))))(
                  [h[-1][1] for h in results[("tpe", "fifo")]])))
    print("hv ratios (bootstrap 95 % over seeds): moasha/fifo [{:.2f}, {:.2f}], nsga2/random [{:.2f}, {:.2f}]".format(
        *ratio_interval(moasha, fifo), *ratio_interval(fifo, rand)))
    print(f"moasha/fifo: hv_ratio={np.mean(moasha) / np.mean(fifo):.2f} compute_ratio={compute_ratio:.2f}")
    print(f"nsga2/random: hv_ratio={np.mean(fifo) / np.mean(rand):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

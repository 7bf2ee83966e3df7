"""Planted effects: does `analysis.effects` say what is true, as often as it claims?

A simulated run has the design a real `--sampler qmc` search produces — the
four presets with their baseline seeds, then architectures drawn by Optuna's
`QMCSampler` (scrambled Sobol) through the real `SearchSpace.suggest` — and
accuracies that are known effects plus Gaussian seed noise.  Each run is
analysed by the command's own functions (`build_design`, `fit`,
`effect_table`, `resolution`), and over many runs we count:

* coverage: how often each 95 % interval holds its true effect (should be 93–97 %);
* detection: how often a planted bottleneck effect is called significant,
  against the power the command states for it (should agree within 10 points);
* family-wise error: how often any null bottleneck is called (should be ≤ 5 %).

Designs are drawn once per design seed and reused with fresh noise (coverage
conditional on the design is what a run's reader relies on).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd

from record.arch import to_flat
from space import SearchSpace, presets_for

from .checks import resolution
from .model import Design, build_design, effect_table, fit
from .units import fit_by_unit

SEED_SD = 0.0213  # benchmarks/data/proxy_fidelity.txt: the cpu budget's seed SD (2.13 points)
# Planted truth (val_acc units): two bottlenecks at 1 point, two at 2 points, the rest 0; a kernel and ratio effect.
PLANTED_MCA = {2: 0.01, 6: -0.01, 9: 0.02, 13: -0.02}
PLANTED_OTHER = {"kernels=5-7-11": 0.005, "kernels=7-11-21": 0.0, "ratio=3": -0.01, "ratio=4": -0.015}
BASE_ACC = 0.55


def qmc_design(n_sampled: int, seed: int, baseline_seeds: int = 2, space: SearchSpace | None = None) -> pd.DataFrame:
    """Rows (one per training) of a qmc search: presets x baseline_seeds, then `n_sampled` Sobol draws."""
    space = space or SearchSpace()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # "QMCSampler is experimental": known, and the design is what we test
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                             warn_independent_sampling=False)
    study = optuna.create_study(sampler=sampler)
    archs = [cfg for cfg in presets_for(space.backbone).values() for _ in range(baseline_seeds)]
    labels = [name for name in presets_for(space.backbone) for _ in range(baseline_seeds)]
    for i in range(n_sampled):
        trial = study.ask()
        archs.append(space.suggest(trial))
        study.tell(trial, 0.0)
        labels.append(f"#{i}")
    rows = [{**to_flat(a), "key": a.key, "label": lab, "status": "ok", "n_mca": a.n_mca} for a, lab in zip(archs, labels)]
    df = pd.DataFrame(rows)
    for c in [c for c in df.columns if c.startswith("mca_")]:
        df[c] = df[c].astype(bool)
    return df


def truth(design_rows: pd.DataFrame) -> np.ndarray:
    """The planted mean val_acc of every row."""
    mean = np.full(len(design_rows), BASE_ACC)
    for i, effect in PLANTED_MCA.items():
        mean += effect * design_rows[f"mca_{i}"].to_numpy(dtype=float)
    has_mca = design_rows["n_mca"].to_numpy() > 0
    for name, effect in PLANTED_OTHER.items():
        factor, level = name.split("=")
        hit = design_rows[factor].astype(str).to_numpy() == level
        mean += effect * (hit & has_mca if factor == "kernels" else hit)
    return mean


def true_effect(factor: str, level: str) -> float:
    if factor == "mca":
        return PLANTED_MCA.get(int(level), 0.0)
    return PLANTED_OTHER.get(f"{factor}={level}", 0.0)


def one_run(rows: pd.DataFrame, sd: float, rng: np.random.Generator) -> pd.DataFrame:
    """The command's table for one simulated run, with the truth and the stated power of every effect."""
    trials = rows.assign(val_acc=truth(rows) + rng.normal(0.0, sd, len(rows)))
    design = build_design(trials)
    result = fit(design.X, design.y, design.groups)
    table = effect_table(design, result)
    table = table[table["effect"].notna()].copy()
    res = resolution(design, result)
    table["truth"] = [true_effect(f, lv) for f, lv in zip(table["factor"], table["level"])]
    table["covered"] = (table["low"] <= table["truth"]) & (table["truth"] <= table["high"])
    table["stated_power"] = [res.power(t, res.se[f"mca={lv}"]) if f == "mca" and t else np.nan
                             for f, lv, t in zip(table["factor"], table["level"], table["truth"])]
    return table


@dataclass(frozen=True)
class SimSummary:
    """What many simulated runs show."""

    runs: int
    sd: float
    coverage: pd.Series  # per effect (factor=level)
    detection: pd.DataFrame  # per planted bottleneck: observed rate, mean stated power
    fwer: float

    def lines(self) -> list[str]:
        cov, n = self.coverage, self.runs
        half = 1.96 * np.sqrt(0.95 * 0.05 / n)
        out = [f"seed SD {self.sd * 100:.2f} points, {n} simulated runs:",
               f"  coverage of the 95 % intervals: pooled {cov.mean():.3f}, per effect {cov.min():.3f}–{cov.max():.3f} "
               f"(Monte-Carlo ±{half:.3f} per effect at 95 %)"]
        for name, r in self.detection.iterrows():
            out.append(f"  {name} (planted {r['truth'] * 100:+.1f} pts): detected {r['observed']:.3f} ± "
                       f"{1.96 * np.sqrt(r['observed'] * (1 - r['observed']) / n):.3f}, stated power {r['stated']:.3f}")
        fw_half = 1.96 * np.sqrt(max(self.fwer * (1 - self.fwer), 0.05 * 0.95) / n)
        out.append(f"  family-wise error over the null bottlenecks (Holm, stated 0.05): {self.fwer:.3f} ± {fw_half:.3f}")
        return out


def simulate(runs: int, sd: float = SEED_SD, n_sampled: int = 100, designs: int = 10, seed: int = 0) -> SimSummary:
    """`runs` simulated runs over `designs` QMC designs (seeds seed..seed+designs-1), noise seeded by `seed`."""
    layouts = [qmc_design(n_sampled, seed + d) for d in range(designs)]
    rng = np.random.default_rng(seed)
    tables = []
    for k in range(runs):
        t = one_run(layouts[k % designs], sd, rng)
        tables.append(t.assign(run=k, name=t["factor"] + "=" + t["level"]))
    all_ = pd.concat(tables, ignore_index=True)
    coverage = all_.groupby("name")["covered"].mean()
    planted = all_[all_["factor"].eq("mca") & all_["truth"].ne(0)]
    detection = planted.groupby("name").agg(truth=("truth", "first"), observed=("significant", "mean"),
                                            stated=("stated_power", "mean"))
    nulls = all_[all_["factor"].eq("mca") & all_["truth"].eq(0)]
    fwer = float(nulls.groupby("run")["significant"].any().mean())
    return SimSummary(runs, sd, coverage, detection, fwer)


def simulate_units(runs: int, *, supernets: int = 3, archs: int = 200, unit_sd: float = 0.005,
                   score_sd: float = 0.01, designs: int = 10, seed: int = 0) -> pd.DataFrame:
    """Coverage of the 95 % intervals on planted data where each supernet adds its own effect vector.

    Each simulated run scores the same `archs` architectures (random MCA bits,
    kernel sets and ratios) on `supernets` supernets: score = planted effects
    + the supernet's random effect vector (SD `unit_sd` per effect) + noise
    (SD `score_sd`).  Returns one row per run and effect with the truth and
    whether each fit's interval covered it: `by_unit` (this module) and
    `as_rows` (every score as an independent training, what not to do).
    The architectures are `designs` QMC designs, reused with fresh luck.
    """
    rng = np.random.default_rng(seed)
    layouts = []
    for d in range(designs):
        rows = qmc_design(archs, seed=seed + d, baseline_seeds=1)
        rows = rows[rows["ratio"] != 1].reset_index(drop=True)  # the CNN is outside a supernet's menu
        layouts.append(build_design(rows.assign(val_acc=truth(rows))))
    out = []
    for run in range(runs):
        design0 = layouts[run % designs]
        X = design0.X
        unit_effects = rng.normal(0.0, unit_sd, (supernets, X.shape[1]))
        ys, units, groups = [], [], []
        for j in range(supernets):
            ys.append(truth(design0.rows) + X.to_numpy() @ unit_effects[j] + rng.normal(0, score_sd, len(X)))
            units.append(np.full(len(X), j))
            groups.append(design0.groups)
        Xs = pd.concat([X] * supernets, ignore_index=True)
        y, unit, group = np.concatenate(ys), np.concatenate(units), np.concatenate(groups)
        # As rows: every score an independent observation of its own "architecture".
        naive_design = Design(design0.rows, Xs, y, np.arange(len(y)), design0.references)
        for how, result in (("by_unit", fit_by_unit(Xs, y, group, unit)), ("as_rows", fit(Xs, y, np.arange(len(y))))):
            table = effect_table(naive_design, result)
            table = table[table["effect"].notna()]
            tr = np.array([true_effect(f, lv) for f, lv in zip(table["factor"], table["level"])])
            out.append(pd.DataFrame({"run": run, "how": how, "name": table["factor"] + "=" + table["level"],
                                     "truth": tr, "covered": (table["low"] <= tr) & (tr <= table["high"])}))
    return pd.concat(out, ignore_index=True)


__all__ = ["SimSummary", "simulate", "simulate_units", "qmc_design", "one_run", "SEED_SD"]

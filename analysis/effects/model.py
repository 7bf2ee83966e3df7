"""The additive model behind `python -m analysis.effects`: every training answers all placement questions.

Each ok training (every seed a row) has every bottleneck's MCA on or off, a
kernel set and a ratio s, so one least-squares fit over all rows estimates
each choice's effect on `val_acc` at once.  With n trainings a bottleneck's
effect has a standard error of about 2σ/√n — far tighter than ranking
architectures one by one, where each carries its own seed noise σ.

Coding (what an effect means):
* `mca` i: MCA on bottleneck i against off, everything else held.
* `kernels` k: kernel set k against the reference set, on a net that has MCA
  (the column is 1 only where MCA is on somewhere — without MCA the kernels
  do not exist).
* `ratio` s (and `width`, `dw_size` where they vary): level against the
  reference level (s = 2 where present: GhostNet's own).

Intervals are 95 % t intervals from statsmodels OLS on the architectures'
mean accuracies (see `fit` for why not a cluster-robust covariance over the
rows), so repeated seeds of one architecture count as one architecture, not
as independent evidence.  The 16
bottleneck effects are one family: significance is after Holm's step-down
control of the family-wise error rate at 5 % (statsmodels `multipletests`);
kernel and ratio levels are Holm-controlled within their own factor.

Not every effect is estimable.  A bottleneck that never varied, two bits that
always move together (NSGA-II converged), a level seen in a single
architecture (its effect cannot be told from that architecture's own
deviation), or a column that is a combination of others are reported with the
reason, never with a number.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm

from record.arch import mca_columns, n_mca_columns

ALPHA = 0.05  # two-sided level of every interval and test
POWER = 0.80  # the power the resolving-power sentence is stated at
MIN_RESIDUAL_DF = 10  # architectures beyond the parameter count the fit needs to estimate its own noise
MIN_ARCHS_PER_SIDE = 2  # a level (or a bit's on/off side) seen in fewer architectures is not estimable
OTHER_FACTORS = ("kernels", "ratio", "width", "dw_size")
PREFERRED_REFERENCE = {"ratio": 2}  # GhostNet's own s, the natural baseline of a ratio effect


class EffectsError(ValueError):
    """The run cannot carry the model (too few trainings, one architecture): the caller says so in one line."""


@dataclass
class Design:
    """The design matrix of a run's ok trainings and what could not go into it (column -> reason)."""

    rows: pd.DataFrame
    X: pd.DataFrame  # intercept + estimable columns, one row per training
    y: np.ndarray
    groups: np.ndarray  # architecture index of every row (the clusters)
    references: dict[str, str]
    dropped: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> trainings left out of the fit
    units: np.ndarray | None = None  # one-shot runs: the supernet (seed) of every row, the unit of replication


def column_name(factor: str, level: str) -> str:
    return f"{factor}={level}"


def split_name(column: str) -> tuple[str, str]:
    factor, _, level = column.partition("=")
    return factor, level


def ok_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Trainings that ended ok with an accuracy: every seed is a row."""
    return trials[(trials["status"] == "ok") & trials["val_acc"].notna()].reset_index(drop=True)


def _reference(values: pd.Series, factor: str) -> str:
    preferred = PREFERRED_REFERENCE.get(factor)
    levels = set(values.astype(str))
    if preferred is not None and str(preferred) in levels:
        return str(preferred)
    return str(values.astype(str).value_counts().sort_index().idxmax())


def _rare_levels(rows: pd.DataFrame, factor: str, mask: pd.Series) -> dict[str, int]:
    """Levels of `factor` (among `mask` rows) held by fewer than MIN_ARCHS_PER_SIDE architectures."""
    archs = rows[mask].drop_duplicates("key")[factor].astype(str).value_counts()
    return {lvl: int(n) for lvl, n in archs.items() if n < MIN_ARCHS_PER_SIDE}


def _drop_rare(rows: pd.DataFrame, excluded: dict[str, int]) -> pd.DataFrame:
    """Leave out trainings whose kernel set, ratio, width or dw_size appears in a single architecture:
    their effect would be that architecture's own deviation.  Reasons go to `excluded`."""
    for factor in OTHER_FACTORS:
        if factor not in rows.columns:
            continue
        mask = rows["n_mca"] > 0 if factor == "kernels" else pd.Series(True, index=rows.index)
        rare = _rare_levels(rows, factor, mask)
        if not rare or len(rare) == rows[mask][factor].astype(str).nunique():
            continue
        hit = mask & rows[factor].astype(str).isin(rare)
        for lvl in rare:
            names = ", ".join(sorted(set(rows.loc[hit & (rows[factor].astype(str) == lvl), "label"].astype(str))))
            excluded[f"{factor} {lvl} appears in one architecture only ({names})"] = int(
                (hit & (rows[factor].astype(str) == lvl)).sum())
        rows = rows[~hit].reset_index(drop=True)
    return rows


def _factor_columns(rows: pd.DataFrame, references: dict[str, str]) -> dict[str, np.ndarray]:
    """Every candidate column, before estimability is judged."""
    cols: dict[str, np.ndarray] = {}
    for c in mca_columns(n_mca_columns(rows.columns)):
        cols[column_name("mca", c.split("_")[1])] = rows[c].astype(float).to_numpy()
    has_mca = (rows["n_mca"] > 0).to_numpy()
    for factor in OTHER_FACTORS:
        if factor not in rows.columns:
            continue
        mask = pd.Series(has_mca, index=rows.index) if factor == "kernels" else pd.Series(True, index=rows.index)
        values = rows[factor].astype(str)
        if values[mask].nunique() < 2:
            continue
        references[factor] = _reference(values[mask], factor)
        for lvl in sorted(set(values[mask]) - {references[factor]}, key=_level_order):
            cols[column_name(factor, lvl)] = ((values == lvl) & mask).to_numpy(dtype=float)
    return cols


def _level_order(level: str) -> tuple:
    try:
        return (0, float(level.split("-")[0]), level)
    except ValueError:
        return (1, 0.0, level)


def _arch_counts(col: np.ndarray, groups: np.ndarray) -> tuple[int, int]:
    """Architectures with the column at 1 and at 0."""
    on = len(set(groups[col == 1]))
    return on, len(set(groups[col == 0]))


def _estimable(cols: dict[str, np.ndarray], groups: np.ndarray, dropped: dict[str, str]) -> dict[str, np.ndarray]:
    """Columns that vary over enough architectures and are not copies of an earlier one."""
    kept: dict[str, np.ndarray] = {}
    for name, col in cols.items():
        on, off = _arch_counts(col, groups)
        if on == 0 or off == 0:
            dropped[name] = f"never varied: {'on' if off == 0 else 'off'} in every ok training"
            continue
        if min(on, off) < MIN_ARCHS_PER_SIDE:
            side = "on" if on < off else "off"
            dropped[name] = f"{side} in one architecture only: its effect is that architecture's own deviation"
            continue
        twin = next((k for k, v in kept.items() if np.array_equal(v, col) or np.array_equal(v, 1 - col)), None)
        if twin is not None:
            same = "together with" if np.array_equal(kept[twin], col) else "opposite to"
            dropped[name] = f"always moves {same} {twin}: the run cannot tell them apart"
            continue
        kept[name] = col
    return _full_rank(kept, dropped)


def _full_rank(kept: dict[str, np.ndarray], dropped: dict[str, str]) -> dict[str, np.ndarray]:
    """Drop columns (last first) that are linear combinations of the intercept and earlier columns."""
    names = list(kept)
    out: dict[str, np.ndarray] = {}
    basis = [np.ones(len(next(iter(kept.values())))) if kept else np.ones(0)]
    for name in names:
        trial = np.column_stack([*basis, kept[name]])
        if np.linalg.matrix_rank(trial) < trial.shape[1]:
            dropped[name] = "a linear combination of other choices in this run (aliased): not estimable"
            continue
        basis.append(kept[name])
        out[name] = kept[name]
    return out


def build_design(trials: pd.DataFrame) -> Design:
    """The design of a run's ok trainings; EffectsError when the run cannot carry the model."""
    rows = ok_rows(trials)
    if rows["key"].nunique() < 2:
        raise EffectsError(f"the run has {rows['key'].nunique()} ok architecture(s) ({len(rows)} ok trainings): "
                           "effects need trainings of different architectures")
    excluded: dict[str, int] = {}
    rows = _drop_rare(rows, excluded)
    groups = pd.factorize(rows["key"])[0]
    references: dict[str, str] = {}
    dropped: dict[str, str] = {}
    cols = _estimable(_factor_columns(rows, references), groups, dropped)
    p, archs = len(cols) + 1, len(set(groups))
    if archs < p + MIN_RESIDUAL_DF:
        raise EffectsError(f"the run has {len(rows)} ok trainings of {archs} architectures; its additive model has {p} "
                           f"parameters and needs at least {p + MIN_RESIDUAL_DF} architectures with an ok training "
                           f"({MIN_RESIDUAL_DF} beyond the parameters to estimate its own noise)")
    X = pd.DataFrame({"const": np.ones(len(rows)), **cols})
    return Design(rows, X, rows["val_acc"].to_numpy(dtype=float), groups, references, dropped, excluded)


def fit(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray):
    """OLS of the architectures' mean val_acc on their choices: each architecture counts once.

    Repeated seeds of one architecture are one piece of evidence about its
    architecture, not several: they are averaged before the fit, and the
    model's residual variance (architecture deviation + seed noise) gives
    classical t intervals on G − p df.  Why not a cluster-robust covariance
    over the rows: on planted effects (analysis.effects.sim, 500 runs of the
    qmc design) statsmodels' cluster covariance (CR1) covered 90.8 % for its
    worst effect and let Holm's family-wise error reach 6.8 %; the
    Bell–McCaffrey CR2 correction did no better (worst 89 % in 200 runs), because with
    one training per architecture a sandwich estimate rests on single
    residuals.  The fit on means covers 94.8 % pooled, 91.6–96.4 % per effect within a
    Monte-Carlo margin of ±1.9 (benchmarks/data/effects_planted.txt).
    """
    means = pd.DataFrame(X).assign(_y=y, _g=groups).groupby("_g", sort=True)
    Xg = means[list(X.columns)].first()
    return sm.OLS(means["_y"].mean().to_numpy(), Xg).fit()


def arch_design(X: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """One row per architecture (the rows `fit` uses)."""
    return X.assign(_g=groups).groupby("_g", sort=True)[list(X.columns)].first()


def holm(pvalues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reject, adjusted p) under Holm's step-down family-wise control at ALPHA; empty input, empty output.

    Written out (six lines) rather than statsmodels' `multipletests(method="holm")`, which gives the same
    numbers (tests/test_effects.py checks it) but runs a full `gc.collect()` on every call: 0.3 s each
    on a loaded machine, which made the 500-run planted-effects check take minutes instead of seconds.
    """
    p = np.asarray(pvalues, dtype=float)
    if len(p) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    adjusted = np.empty_like(stepped)
    adjusted[order] = stepped
    return adjusted <= ALPHA, adjusted


def effect_table(design: Design, result) -> pd.DataFrame:
    """One row per choice: factor, level, effect, low, high, p, p_holm, significant, note (why no number)."""
    ci = np.asarray(result.conf_int(alpha=ALPHA))
    rows = []
    for j, name in enumerate(design.X.columns):
        if name == "const":
            continue
        factor, level = split_name(name)
        rows.append({"factor": factor, "level": level, "effect": float(result.params.iloc[j]),
                     "se": float(result.bse.iloc[j]), "low": float(ci[j, 0]), "high": float(ci[j, 1]),
                     "p": float(result.pvalues.iloc[j]), "note": ""})
    for name, why in design.dropped.items():
        factor, level = split_name(name)
        rows.append({"factor": factor, "level": level, "effect": np.nan, "se": np.nan, "low": np.nan,
                     "high": np.nan, "p": np.nan, "note": why})
    table = pd.DataFrame(rows)
    table["p_holm"] = np.nan
    table["significant"] = False
    for factor, idx in table[table["p"].notna()].groupby("factor").groups.items():
        reject, adjusted = holm(table.loc[idx, "p"].to_numpy())
        table.loc[idx, "p_holm"] = adjusted
        table.loc[idx, "significant"] = reject
    order = {f: i for i, f in enumerate(("mca", *OTHER_FACTORS))}
    table["_o"] = [(order.get(f, 9), _level_order(lv)) for f, lv in zip(table["factor"], table["level"])]
    return table.sort_values("_o").drop(columns="_o").reset_index(drop=True)


__all__ = ["ALPHA", "POWER", "Design", "EffectsError", "build_design", "fit", "effect_table", "holm",
           "ok_rows", "column_name", "split_name"]

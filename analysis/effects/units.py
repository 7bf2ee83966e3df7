"""Effects when a whole unit shares its luck: scores inherited from weight-sharing supernets.

Every architecture scored on one supernet inherits that supernet's training
run: if the supernet happened to train its MCA on bottleneck 7 well, every
architecture with bottleneck 7 on scores a little higher on it.  Such a
supernet adds its own random vector of effects to all its scores, so a fit
over its rows as if they were independent trainings is precise about that
supernet, not about the architectures: with hundreds of scores per supernet
its intervals shrink towards zero while the supernet's own deviation stays.

The unit of replication is therefore the supernet (DESIGN.md, weight-sharing
contract): the additive model is fitted once per supernet (`model.fit` on that
supernet's scores), and the K effect vectors are combined as K independent
measurements — their mean, its standard error sd/√K and t intervals on K−1
degrees of freedom.  `analysis.effects.sim.simulate_units` plants supernet-level random
effects and counts how often each interval holds the truth (tests/test_effects_units.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .model import ALPHA, Design, EffectsError, build_design, fit, ok_rows


def t_pvalues(value, se, df: int) -> np.ndarray:
    """Two-sided p-values of `value` / `se` on `df` degrees of freedom (a zero SE: p 0)."""
    value, se = np.atleast_1d(np.asarray(value, float)), np.atleast_1d(np.asarray(se, float))
    t = np.divide(np.abs(value), se, out=np.full_like(value, np.inf), where=se > 0)
    return 2 * stats.t.sf(t, df)


def t_intervals(value, se, df: int, alpha: float = ALPHA) -> np.ndarray:
    """(n, 2) array of `value` ± the t quantile on `df` degrees of freedom times `se`."""
    value, se = np.atleast_1d(np.asarray(value, float)), np.atleast_1d(np.asarray(se, float))
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return np.column_stack([value - half, value + half])


@dataclass(frozen=True)
class Contrast:
    """One linear combination of the effects over K units: the attributes statsmodels' `t_test` result offers."""

    value: float
    se: float
    df: int

    @property
    def effect(self) -> np.ndarray:
        return np.array([self.value])

    @property
    def pvalue(self) -> np.ndarray:
        return t_pvalues(self.value, self.se, self.df)

    def conf_int(self, alpha: float = ALPHA) -> np.ndarray:
        return t_intervals(self.value, self.se, self.df, alpha)


@dataclass(frozen=True)
class UnitFit:
    """The combined effects of K units, with the attributes `effect_table` reads from an OLS result."""

    params: pd.Series
    bse: pd.Series
    df_resid: int  # K - 1
    per_unit: pd.DataFrame  # one row of effects per unit
    scale: float  # residual variance of one unit's scores around its own fit (mean over the units)

    @property
    def tvalues(self) -> pd.Series:
        return self.params / self.bse

    @property
    def pvalues(self) -> pd.Series:
        return pd.Series(t_pvalues(self.params, self.bse, self.df_resid), index=self.params.index)

    def conf_int(self, alpha: float = ALPHA) -> np.ndarray:
        return t_intervals(self.params, self.bse, self.df_resid, alpha)

    def t_test(self, c: np.ndarray) -> Contrast:
        """The contrast `c` (one row) on every unit's fit, combined like the effects: mean, sd/√K, K−1 df."""
        values = self.per_unit.to_numpy() @ np.asarray(c, dtype=float).ravel()
        return Contrast(float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))), self.df_resid)


def fit_by_unit(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, units: np.ndarray) -> UnitFit:
    """The model fitted on each unit's rows (`units`: e.g. the supernet seed of every row), then combined.

    Each unit must score enough architectures to fit the model on its own;
    fewer than two units leave no spread to estimate, an EffectsError.
    """
    labels = pd.unique(units)
    if len(labels) < 2:
        raise EffectsError(f"the scores come from {len(labels)} supernet(s): effects with intervals need at least "
                           "2 (a supernet is one unit of replication; its subnets share its luck)")
    per_unit, scales = [], []
    for label in labels:
        rows = units == label
        result = fit(X[rows].reset_index(drop=True), y[rows], groups[rows])
        per_unit.append(result.params.rename(label))
        scales.append(float(result.scale))
    table = pd.DataFrame(per_unit)
    k = len(table)
    return UnitFit(table.mean(), table.std(ddof=1) / np.sqrt(k), k - 1, table, float(np.mean(scales)))


def supernet_design(trials: pd.DataFrame) -> Design:
    """The design of a one-shot run, its supernet seed the unit of every row.

    Only architectures scored on every supernet enter: a unit's fit must see the
    same architectures as the others', or the units would answer different
    questions (a search stopped mid-handout leaves some scored on fewer).
    """
    rows = ok_rows(trials)
    k = rows["seed"].nunique()
    partial = rows["key"].map(rows.groupby("key")["seed"].nunique()) < k
    design = build_design(rows[~partial])
    if partial.any():
        design.excluded[f"scored on fewer than all {k} supernets (the search stopped before the rest)"] = \
            int(partial.sum())
    design.units = design.rows["seed"].to_numpy()
    return design


def fit_run(design: Design, X: pd.DataFrame | None = None):
    """The run's fit of `X` (default the design's): OLS on architecture means, or per supernet for a one-shot run."""
    X = design.X if X is None else X
    if design.units is None:
        return fit(X, design.y, design.groups)
    return fit_by_unit(X, design.y, design.groups, design.units)


__all__ = ["Contrast", "UnitFit", "fit_by_unit", "fit_run", "supernet_design"]

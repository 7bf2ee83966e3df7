"""What a run's additive model can and cannot say: resolving power, design inflation, additivity.

Resolving power.  The smallest bottleneck effect the run detects with 80 %
power is (t_crit + t_0.80) · SE, where SE = σ̂·√[(XᵀX)⁻¹]ᵢᵢ comes from the
run's residual noise σ̂ and its design X, and t_crit is the first step of the
Holm control (α / m for m bottlenecks, two-sided) — so the statement is the
worst case of the step-down, and a run with several real effects detects
somewhat more.  SE shrinks as 1/√n for a design of the same shape, which
gives the trainings needed for a target effect.  In a one-shot run the
unit is the supernet: SE is the spread of the K supernets' effects over √K,
the test has K − 1 df, and the count needed is of supernets.

Variance inflation.  Against a balanced orthogonal design with the same
number of trainings (every bit on in half of them, independent of the
others: Var = 4σ²/n), a bit's variance is inflated by n/4 · [(XᵀX)⁻¹]ᵢᵢ.
This is the whole price of the design — imbalance and correlation together —
which statsmodels' `variance_inflation_factor` (correlation only) does not
show; a sampler that keeps MCA on in 90 % of its trainings pays it here.

Additivity.  Each pair of bottlenecks gets its interaction term in turn;
Holm over all pairs says whether any interaction is real.  A held-out check
(architectures left out five at a time) compares the model's prediction error
on architectures it never saw with its in-sample residual SD.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from .model import ALPHA, POWER, Design, arch_design, holm, split_name
from .units import fit_run

FOLDS = 5


@dataclass(frozen=True)
class Resolution:
    """Per-bottleneck model SE and smallest detectable effect (val_acc units), and the test's df and critical t."""

    se: pd.Series
    mde: pd.Series
    df: int
    crit: float
    n: int  # units of replication: architectures (one training each), or supernets for a one-shot run
    unit: str = "architectures"

    def power(self, delta: float, se: float) -> float:
        """Probability the Holm first step calls an effect of size `delta` with standard error `se`."""
        shift = abs(delta) / se
        return float(stats.t.sf(self.crit - shift, self.df) + stats.t.cdf(-self.crit - shift, self.df))

    def trainings_for(self, target: float) -> int:
        """Units (architectures of the same design shape, one training each; or supernets each scoring
        the run's architectures) that bring the median smallest detectable effect down to `target`.

        With supernets the test's df is K − 1, so few units pay twice (SE and the t quantiles): the count
        is solved with the df of each candidate K, not scaled from the run's own critical value."""
        if self.unit != "supernets":
            return int(np.ceil(self.n * (float(self.mde.median()) / target) ** 2))
        unit_sd = float(self.se.median()) * np.sqrt(self.n)  # one supernet's effect SD
        k = np.arange(2, 1_000_001)
        m = max(len(self.se), 1)
        mde = (stats.t.ppf(1 - ALPHA / (2 * m), k - 1) + stats.t.ppf(POWER, k - 1)) * unit_sd / np.sqrt(k)
        return int(k[np.argmax(mde <= target)]) if (mde <= target).any() else int(k[-1])


def mca_names(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if split_name(c)[0] == "mca"]


def xtx_inverse_diagonal(X: pd.DataFrame) -> pd.Series:
    values = X.to_numpy(dtype=float)
    return pd.Series(np.diag(np.linalg.pinv(values.T @ values)), index=X.columns)


def resolution(design: Design, result) -> Resolution:
    """The run's resolving power for the bottleneck family (see the module docstring)."""
    names = mca_names(design.X)
    se = result.bse[names]  # σ̂·√[(XᵀX)⁻¹]ᵢᵢ on architecture means; sd/√K over supernets for a one-shot run
    df = int(result.df_resid)
    m = max(len(names), 1)
    crit = float(stats.t.ppf(1 - ALPHA / (2 * m), df))
    mde = (crit + float(stats.t.ppf(POWER, df))) * se
    if design.units is not None:
        return Resolution(se=se, mde=mde, df=df, crit=crit, n=len(set(design.units)), unit="supernets")
    return Resolution(se=se, mde=mde, df=df, crit=crit, n=len(set(design.groups)))


def inflation(design: Design) -> pd.Series:
    """Each bottleneck's variance against a balanced orthogonal design of the same size (1 = ideal)."""
    names = mca_names(design.X)
    X = arch_design(design.X, design.groups)
    return xtx_inverse_diagonal(X)[names] * len(X) / 4.0


@dataclass(frozen=True)
class Additivity:
    """Pairwise interaction tests (Holm over the pairs) and the held-out check."""

    tested: int
    table: pd.DataFrame  # pair, interaction, low, high, p, p_holm, significant; largest |t| first
    heldout_rmse: float | None
    residual_sd: float

    @property
    def additive(self) -> bool:
        return not bool(self.table["significant"].any()) if len(self.table) else True


def _interaction(design: Design, a: str, b: str) -> dict | None:
    product = design.X[a].to_numpy() * design.X[b].to_numpy()
    if len(set(design.groups[product == 1])) < 2 or len(set(design.groups[product == 0])) < 2:
        return None
    X = design.X.assign(_ab=product)
    if np.linalg.matrix_rank(X.to_numpy(dtype=float)) < X.shape[1]:
        return None
    res = fit_run(design, X)
    low, high = np.asarray(res.conf_int(alpha=ALPHA))[-1]
    return {"pair": f"{a.split('=')[1]}x{b.split('=')[1]}", "interaction": float(res.params.iloc[-1]),
            "low": float(low), "high": float(high), "p": float(res.pvalues.iloc[-1]),
            "t": abs(float(res.tvalues.iloc[-1]))}


def heldout_rmse(design: Design) -> float | None:
    """Prediction error on architectures left out of the fit (FOLDS folds by architecture)."""
    archs = np.unique(design.groups)
    if len(archs) < 2 * FOLDS:
        return None
    fold_of = np.random.default_rng(0).permutation(len(archs)) % FOLDS
    fold = fold_of[np.searchsorted(archs, design.groups)]
    X, errors = design.X.to_numpy(dtype=float), []
    for f in range(FOLDS):
        train = fold != f
        beta = np.linalg.lstsq(X[train], design.y[train], rcond=None)[0]
        errors.append(design.y[~train] - X[~train] @ beta)
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def additivity(design: Design, result) -> Additivity:
    """Every bottleneck pair's interaction (Holm), and the held-out prediction error."""
    rows = [r for a, b in combinations(mca_names(design.X), 2) if (r := _interaction(design, a, b)) is not None]
    table = pd.DataFrame(rows, columns=["pair", "interaction", "low", "high", "p", "t"])
    reject, adjusted = holm(table["p"].to_numpy())
    table = table.assign(p_holm=adjusted, significant=reject).sort_values("t", ascending=False)
    return Additivity(tested=len(table), table=table.drop(columns="t").reset_index(drop=True),
                      heldout_rmse=heldout_rmse(design), residual_sd=float(np.sqrt(result.scale)))


__all__ = ["Resolution", "Additivity", "resolution", "inflation", "additivity", "heldout_rmse", "mca_names"]

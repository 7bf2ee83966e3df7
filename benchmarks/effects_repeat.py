"""Does the placement answer repeat?  Two real searches with different --seed, analysed separately.

    python benchmarks/effects_repeat.py runs/qmc-smoke-seed1 runs/qmc-smoke-seed2

For the bottleneck effects both runs can estimate: the share whose 95 %
intervals overlap; the sign agreement of every effect (any factor) that
either run calls significant; the Pearson correlation of the two runs' 16
effects with its 95 % interval (Fisher z).  Beside it, Optuna's own
importance evaluator (PED-ANOVA, on each run's study, target val_acc): does it
order the bottlenecks like |effect|?  (Spearman ρ between importance and
|effect|, per run.)  Writes benchmarks/data/effects_repeat.txt, the two runs'
effect tables (effects_repeat.json) and their trials tables (small).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.effects import analyse, report_text, to_json  # noqa: E402
from analysis.load import load_run  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def fisher_ci(r: float, n: int) -> tuple[float, float]:
    if n < 4 or not np.isfinite(r):
        return float("nan"), float("nan")
    z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), 1.96 / np.sqrt(n - 3)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def importance_line(run, effects) -> str:
    """Optuna's PED-ANOVA importance of each mca_i (target val_acc, the study's first objective) against the
    run's |effect| (Spearman).  PED-ANOVA, not Optuna's default fANOVA: fANOVA needs scikit-learn, which this
    project does not install; PED-ANOVA scores how much a parameter matters for reaching the top 10 % of trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name="search", storage=f"sqlite:///{run.path / 'study.db'}")
        imp = optuna.importance.get_param_importances(
            study, target=lambda t: t.values[0], evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except Exception as exc:  # a study Optuna cannot evaluate is reported, not fatal to the comparison
        return f"{run.name}: Optuna importance not available ({type(exc).__name__}: {exc})"
    mca = effects.table[(effects.table["factor"] == "mca") & effects.table["effect"].notna()]
    pairs = [(imp.get(f"mca_{lv}", 0.0), abs(e)) for lv, e in zip(mca["level"], mca["effect"])]
    rho = stats.spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    lo, hi = fisher_ci(rho, len(pairs))
    top = ", ".join(f"{k} {v:.2f}" for k, v in list(imp.items())[:4])
    return (f"{run.name}: Optuna PED-ANOVA importance (val_acc) vs |effect| over {len(pairs)} bottlenecks: Spearman "
            f"rho {rho:+.2f} [{lo:+.2f}, {hi:+.2f}]; top importances: {top}")


def compare(a, b) -> list[str]:
    ta = a.table.set_index(a.table["factor"] + "=" + a.table["level"])
    tb = b.table.set_index(b.table["factor"] + "=" + b.table["level"])
    both = [k for k in ta.index if k in tb.index and np.isfinite(ta.loc[k, "effect"]) and np.isfinite(tb.loc[k, "effect"])]
    mca = [k for k in both if k.startswith("mca=")]
    overlap = [max(ta.loc[k, "low"], tb.loc[k, "low"]) <= min(ta.loc[k, "high"], tb.loc[k, "high"]) for k in mca]
    called = [k for k in both if ta.loc[k, "significant"] or tb.loc[k, "significant"]]
    agree = [np.sign(ta.loc[k, "effect"]) == np.sign(tb.loc[k, "effect"]) for k in called]
    x, y = ta.loc[mca, "effect"].to_numpy(float), tb.loc[mca, "effect"].to_numpy(float)
    r = float(np.corrcoef(x, y)[0, 1]) if len(mca) >= 3 else float("nan")
    lo, hi = fisher_ci(r, len(mca))
    return [f"bottleneck effects estimable in both runs: {len(mca)} of 16",
            f"intervals that overlap: {sum(overlap)} of {len(mca)} ({100 * np.mean(overlap):.0f} %)" if mca else
            "intervals that overlap: none estimable",
            f"effects called significant by either run: {len(called)} ({', '.join(called) or 'none'}); same sign in "
            f"both: {sum(agree)} of {len(called)}",
            f"correlation of the two runs' bottleneck effects: r = {r:+.2f} [{lo:+.2f}, {hi:+.2f}] (Fisher z, "
            f"n = {len(mca)})"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs=2, type=Path)
    p.add_argument("--out", type=Path, default=DATA / "effects_repeat.txt")
    p.add_argument("--keep-tables", action="store_true", help="copy the runs' trials.csv beside the printout")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    runs = [load_run(r) for r in args.runs]
    effects = [analyse(r, by_stage=True) for r in runs]
    lines = [f"Two searches, same menu and budget, different --seed: {', '.join(r.name for r in runs)}", ""]
    for r, e in zip(runs, effects):
        lines += [f"== {r.name} ({r.meta.get('sampler')}, seed {r.meta.get('seed')}, budget {r.meta.get('budget')}, "
                  f"{r.meta.get('trained_as', '')})", report_text(e), ""]
    lines += ["== Does the answer repeat?", *compare(*effects), ""]
    lines += ["== Optuna's own importance evaluator on the same runs", *(importance_line(r, e) for r, e in
                                                                       zip(runs, effects))]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps([to_json(e) for e in effects], indent=1) + "\n")
    if args.keep_tables:
        for r in runs:
            shutil.copy(r.path / "trials.csv", args.out.with_name(f"effects_repeat_{r.name}.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

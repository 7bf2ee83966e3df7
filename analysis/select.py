"""Pick one architecture from a run: the best under a budget, or the front's knee.

`python -m analysis.select RUN [--max-macs 20e6] [--max-latency-ms X] [--objectives ...] -o best.json`
writes the chosen `ArchConfig.to_dict()` as JSON, the file
`python -m trainer.train --arch best.json` reads (through `space.load_arch`).

With a budget the answer is unambiguous: the highest val_acc that fits.
Without one, the knee point of the Pareto front is the usual compromise: the
front member closest (Euclidean) to the ideal point after normalising each
objective to [0, 1] over the front (0 = best value on the front).  Unlike the
"farthest from the line between the extremes" rule, it works for any number
of objectives, including one.

Architectures are compared on their mean val_acc over seeds.  When the pick
is not significantly more accurate than a cheaper front member
(|Δval_acc| < 2 · SE of the difference, `record.stats`), the command says
so and names that member: on this run's evidence the cheaper one is as good.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from record.objectives import OBJECTIVES, cost_objectives
from record.stats import Z, Estimate, cheaper_within_noise

from .cli import Parser, UserError, parse_objectives, run_main
from .load import RunData, load_run
from .pareto import objective_values, normalise, objective_bounds, pareto_front, resolve_directions

SHOW = ["label", "number", *OBJECTIVES, "val_acc_se", "n_seeds", "mca_string", "mca_kernels", "ratio", "key"]


class SelectionError(UserError):
    """No trial satisfies the request (no ok trial, nothing within the budget)."""


def knee_point(front: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str] | None = None) -> pd.Series:
    """The front member closest to the ideal point (objectives normalised over the front).

    Ties go to the lower trial number, so the choice is reproducible.
    """
    directions = resolve_directions(list(objectives), directions)
    values = objective_values(front, objectives)
    finite = np.isfinite(values).all(axis=1) if len(values) else np.zeros(0, dtype=bool)
    if not finite.any():
        raise SelectionError("no trial with every objective known: nothing to select from")
    rows = front[finite]
    bounds = objective_bounds(rows, objectives)
    dist = np.linalg.norm(normalise(values[finite], list(objectives), directions, bounds), axis=1)
    numbers = rows["number"].to_numpy() if "number" in rows.columns else np.arange(len(rows))
    best = np.lexsort((numbers, np.round(dist, 12)))[0]
    return rows.iloc[best]


def best_under(df: pd.DataFrame, max_macs: float | None = None, max_latency_ms: float | None = None) -> pd.Series:
    """The ok trial with the best val_acc among those within the budget(s).

    Ties go to fewer MACs, then the lower trial number.  SelectionError (one
    line, naming the cheapest trial) when no ok trial fits.
    """
    ok = df[(df["status"] == "ok") & df["val_acc"].notna()] if "status" in df.columns else df[df["val_acc"].notna()]
    if ok.empty:
        raise SelectionError("no ok trial with a val_acc: nothing to select from")
    fits = pd.Series(True, index=ok.index)
    limits = []
    if max_macs is not None:
        macs = ok["macs"].astype(float)
        fits &= macs.notna() & (macs <= max_macs)
        limits.append(f"macs <= {max_macs:g} (smallest ok trial: {macs.min():.0f})")
    if max_latency_ms is not None:
        lat = ok["latency_ms"].astype(float)
        fits &= lat.notna() & (lat <= max_latency_ms)
        smallest = f"{lat.min():.3f} ms" if lat.notna().any() else "no latency measured"
        limits.append(f"latency_ms <= {max_latency_ms:g} (smallest ok trial: {smallest})")
    chosen = ok[fits]
    if chosen.empty:
        raise SelectionError("no ok trial meets the budget " + " and ".join(limits))
    order = np.lexsort((chosen["number"].to_numpy(), chosen["macs"].astype(float).fillna(np.inf).to_numpy(),
                        -chosen["val_acc"].to_numpy(dtype=float)))
    return chosen.iloc[order[0]]


def select(data: RunData, objectives: Sequence[str] | None = None, max_macs: float | None = None,
           max_latency_ms: float | None = None) -> pd.Series:
    """The row `python -m analysis.select` picks (budget if any, else knee of the front)."""
    ok = data.ok
    if ok.empty:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(data.trials["status"].value_counts().items()))
        raise SelectionError(f"run {data.path} has no ok trial ({counts})")
    if max_macs is not None or max_latency_ms is not None:
        return best_under(ok, max_macs=max_macs, max_latency_ms=max_latency_ms)
    objectives = list(objectives or data.objectives)
    front = pareto_front(ok, objectives)
    return knee_point(front, objectives)


def estimate_of(row: pd.Series) -> Estimate:
    """val_acc ± se of an architecture row (`RunData.archs`)."""
    se = row.get("val_acc_se", np.nan)
    return Estimate(float(row["val_acc"]), float(se) if pd.notna(se) else np.nan, int(row.get("n_seeds", 1) or 0))


def cheaper_equivalents(front: pd.DataFrame, objectives: Sequence[str]) -> dict[int, int]:
    """Trial number of each front member → that of a cheaper member within noise of it (`record.stats`)."""
    costs = cost_objectives(objectives)
    if "val_acc" not in objectives or not costs or front.empty:
        return {}
    rows = front[np.isfinite(objective_values(front, ["val_acc", *costs])).all(axis=1)]
    items = [(int(r["number"]), estimate_of(r), [float(r[c]) for c in costs]) for _, r in rows.iterrows()]
    return cheaper_within_noise(items)


def not_significantly_better(data: RunData, row: pd.Series, objectives: Sequence[str] | None = None) -> pd.Series | None:
    """A cheaper front member whose val_acc is within noise of the chosen `row`'s, or None.

    "Cheaper" is judged on the run's cost objectives (every one no worse, one
    better); the front is the run's, on means.  Of several, the one with the
    smallest first cost is returned: the cheapest design this run cannot
    tell apart from the pick.
    """
    objectives = list(objectives or data.objectives)
    costs = cost_objectives(objectives)
    if not costs:
        return None
    ok = data.ok
    front = pareto_front(ok, objectives)
    candidates = pd.concat([front[front["number"] != row["number"]], row.to_frame().T], ignore_index=True)
    for c in ("number", "n_seeds"):
        candidates[c] = candidates[c].astype(int)
    same = cheaper_equivalents(candidates, objectives)
    match = same.get(int(row["number"]))
    return None if match is None else front[front["number"] == match].iloc[0]


def noise_message(row: pd.Series, cheaper: pd.Series, objectives: Sequence[str]) -> str:
    """`#12 (0.4520 ± 0.0210) is not significantly better than the cheaper front member #5 (...)`."""
    a, b = estimate_of(row), estimate_of(cheaper)
    limit = Z * float(np.hypot(a.se, b.se))
    costs = ", ".join(f"{c} {OBJECTIVES[c].show(float(cheaper[c]))} vs {OBJECTIVES[c].show(float(row[c]))}"
                      for c in cost_objectives(objectives))
    return (f"{row['label']} (val_acc {a.show()}) is not significantly better than the cheaper front member "
            f"{cheaper['label']} (val_acc {b.show()}; {costs}): |Δval_acc| = {abs(a.mean - b.mean):.4f} < "
            f"{Z:g}·SE = {limit:.4f}; consider {cheaper['label']}")


def _from_effects(args) -> int:
    """The data's Selective MCA (analysis.effects): computed in full before anything is written."""
    from .effects.answer import check_budget, load_effects, placement_of, placement_sentence

    for flag, value in (("--max-macs", args.max_macs), ("--max-latency-ms", args.max_latency_ms)):
        check_budget(flag, value)
    placement = placement_of(load_effects(args.run), args.max_macs, args.max_latency_ms)
    out = Path(args.output)
    try:
        out.write_text(json.dumps(placement.arch.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(placement_sentence(placement))
    print(f"wrote {out}")
    return 0


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.select",
               description="Choose an architecture from a search run and write it as ArchConfig JSON "
                           "(for python -m trainer.train --arch FILE).")
    p.add_argument("run", help="run directory (<storage-path>/<name>)")
    p.add_argument("--max-macs", type=float, default=None, help="MACs budget at 32x32 (e.g. 20e6)")
    p.add_argument("--max-latency-ms", type=float, default=None, help="batch-1 latency budget in ms")
    p.add_argument("--objectives", nargs="+", default=None,
                   help="objectives of the front for the knee point (default: the run's)")
    p.add_argument("-o", "--output", default="best.json", help="where to write the ArchConfig JSON (default %(default)s)")
    p.add_argument("--from-effects", action="store_true",
                   help="write the placement analysis.effects predicts best (within the budgets) instead of a trial")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_effects:
        return _from_effects(args)
    for flag, value in (("--max-macs", args.max_macs), ("--max-latency-ms", args.max_latency_ms)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise UserError(f"{flag} must be a positive number, got {value:g}")
    objectives = parse_objectives(args.objectives)
    data = load_run(args.run)
    if objectives is None:
        objectives = parse_objectives([",".join(data.objectives)])
    row = select(data, objectives, args.max_macs, args.max_latency_ms)
    config = RunData.arch(row)
    out = Path(args.output)
    try:
        out.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    how = "best val_acc within budget" if args.max_macs is not None or args.max_latency_ms is not None \
        else f"knee point of the {','.join(objectives)} front"
    print(f"selected ({how}; val_acc is the mean over seeds, val_acc_se its standard error):")
    print(row[[c for c in SHOW if c in row.index]].to_frame().T.to_string(index=False))
    cheaper = not_significantly_better(data, row, objectives)
    if cheaper is not None:
        print("note: " + noise_message(row, cheaper, objectives))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="analysis.select"))

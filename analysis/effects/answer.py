"""The run's answer to the placement question: effects with intervals and costs, the checks' sentences, the
text and JSON the command prints, and the data's own Selective-MCA placement within a budget."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..cli import UserError
from ..latency_label import latency_source
from ..load import RunData, load_run
from .checks import Additivity, Resolution, additivity, inflation, resolution
from .costs import Placement, base_arch, best_placement, block_costs, choice_cost
from .prices import LatencyPrices, run_prices
from .model import ALPHA, Design, EffectsError, build_design, effect_table, holm
from .units import fit_run, supernet_design

PROG = "analysis.effects"
PTS = 100.0  # val_acc is a fraction; people read effects in points
DEFAULT_TARGET = 0.5  # points: the effect size the "trainings needed" sentence is stated for


@dataclass
class Effects:
    """Everything the command prints: the table with costs, resolving power, design, additivity."""

    data: RunData
    design: Design
    result: Any
    table: pd.DataFrame
    resolution: Resolution
    inflation: pd.Series
    additivity: Additivity
    stages: pd.DataFrame | None = None
    prices: LatencyPrices | None = None  # latency of each choice, from the run's latency source


def _with_costs(design: Design, table: pd.DataFrame, prices: LatencyPrices | None) -> pd.DataFrame:
    """Exact MACs and params of each choice, latency_ms (price and interval) from the run's latency source."""
    base = base_arch(design)
    costs = [choice_cost(base, f, lv) for f, lv in zip(table["factor"], table["level"])]
    table = table.assign(macs=[c[0] for c in costs], params=[c[1] for c in costs])
    lat_cols = {"latency_ms": np.nan, "latency_low": np.nan, "latency_high": np.nan}
    table = table.assign(**lat_cols)
    if prices is not None:
        for i, (f, lv) in enumerate(zip(table["factor"], table["level"])):
            price = prices.price(f, str(lv))
            if price is not None:
                table.loc[i, list(lat_cols)] = [price.ms, price.low, price.high]
    res = block_costs(base)["resolution"]
    table["resolution"] = [int(res.iloc[int(lv)]) if f == "mca" else np.nan
                           for f, lv in zip(table["factor"], table["level"])]
    return table


def stage_table(design: Design, result, table: pd.DataFrame) -> pd.DataFrame:
    """Bottlenecks grouped by resolution: the effect of MCA on every estimable bottleneck of a stage (sum of
    their effects, t_test of the contrast), Holm over the stages, and the stage's MCA cost."""
    mca = table[(table["factor"] == "mca") & table["effect"].notna()]
    rows = []
    for res, group in mca.groupby("resolution", sort=False):
        c = pd.Series(0.0, index=design.X.columns)
        c[[f"mca={lv}" for lv in group["level"]]] = 1.0
        test = result.t_test(c.to_numpy()[None, :])
        low, high = np.asarray(test.conf_int(alpha=ALPHA))[0]
        rows.append({"stage": f"{int(res)}x{int(res)}", "bottlenecks": " ".join(group["level"]),
                     "effect": float(np.asarray(test.effect).ravel()[0]), "low": float(low), "high": float(high),
                     "p": float(np.asarray(test.pvalue).ravel()[0]), "macs": int(group["macs"].sum()),
                     "params": int(group["params"].sum()), "latency_ms": float(group["latency_ms"].sum())})
    out = pd.DataFrame(rows)
    if len(out):
        reject, adjusted = holm(out["p"].to_numpy())
        out = out.assign(p_holm=adjusted, significant=reject)
    return out


def analyse(data: RunData, by_stage: bool = False) -> Effects:
    """The whole analysis of a run; EffectsError (a user error) when the run cannot carry the model.  Latency
    prices timed here (the first time, for a measured run) say so on stderr."""
    if "mca_0" not in data.trials.columns:
        raise EffectsError("the trials table has no mca_0 column: not a placement search")
    # Scores of one supernet share its luck: a one-shot run is fitted per supernet (analysis.effects.units).
    design = supernet_design(data.trials) if one_shot(data) else build_design(data.trials)
    result = fit_run(design)
    effects = effect_table(design, result)
    levels = {f: [str(lv) for lv in effects.loc[effects["factor"] == f, "level"]] for f in ("kernels", "ratio")}
    prices = run_prices(data.path, data.meta, base_arch(design), levels["kernels"], levels["ratio"],
                        lambda line: print(line, file=sys.stderr, flush=True))
    table = _with_costs(design, effects, prices)
    stages = stage_table(design, result, table) if by_stage else None
    return Effects(data, design, result, table, resolution(design, result), inflation(design),
                   additivity(design, result), stages, prices)


def one_shot(data: RunData) -> bool:
    return data.meta.get("strategy") == "oneshot"


def interval_words(e: Effects) -> str:
    """How the intervals were computed, for the header and the JSON."""
    if e.design.units is None:
        return "95 % t intervals from OLS on the architectures' means (seeds averaged: one architecture counts once)"
    k = len(set(e.design.units))
    return (f"95 % t intervals with the supernet as the unit: the model fitted on each of the {k} supernets' "
            f"scores, then mean ± t({k - 1})·SD/√{k} (a supernet's scores share its luck)")


def _pt(v: float, sign: bool = True) -> str:
    return "—" if v is None or not np.isfinite(v) else format(v * PTS, "+.2f" if sign else ".2f")


def _interval(r) -> str:
    return f"{_pt(r['effect'])} [{_pt(r['low'])}, {_pt(r['high'])}]"


def _cost(v: float, unit: str = "") -> str:
    if v is None or not np.isfinite(v):
        return "—"
    return f"{v / 1e6:+.3f}M" if unit == "M" else f"{v:+.3f}"


def effect_lines(e: Effects) -> list[str]:
    """The effects table, one line per choice (effects and intervals in points)."""
    head = f"{'factor':<8} {'level':<14} {'effect [95% CI], pts':<26} {'p_holm':>7} {'sig':>3} " \
           f"{'MACs':>9} {'params':>9} {'latency_ms [95% CI]':>26}"
    lines = [head]
    for _, r in e.table.iterrows():
        level = r["level"] if r["factor"] != "mca" else f"{r['level']} ({int(r['resolution'])}px)"
        if r["factor"] in ("kernels", "ratio", "width", "dw_size"):
            level = f"{r['level']} vs {e.design.references.get(r['factor'], '?')}"
        if not np.isfinite(r["effect"]):
            lines.append(f"{r['factor']:<8} {level:<14} not estimable: {r['note']}")
            continue
        lines.append(f"{r['factor']:<8} {level:<14} {_interval(r):<26} {r['p_holm']:>7.3f} "
                     f"{'*' if r['significant'] else '':>3} {_cost(r['macs'], 'M'):>9} "
                     f"{_cost(r['params'], 'M'):>9} {_latency(r):>26}")
    return lines


def _latency(r) -> str:
    if not np.isfinite(r["latency_ms"]):
        return "—"
    return f"{r['latency_ms']:+.3f} [{r['latency_low']:+.3f}, {r['latency_high']:+.3f}]"


def stage_lines(e: Effects) -> list[str]:
    lines = [f"{'stage':<8} {'bottlenecks':<16} {'effect [95% CI], pts':<26} {'p_holm':>7} {'sig':>3} {'MACs':>9}"]
    for _, r in e.stages.iterrows():
        lines.append(f"{r['stage']:<8} {r['bottlenecks']:<16} {_interval(r):<26} {r['p_holm']:>7.3f} "
                     f"{'*' if r['significant'] else '':>3} {_cost(r['macs'], 'M'):>9}")
    return lines


def resolving_sentence(e: Effects, target: float = DEFAULT_TARGET) -> str:
    r = e.resolution
    if not len(r.mde):
        return "Resolving power: no bottleneck effect is estimable in this run."
    lo, med, hi = r.mde.min(), r.mde.median(), r.mde.max()
    return (f"Resolving power: this run detects a bottleneck effect of {med * PTS:.2f} points with {80} % power "
            f"(median over {len(r.mde)} bottlenecks, {lo * PTS:.2f}–{hi * PTS:.2f}; residual SD "
            f"{e.additivity.residual_sd * PTS:.2f} points, {r.n} {r.unit}, Holm's first step at α = {ALPHA:g}); "
            f"a {target:g}-point effect would need about {r.trainings_for(target / PTS):,} {_units_needed(r)}.")


def _units_needed(r) -> str:
    if r.unit == "supernets":
        return "supernets, each scoring these architectures"
    return "architectures (one training each) of this design"


def design_sentence(e: Effects) -> str:
    infl = e.inflation
    if not len(infl):
        return "Design: no bottleneck varied."
    sampler = e.data.meta.get("sampler", "?")
    return (f"Design (sampler {sampler}): variance inflation of the bottleneck effects median {infl.median():.2f}, "
            f"max {infl.max():.2f} (mca_{infl.idxmax().split('=')[1]}) against a balanced orthogonal design of the "
            f"same {len(set(e.design.groups))} architectures (1 = ideal): this sampling costs the precision of "
            f"{100 * (1 - 1 / infl.median()):.0f} % of its architectures.")


def additivity_sentence(e: Effects) -> str:
    a = e.additivity
    held = "" if a.heldout_rmse is None else (
        f" On architectures left out of the fit the model's error is {a.heldout_rmse * PTS:.2f} points against a "
        f"residual SD of {a.residual_sd * PTS:.2f}.")
    if not a.tested:
        return "Additivity: no pair of bottlenecks varies enough to test an interaction." + held
    top = a.table.iloc[0]
    where = (f"largest: mca {top['pair']} {_pt(top['interaction'])} [{_pt(top['low'])}, {_pt(top['high'])}] "
             f"points, Holm p = {top['p_holm']:.3f}")
    if a.additive:
        return (f"Additivity: no interaction among the {a.tested} bottleneck pairs tested (Holm, FWER {ALPHA:g}; {where}); the additive "
                "answer is consistent with this run's data at its power." + held)
    n = int(a.table["significant"].sum())
    return (f"Additivity fails: {n} of {a.tested} bottleneck pairs interact ({where}); the effects above are "
            "averages over the run's placements, and the answer is per-architecture only (search.confirm)." + held)


def note_lines(e: Effects) -> list[str]:
    out = [f"Left out of the fit: {n} training(s), {why}." for why, n in e.design.excluded.items()]
    dropped = [f"{k.replace('=', ' ')} ({why})" for k, why in e.design.dropped.items()]
    if dropped:
        out.append("Not estimable: " + "; ".join(dropped) + ".")
    return out


def report_text(e: Effects, target: float = DEFAULT_TARGET, placement: Placement | None = None) -> str:
    d, data = e.design, e.data
    rows = ("ok trainings", "every seed a row") if d.units is None else \
        ("scores inherited from supernets", f"each on {len(set(d.units))} supernets")
    lines = [f"Which bottlenecks deserve MCA: run {data.name}, {len(d.y)} {rows[0]} of "
             f"{len(set(d.groups))} architectures ({rows[1]}).",
             f"Effect on val_acc in points against MCA off / the reference level; {interval_words(e)}; "
             f"* = significant after Holm over the family (the {len(e.resolution.mde)} "
             f"bottlenecks; each other factor's levels), FWER {ALPHA:g}. Costs: exact MACs and params of the choice; "
             f"{latency_words(e)}.", "", *effect_lines(e), ""]
    if e.stages is not None:
        lines += ["By stage (MCA on every estimable bottleneck of the stage):", *stage_lines(e), ""]
    lines += [resolving_sentence(e, target), design_sentence(e), additivity_sentence(e), *note_lines(e)]
    if placement is not None:
        lines.append(placement_sentence(placement))
    return "\n".join(lines)


def latency_words(e: Effects) -> str:
    """Where the latency column comes from (analysis.effects.prices)."""
    if e.prices is None:
        return f"latency_ms not priced: the run's latency source ({latency_source(e.data.meta)}) gives no runtime"
    return (f"latency_ms [95 % interval] priced by {e.prices.source} (a block added never below 0), against "
            f"the reference network's {e.prices.base_ms:.3f} ms")


def placement_sentence(p: Placement) -> str:
    lat = "" if p.latency_ms is None else f", latency_ms {p.latency_ms:.3f} (predicted)"
    bits = "".join("1" if b else "0" for b in p.arch.mca)
    kernels = "-".join(map(str, p.arch.kernels)) if any(p.arch.mca) else "-"
    return (f"The data's Selective MCA: mca={bits} kernels={kernels} ratio={p.arch.ratio}: predicted val_acc "
            f"{p.predicted:.4f} [{p.low:.4f}, {p.high:.4f}] (best of many: optimistic), macs {p.macs:,}, params "
            f"{p.params:,}{lat}.")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _clean(value.item())
    return value


def to_json(e: Effects, target: float = DEFAULT_TARGET, placement: Placement | None = None) -> dict[str, Any]:
    cols = ["factor", "level", "effect", "low", "high", "significant", "se", "p", "p_holm", "macs", "params",
            "latency_ms", "latency_low", "latency_high", "resolution", "note"]
    records = [{k: _clean(v) for k, v in r.items()} for r in e.table[cols].to_dict("records")]
    a = e.additivity
    out = {"run": str(e.data.path), "unit": "val_acc (fraction; x100 = points)", "alpha": ALPHA,
           "multiple_comparisons": "Holm (family-wise) over the bottlenecks; within each other factor",
           "interval": interval_words(e), "latency_prices": latency_words(e), "trainings": len(e.design.y),
           "architectures": len(set(e.design.groups)), "references": e.design.references, "effects": records,
           "resolving_power": {"mde_median": float(e.resolution.mde.median()) if len(e.resolution.mde) else None,
                               "mde": {k: float(v) for k, v in e.resolution.mde.items()}, "power": 0.8,
                               "target": target / PTS, "unit": e.resolution.unit, "trainings_for_target":
                                   e.resolution.trainings_for(target / PTS) if len(e.resolution.mde) else None,
                               "sentence": resolving_sentence(e, target)},
           "design": {"inflation": {k: float(v) for k, v in e.inflation.items()}, "sentence": design_sentence(e)},
           "additivity": {"additive": a.additive, "pairs_tested": a.tested, "heldout_rmse": a.heldout_rmse,
                          "residual_sd": a.residual_sd, "sentence": additivity_sentence(e),
                          "largest": [{k: _clean(v) for k, v in r.items()} for r in a.table.head(5).to_dict("records")]},
           "not_estimable": e.design.dropped, "left_out": e.design.excluded}
    if e.stages is not None:
        out["stages"] = [{k: _clean(v) for k, v in r.items()} for r in e.stages.to_dict("records")]
    if placement is not None:
        out["placement"] = {"arch": placement.arch.to_dict(), "predicted": placement.predicted, "low": placement.low,
                            "high": placement.high, "macs": placement.macs, "params": placement.params,
                            "latency_ms": placement.latency_ms}
    return out


def load_effects(run: str | Path, by_stage: bool = False) -> Effects:
    """`analyse` of a run directory, with the model's refusals as one-line user errors."""
    data = load_run(run)
    try:
        return analyse(data, by_stage)
    except EffectsError as exc:
        raise UserError(f"run {data.path}: {exc}") from None


def placement_of(e: Effects, max_macs: float | None, max_latency_ms: float | None) -> Placement:
    try:
        return best_placement(e.design, e.result, max_macs, max_latency_ms, e.prices)
    except EffectsError as exc:
        raise UserError(f"run {e.data.path}: {exc}") from None


def effects_pick(run: str | Path, max_macs: float | None = None, max_latency_ms: float | None = None):
    """The data's Selective MCA of a run as an ArchConfig (analysis.select --from-effects, search.confirm
    --pick effects); user errors as one line."""
    for flag, value in (("--max-macs", max_macs), ("--max-latency-ms", max_latency_ms)):
        check_budget(flag, value)
    return placement_of(load_effects(run), max_macs, max_latency_ms).arch


def check_budget(flag: str, value: float | None) -> None:
    if value is not None and not (np.isfinite(value) and value > 0):
        raise UserError(f"{flag} must be a positive number, got {value:g}")

"""The study's answer from `confirm.csv`: every system's test accuracy over seeds, against GhostNet.

`search.confirm` trains the chosen architecture(s) and the backbone's four
presets with several seeds on the whole training split and scores them on the
CIFAR-10 test batch.  Here each system becomes one row — costs, mean ± SD over
its seeds, and its difference from the reference preset (GhostNet; `ghost` for
the other backbones) with a Welch 95 % interval (unequal variances, few
seeds: scipy's `ttest_ind(equal_var=False)`) — and one sentence that answers
the question the study asks.  `search.confirm` prints it, `confirm.md` keeps
it, and the report's "The answer" section draws it: the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from record.rundir import CONFIRM_FILE, RunDirError, read_confirm, read_meta

from .load import typed_table

# The reference every difference is taken against: the backbone's Ghost preset.
REFERENCE = {"ghostnet": "ghostnet"}
DEFAULT_REFERENCE = "ghost"
LEVEL = 0.95
# search.confirm times each system's latency in its trainings, on the node that trained it, in the run's backend.
LATENCY_SOURCE = "measured on each training's node"


def confirm_latency_source(meta: dict) -> str:
    """"onnxruntime 1.32.0, 1 thread, measured on each training's node": the runtime search.confirm timed in
    (the run's latency backend; a run from before backends was timed in PyTorch eager)."""
    backend = meta.get("latency_backend") or {}
    label = backend.get("label") or "torch (PyTorch eager)"
    return f"{label}, {LATENCY_SOURCE}"


def reference_of(backbone: str) -> str:
    return REFERENCE.get(backbone, DEFAULT_REFERENCE)


def load_confirm(run_path: Path) -> pd.DataFrame | None:
    """confirm.csv as a typed frame of its ok rows, the newest of each (system, seed) (`--int8` trains a pair
    confirmed without it again); None when search.confirm never ran."""
    df = typed_table(Path(run_path) / CONFIRM_FILE, read_confirm, ints=("seed",),
                     floats=("test_acc", "macs", "params", "latency_ms", "test_acc_int8", "int8_agreement",
                             "latency_ms_int8"))
    if df is None or df.empty:
        return df
    return df[df["status"] == "ok"].drop_duplicates(["system", "seed"], keep="last").copy()


@dataclass(frozen=True)
class Difference:
    """system − reference in test accuracy (points of a fraction), with its Welch interval."""

    delta: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def show(self) -> str:
        return f"{100 * self.delta:+.2f} p [{100 * self.low:+.2f}, {100 * self.high:+.2f}]"


def welch(a: list[float], b: list[float]) -> Difference | None:
    """mean(a) − mean(b) with Welch's 95 % interval; None with fewer than 2 seeds on a side.

    Two systems whose seeds all agree exactly have a zero-width interval.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    delta = sum(a) / len(a) - sum(b) / len(b)
    if pd.Series(a).std() == 0 and pd.Series(b).std() == 0:
        return Difference(delta, delta, delta)
    from scipy import stats

    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(LEVEL)
    return Difference(delta, float(ci.low), float(ci.high))


def summarise(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per system: costs, mean and SD of test accuracy over its seeds, n, and the difference."""
    df = df.assign(**{c: math.nan for c in ("test_acc_int8", "int8_agreement", "latency_ms_int8") if c not in df})
    ref = df.loc[df["system"] == reference, "test_acc"].tolist()
    ref8 = df.loc[df["system"] == reference, "test_acc_int8"].dropna().tolist()
    rows = []
    for system, g in df.groupby("system", sort=False):
        accs = g["test_acc"].tolist()
        diff = welch(accs, ref) if system != reference else None
        int8 = g["test_acc_int8"].dropna().tolist()
        rows.append({"system": system, "key": g["key"].iloc[0], "params": g["params"].median(),
                     "macs": g["macs"].median(), "latency_ms": g["latency_ms"].median(),
                     "mean": sum(accs) / len(accs), "sd": pd.Series(accs).std() if len(accs) > 1 else math.nan,
                     "n": len(accs), "diff": diff,
                     "latency_ms_int8": g["latency_ms_int8"].median(),
                     "mean_int8": sum(int8) / len(int8) if int8 else math.nan,
                     "sd_int8": pd.Series(int8).std() if len(int8) > 1 else math.nan, "n_int8": len(int8),
                     "agreement": g["int8_agreement"].mean(),
                     "diff_int8": welch(int8, ref8) if system != reference else None})
    return pd.DataFrame(rows).sort_values(["macs", "system"]).reset_index(drop=True)


def pareto_systems(summary: pd.DataFrame) -> list[str]:
    """Systems no other beats on both mean test accuracy and MACs: the most accurate for their cost."""
    out = []
    for _, r in summary.iterrows():
        beaten = ((summary["mean"] >= r["mean"]) & (summary["macs"] <= r["macs"])
                  & ((summary["mean"] > r["mean"]) | (summary["macs"] < r["macs"])))
        if not beaten.any():
            out.append(r["system"])
    return out


def _fmt_count(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value / 1e6:.2f}M"


def table_cells(summary: pd.DataFrame, reference: str, latency_source: str) -> tuple[list[str], list[list[str]]]:
    """The study's table as text cells (header, rows): confirm.md and the report's HTML table show the same."""
    head = ["system", "params", "MACs", f"latency ms ({latency_source})", "test accuracy mean ± SD (n)",
            f"Δ vs {reference} [95 % CI, Welch]", "significant?"]
    rows = []
    for _, r in summary.iterrows():
        sd = f" ± {100 * r['sd']:.2f}" if math.isfinite(r["sd"]) else ""
        diff = r["diff"]
        delta = "reference" if r["system"] == reference else (diff.show() if diff else "needs 2 seeds each")
        sig = "" if r["system"] == reference or diff is None else ("yes" if diff.significant else "no")
        lat = f"{r['latency_ms']:.3f}" if math.isfinite(r["latency_ms"]) else "-"
        rows.append([str(r["system"]), _fmt_count(r["params"]), _fmt_count(r["macs"]), lat,
                     f"{100 * r['mean']:.2f}{sd} % ({int(r['n'])})", delta, sig])
    if "n_int8" in summary and summary["n_int8"].sum() > 0:  # search.confirm --int8
        head += ["int8 latency ms (onnxruntime-int8)", "int8 test accuracy mean ± SD (n)", "int8 agrees with fp32",
                 f"int8 Δ vs {reference} [95 % CI, Welch]"]
        for row, (_, r) in zip(rows, summary.iterrows()):
            row += _int8_cells(r, reference)
    return head, rows


def _int8_cells(r, reference: str) -> list[str]:
    if not r["n_int8"]:
        return ["-", "not quantized", "-", "-"]
    sd = f" ± {100 * r['sd_int8']:.2f}" if math.isfinite(r["sd_int8"]) else ""
    diff = r["diff_int8"]
    delta = "reference" if r["system"] == reference else (diff.show() if diff else "needs 2 seeds each")
    lat = f"{r['latency_ms_int8']:.3f}" if math.isfinite(r["latency_ms_int8"]) else "-"
    return [lat, f"{100 * r['mean_int8']:.2f}{sd} % ({int(r['n_int8'])})", f"{100 * r['agreement']:.1f} %", delta]


def table_markdown(summary: pd.DataFrame, reference: str, latency_source: str) -> str:
    head, rows = table_cells(summary, reference, latency_source)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def chosen_first(summary: pd.DataFrame, backbone: str) -> list[str]:
    """The systems in the sentence's order: the picked architectures, then the presets as the backbone lists them."""
    from space import presets_for

    names = list(presets_for(backbone))
    systems = list(summary["system"])
    return [s for s in systems if s not in names] + [s for s in names if s in systems]


def answer(summary: pd.DataFrame, reference: str, backbone: str) -> str:
    """The study's question answered from the table, in one sentence: the most accurate systems for their
    MACs, then every system against the reference, beyond noise or not."""
    best = pareto_systems(summary)
    parts = [f"Most accurate for its cost (mean test accuracy against MACs): {', '.join(best)}"]
    by = {r["system"]: r for _, r in summary.iterrows()}
    for system in chosen_first(summary, backbone):
        if system == reference:
            continue
        diff = by[system]["diff"]
        if diff is None:
            parts.append(f"{system} vs {reference}: not enough seeds to tell")
        else:
            parts.append(f"{system} {_verdict(diff)} {reference} ({diff.show()})")
    if "n_int8" in summary and summary["n_int8"].sum() > 0:
        for system in chosen_first(summary, backbone):
            diff = by[system]["diff_int8"]
            if system != reference and diff is not None:
                parts.append(f"in int8, {system} {_verdict(diff)} {reference} ({diff.show()})")
    return "; ".join(parts) + "."


def _verdict(diff: Difference) -> str:
    return ("beats" if diff.delta > 0 else "is below") if diff.significant else "is within noise of"


def study_answer(run_path: Path, backbone: str) -> tuple[pd.DataFrame, str, str] | None:
    """(summary, table markdown, sentence) of a run's confirm.csv; None before the reference has a result."""
    df = load_confirm(run_path)
    reference = reference_of(backbone)
    if df is None or df.empty or reference not in set(df["system"]):
        return None
    result = summarise(df, reference)
    try:
        meta = read_meta(Path(run_path))
    except RunDirError:  # a bare folder with a confirm.csv (tests, copies): the source is not recorded
        meta = {}
    source = confirm_latency_source(meta)
    return result, table_markdown(result, reference, source), answer(result, reference, backbone)

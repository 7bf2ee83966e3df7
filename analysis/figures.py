"""The report's Plotly figures, one function each, from typed trials DataFrames.

Only SVG trace types are used where points matter (`go.Scatter`, not
`Scattergl`): the report must draw in any browser, offline, and the browser
test counts the drawn points.  Every function takes the ok architectures
(`RunData.ok`: one row per architecture, val_acc the mean over its seeds
with `val_acc_se`) and returns a `go.Figure`; the caller decides what to skip.
Accuracy-against-cost plots draw ± 1 standard error as error bars.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from record.objectives import OBJECTIVES

from .load import placement_columns
from .pareto import pareto_front

FAINT = "rgba(120,120,120,0.35)"
FRONT = "#d62728"
BASELINE = "#1f77b4"
PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
LABELS = {name: o.label for name, o in OBJECTIVES.items()}

_ARCH_HOVER = ["label", "mca_string", "mca_kernels", "ratio", "number"]
_UNCERTAINTY = ["val_acc_se", "n_seeds"]
_HOVER_COLUMNS = [*_ARCH_HOVER, *OBJECTIVES, *_UNCERTAINTY]
_SE = 5 + len(OBJECTIVES)  # customdata index of val_acc_se (n_seeds follows)
_HOVER = ("<b>%{customdata[0]}</b> (trial %{customdata[4]})<br>mca %{customdata[1]}<br>"
          "kernels %{customdata[2]}, ratio s=%{customdata[3]}"
          + "".join(f"<br>{name} %{{customdata[{5 + j}]:{',.0f' if o.integer else o.fmt}}}"
                    + (f" ± %{{customdata[{_SE}]:.4f}} (%{{customdata[{_SE + 1}]}} seeds)" if name == "val_acc" else "")
                    for j, (name, o) in enumerate(OBJECTIVES.items()))
          + "<extra></extra>")
ERROR_BAR = dict(type="data", visible=True, thickness=1.2, width=4)


def _custom(df: pd.DataFrame) -> list[list]:
    """Per-point hover data: the architecture, every objective and val_acc's SE, NaN as null."""
    out = []
    for _, r in df.reindex(columns=_HOVER_COLUMNS).iterrows():
        row = []
        for c in _HOVER_COLUMNS:
            v = r[c]
            if c in OBJECTIVES or c == "val_acc_se":
                v = None if pd.isna(v) else float(v)
            elif c in ("ratio", "number", "n_seeds"):
                v = None if pd.isna(v) else int(v)
            else:
                v = str(v)
            row.append(v)
        out.append(row)
    return out


def error_bars(df: pd.DataFrame, color: str) -> dict:
    """± 1 standard error of val_acc (Plotly `error_y`); a point whose SE is unknown gets none."""
    se = df["val_acc_se"] if "val_acc_se" in df.columns else pd.Series(float("nan"), index=df.index)
    return dict(ERROR_BAR, array=_vals(se), color=color)


def _vals(values) -> list:
    """Plain lists, not numpy: plotly then writes readable JSON arrays (not base64
    typed arrays), so `gd.data[i].x.length` in the browser is the point count."""
    return [None if pd.isna(v) else v for v in pd.Series(values).tolist()]


def with_cost(ok: pd.DataFrame, cost: str) -> pd.DataFrame:
    """ok trials where both val_acc and `cost` are known: the points of a trade-off plot."""
    return ok[ok["val_acc"].notna() & ok[cost].notna()]


def tradeoff_figure(ok: pd.DataFrame, cost: str, title: str, x_title: str | None = None) -> go.Figure:
    """val_acc against one cost: every trial faint, the 2-D front as a step line, baselines labelled.

    `x_title` overrides the vocabulary's axis title (latency names its device).
    """
    pts = with_cost(ok, cost)
    front = pareto_front(pts, ["val_acc", cost]).sort_values([cost, "val_acc"])
    base = pts[pts["preset"] != ""]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        name=f"all ok architectures ({len(pts)})", x=_vals(pts[cost].astype(float)), y=_vals(pts["val_acc"]),
        mode="markers", marker=dict(color=FAINT, size=7), error_y=error_bars(pts, FAINT),
        customdata=_custom(pts), hovertemplate=_HOVER))
    fig.add_trace(go.Scatter(
        name=f"Pareto front ({len(front)})", x=_vals(front[cost].astype(float)), y=_vals(front["val_acc"]), mode="lines+markers",
        line=dict(color=FRONT, shape="hv", width=2), marker=dict(color=FRONT, size=10),
        error_y=error_bars(front, FRONT), customdata=_custom(front), hovertemplate=_HOVER))
    fig.add_trace(go.Scatter(
        name="baselines", x=_vals(base[cost].astype(float)), y=_vals(base["val_acc"]), mode="markers+text",
        text=list(base["preset"]), textposition="top center",
        marker=dict(color=BASELINE, size=12, symbol="diamond-open", line=dict(width=2)),
        customdata=_custom(base), hovertemplate=_HOVER))
    fig.update_layout(title=f"{title} (mean over seeds, error bars ± 1 standard error)",
                      xaxis_title=x_title or LABELS.get(cost, cost), yaxis_title=LABELS["val_acc"],
                      xaxis_tickformat="~s", template="plotly_white", height=480, legend=dict(orientation="h", y=-0.2))
    return fig


def mca_heatmap(ok: pd.DataFrame, front: pd.DataFrame) -> go.Figure:
    """Per insertion point, how often MCA is on: front members against all ok trials (2 × n)."""
    # Plotly draws y[0] at the bottom: the front goes on top.
    cols = placement_columns(ok)
    rows = [ok[cols].astype(float).mean().to_numpy(),
            front[cols].astype(float).mean().to_numpy() if len(front) else np.full(len(cols), np.nan)]
    names = [f"all ok trials ({len(ok)})", f"Pareto front ({len(front)})"]
    fig = go.Figure(go.Heatmap(
        z=[list(map(float, r)) for r in rows], x=list(range(len(cols))), y=names, zmin=0, zmax=1,
        colorscale="Blues", texttemplate="%{z:.0%}", colorbar=dict(title="MCA on"),
        hovertemplate="block %{x}<br>%{y}<br>MCA on in %{z:.0%}<extra></extra>"))
    fig.update_layout(title="MCA placement: share of trials with MCA after each block",
                      xaxis=dict(title="block index (MCA insertion point)", dtick=1), template="plotly_white", height=300)
    return fig


def arch_features(ok: pd.DataFrame) -> pd.DataFrame:
    """Numeric summaries of each architecture for the parallel-coordinates plot."""
    bits = ok[placement_columns(ok)].to_numpy(dtype=bool)
    idx = np.arange(bits.shape[1])
    first = np.where(bits.any(axis=1), np.where(bits, idx, 99).min(axis=1), -1)
    last = np.where(bits.any(axis=1), np.where(bits, idx, -1).max(axis=1), -1)
    return pd.DataFrame({"n_mca": bits.sum(axis=1), "first_mca": first, "last_mca": last}, index=ok.index)


def parallel_figure(ok: pd.DataFrame) -> go.Figure:
    """Architecture choices against the outcomes, one line per ok trial, coloured by val_acc."""
    feats = arch_features(ok)
    n = len(placement_columns(ok))
    kernel_sets = sorted(set(ok["kernels"]), key=lambda s: [int(k) for k in s.split("-")])
    kidx = ok["kernels"].map({k: i for i, k in enumerate(kernel_sets)}).astype(int)
    dims = [
        dict(label="MCA blocks", values=_vals(feats["n_mca"]), range=[0, n]),
        dict(label="first MCA (-1 none)", values=_vals(feats["first_mca"]), range=[-1, n - 1]),
        dict(label="last MCA (-1 none)", values=_vals(feats["last_mca"]), range=[-1, n - 1]),
        dict(label="kernels", values=_vals(kidx), tickvals=list(range(len(kernel_sets))), ticktext=kernel_sets),
        dict(label="ratio s", values=_vals(ok["ratio"]), tickvals=sorted(set(ok["ratio"].astype(int)))),
        dict(label="macs", values=_vals(ok["macs"].astype(float))),
    ]
    if ok["latency_ms"].notna().all():
        dims.append(dict(label="latency_ms", values=_vals(ok["latency_ms"])))
    dims.append(dict(label="val_acc", values=_vals(ok["val_acc"])))
    fig = go.Figure(go.Parcoords(
        line=dict(color=_vals(ok["val_acc"]), colorscale="Viridis", showscale=True, colorbar=dict(title="val_acc")),
        dimensions=dims))
    fig.update_layout(title="Architecture choices of the ok trials, coloured by val_acc", height=440,
                      margin=dict(l=70, r=70))
    return fig


def hypervolume_figure(curves: Sequence[tuple[str, pd.DataFrame]], objectives: Sequence[str], note: str,
                       yaxis_title: str = "hypervolume (normalised, reference 1.1)") -> go.Figure:
    """Hypervolume after each finished trial; several curves for a comparison."""
    fig = go.Figure()
    for i, (name, hist) in enumerate(curves):
        fig.add_trace(go.Scatter(
            name=name, x=list(range(1, len(hist) + 1)), y=_vals(hist["hypervolume"]), mode="lines+markers",
            line=dict(color=PALETTE[i % len(PALETTE)], shape="hv"), marker=dict(size=5),
            customdata=[[int(n), int(c)] for n, c in zip(hist["number"], hist["completed"])],
            hovertemplate="trial %{customdata[0]} (%{customdata[1]} ok so far)<br>hypervolume %{y:.4f}<extra>"
                          + name + "</extra>"))
    fig.update_layout(title=f"Hypervolume of the {', '.join(objectives)} front ({note})",
                      xaxis_title="finished trials", yaxis_title=yaxis_title,
                      template="plotly_white", height=380, legend=dict(orientation="h", y=-0.25))
    return fig


def compare_fronts_figure(runs: Sequence[tuple[str, pd.DataFrame]], cost: str, x_title: str | None = None) -> go.Figure:
    """Each run's 2-D (val_acc, cost) front, one colour per run."""
    fig = go.Figure()
    for i, (name, ok) in enumerate(runs):
        pts = with_cost(ok, cost)
        front = pareto_front(pts, ["val_acc", cost]).sort_values([cost, "val_acc"])
        colour = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(
            name=f"{name} ({len(front)} on front of {len(pts)})", x=_vals(front[cost].astype(float)), y=_vals(front["val_acc"]),
            mode="lines+markers", line=dict(color=colour, shape="hv"), marker=dict(color=colour, size=9),
            error_y=error_bars(front, colour), customdata=_custom(front), hovertemplate=_HOVER))
    fig.update_layout(title=f"Pareto fronts compared: val_acc against {cost} (error bars ± 1 standard error)",
                      xaxis_title=x_title or LABELS.get(cost, cost),
                      yaxis_title=LABELS["val_acc"], xaxis_tickformat="~s", template="plotly_white", height=480,
                      legend=dict(orientation="h", y=-0.2))
    return fig


def learning_curves_figure(curves: pd.DataFrame, rungs: Sequence[int] = ()) -> go.Figure:
    """val_acc after each epoch, one line per training: trained to the end in blue, stopped at a rung
    in grey (dashed, × where it stopped); dotted verticals at the rungs."""
    fig = go.Figure()
    styles = {"ok": dict(color="rgba(31,119,180,0.55)", dash="solid"), "stopped": dict(color=FAINT, dash="dash")}
    shown: set[str] = set()
    for (key, seed), c in curves.sort_values("epoch").groupby(["key", "seed"], sort=False):
        status = str(c["status"].iloc[0])
        if status not in styles:
            continue
        label = f"{c['label'].iloc[0]} seed {seed}"
        fig.add_trace(go.Scatter(
            name="trained to the end" if status == "ok" else "stopped at a rung", legendgroup=status,
            showlegend=status not in shown, x=list(c["epoch"]), y=_vals(c["val_acc"]), mode="lines+markers",
            line=dict(width=1.3, **styles[status]),
            marker=dict(size=[4] * (len(c) - 1) + [9 if status == "stopped" else 4],
                        symbol=["circle"] * (len(c) - 1) + ["x" if status == "stopped" else "circle"],
                        color=styles[status]["color"]),
            hovertemplate=f"{label}<br>epoch %{{x}}: val_acc %{{y:.4f}}<extra>{status}</extra>"))
        shown.add(status)
    for r in rungs:
        fig.add_vline(x=r, line=dict(color="rgba(0,0,0,0.3)", dash="dot"))
    fig.update_layout(title="Learning curves: val_acc after each epoch, one line per training",
                      xaxis_title="epoch", yaxis_title=LABELS["val_acc"], xaxis=dict(dtick=1),
                      template="plotly_white", height=420, legend=dict(orientation="h", y=-0.2))
    return fig


def fidelity_figure(pairs: pd.DataFrame, epochs: int, tau: float, tau_ci: tuple[float, float]) -> go.Figure:
    """Proxy val_acc against the reference training's, one point per re-trained architecture, y = x dashed."""
    lo = float(min(pairs["proxy"].min(), pairs["reference"].min()))
    hi = float(max(pairs["proxy"].max(), pairs["reference"].max()))
    fig = go.Figure()
    fig.add_trace(go.Scatter(name="y = x", x=[lo, hi], y=[lo, hi], mode="lines",
                             line=dict(color=FAINT, dash="dash"), hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        name=f"re-trained ({len(pairs)})", x=_vals(pairs["proxy"]), y=_vals(pairs["reference"]),
        mode="markers+text", text=list(pairs["label"].astype(str)), textposition="top center",
        marker=dict(color=FRONT, size=10),
        hovertemplate="%{text}<br>proxy %{x:.4f}<br>reference %{y:.4f}<extra></extra>"))
    fig.update_layout(title=f"Proxy against {epochs}-epoch reference: Kendall τ = {tau:.2f} "
                            f"[{tau_ci[0]:.2f}, {tau_ci[1]:.2f}]",
                      xaxis_title="val_acc, proxy (the search's budget)", yaxis_title="val_acc, reference training",
                      template="plotly_white", height=440, legend=dict(orientation="h", y=-0.2))
    return fig


def answer_figure(summary: pd.DataFrame, proxy_ok: pd.DataFrame, cost: str, presets: Sequence[str],
                  x_title: str | None = None) -> go.Figure:
    """The confirmed systems' test accuracy (mean ± 1 SD over seeds) against one cost, the search's proxy
    front (val_acc at the proxy budget, a different and usually lower scale) faint behind them; the
    picked architectures in red, the `presets` in blue."""
    pts = with_cost(proxy_ok, cost)
    front = pareto_front(pts, ["val_acc", cost]).sort_values([cost, "val_acc"])
    systems = summary[summary[cost].notna()]
    sd = systems["sd"].where(systems["sd"].notna(), None)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        name=f"proxy front, val_acc ({len(front)})", x=_vals(front[cost].astype(float)), y=_vals(front["val_acc"]),
        mode="lines+markers", line=dict(color=FAINT, shape="hv", width=1.5), marker=dict(color=FAINT, size=7),
        customdata=_custom(front), hovertemplate=_HOVER))
    fig.add_trace(go.Scatter(
        name=f"confirmed systems, test accuracy ({len(systems)})", x=_vals(systems[cost].astype(float)),
        y=_vals(systems["mean"]), mode="markers+text", text=list(systems["system"]), textposition="top center",
        marker=dict(color=[BASELINE if s in presets else FRONT for s in systems["system"]], size=11),
        error_y=dict(ERROR_BAR, array=_vals(sd), color="#444"),
        customdata=[[int(n), s] for n, s in zip(systems["n"], _vals(sd))],
        hovertemplate="<b>%{text}</b><br>" + f"{cost} %{{x:,.4~g}}<br>test accuracy %{{y:.4f}} "
                      "± %{customdata[1]:.4f} SD (%{customdata[0]} seeds)<extra></extra>"))
    fig.update_layout(title=f"Confirmed on the test batch: accuracy against {cost} (mean ± 1 SD over seeds; "
                            "grey: the search's proxy front)",
                      xaxis_title=x_title or LABELS.get(cost, cost), yaxis_title="accuracy (test; proxy: val_acc)",
                      xaxis_tickformat="~s", template="plotly_white", height=480, legend=dict(orientation="h", y=-0.2))
    return fig

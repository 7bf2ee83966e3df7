"""The report's "Which bottlenecks deserve MCA" section: analysis.effects drawn beside the costs.

A forest plot puts each bottleneck's effect on val_acc with its 95 % interval
(filled: significant after Holm) beside what MCA costs there — exact MACs and
the latency the run's latencies give it — so a reader sees at once where the
accuracy is bought cheaply.  The kernel-set and ratio effects get their own
small forest plot; the resolving-power, design and additivity sentences
follow.  Div ids: `effects`, `fig-effects-forest`, `fig-effects-other`,
`effects-resolving`, `effects-design`, `effects-additivity`, `effects-notes`,
`note-effects-empty` (the run cannot carry the model, and why).
"""
from __future__ import annotations

import html
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .model import EffectsError
from .answer import PTS, additivity_sentence, analyse, design_sentence, note_lines, resolving_sentence
from ..latency_label import latency_source
from ..load import RunData

SIG, NOT_SIG = "#c0392b", "#7f8c8d"


def _bars(rows: pd.DataFrame) -> dict:
    eff = rows["effect"] * PTS
    return dict(type="data", symmetric=False, array=(rows["high"] * PTS - eff).tolist(),
                arrayminus=(eff - rows["low"] * PTS).tolist(), thickness=1.5)


def _forest_trace(rows: pd.DataFrame, labels: list[str]) -> go.Scatter:
    colors = [SIG if s else NOT_SIG for s in rows["significant"]]
    hover = [f"{lab}: {e * PTS:+.2f} pts [{lo * PTS:+.2f}, {hi * PTS:+.2f}]" for lab, e, lo, hi in
             zip(labels, rows["effect"], rows["low"], rows["high"])]
    return go.Scatter(x=(rows["effect"] * PTS).tolist(), y=labels, mode="markers", name="effect (95 % CI)",
                      error_x=_bars(rows), marker=dict(color=colors, size=9,
                                                       symbol=["circle" if s else "circle-open" for s in
                                                               rows["significant"]]),
                      text=hover, hoverinfo="text")


def forest_figure(table: pd.DataFrame, latency_label: str) -> go.Figure:
    """16 bottleneck effects (points, 95 % CI) | the MCA block's MACs | its latency_ms, one row per bottleneck."""
    mca = table[table["factor"] == "mca"].copy()
    mca["label"] = [f"mca {lv} ({int(r)}px)" + ("" if np.isfinite(e) else " n/e")
                    for lv, r, e in zip(mca["level"], mca["resolution"], mca["effect"])]
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, column_widths=[0.55, 0.25, 0.2], horizontal_spacing=0.03,
                        subplot_titles=("effect on val_acc (points, 95 % CI; filled = Holm-significant)",
                                        "MCA block MACs (M)", "latency_ms"))
    est = mca[np.isfinite(mca["effect"])]
    fig.add_trace(_forest_trace(est, est["label"].tolist()), row=1, col=1)
    fig.add_trace(go.Bar(x=(mca["macs"] / 1e6).tolist(), y=mca["label"].tolist(), orientation="h", name="MACs (M)",
                         marker_color="#2980b9"), row=1, col=2)
    lat = mca[np.isfinite(mca["latency_ms"])]
    if len(lat):
        fig.add_trace(go.Scatter(x=lat["latency_ms"].tolist(), y=lat["label"].tolist(), mode="markers",
                                 name="latency_ms", marker=dict(color="#16a085", size=8),
                                 error_x=dict(type="data", symmetric=False,
                                              array=(lat["latency_high"] - lat["latency_ms"]).tolist(),
                                              arrayminus=(lat["latency_ms"] - lat["latency_low"]).tolist())),
                      row=1, col=3)
    fig.add_vline(x=0, line_dash="dot", line_color="#555", row=1, col=1)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=mca["label"].tolist())
    fig.update_xaxes(title_text="Δ val_acc (points)", row=1, col=1)
    fig.update_xaxes(title_text="MACs (M)", row=1, col=2)
    fig.update_xaxes(title_text=latency_label, row=1, col=3)
    fig.update_layout(height=560, showlegend=False, margin=dict(l=10, r=10, t=60, b=40),
                      title="Which bottlenecks deserve MCA: effect against cost")
    return fig


def other_figure(table: pd.DataFrame, references: dict[str, str]) -> go.Figure:
    """Kernel-set and ratio (and any other varying choice) effects against their reference level."""
    rows = table[(table["factor"] != "mca") & np.isfinite(table["effect"])]
    labels = [f"{f} {lv} vs {references.get(f, '?')} ({m / 1e6:+.2f}M MACs)"
              for f, lv, m in zip(rows["factor"], rows["level"], rows["macs"])]
    fig = go.Figure(_forest_trace(rows, labels))
    fig.add_vline(x=0, line_dash="dot", line_color="#555")
    fig.update_layout(height=120 + 40 * max(len(rows), 1), showlegend=False, xaxis_title="Δ val_acc (points)",
                      title="Kernel set (on a net with MCA) and ratio s", margin=dict(l=10, r=10, t=50, b=40))
    return fig


def effects_section(data: RunData, figure_html: Callable[[go.Figure, str], str],
                    note: Callable[[str, str], str]) -> list[str]:
    """The section's HTML; a run the model cannot be fitted to gets the reason instead of numbers."""
    head = '<section id="effects"><h2>Which bottlenecks deserve MCA</h2>'
    try:
        e = analyse(data)
    except EffectsError as exc:
        return [head, note(f"analysis.effects: {exc}.", "note-effects-empty"), "</section>"]
    intro = (f"<p>Every ok training ({len(e.design.y)} trainings of {len(set(e.design.groups))} architectures) has each "
             "bottleneck's MCA on or off, so one additive fit answers all placement questions at once "
             f"(<code>python -m analysis.effects {html.escape(str(data.path))}</code>).</p>")
    out = [head, intro, figure_html(forest_figure(e.table, f"latency_ms ({latency_source(data.meta)})"),
                                    "fig-effects-forest")]
    if ((e.table["factor"] != "mca") & np.isfinite(e.table["effect"])).any():
        out.append(figure_html(other_figure(e.table, e.design.references), "fig-effects-other"))
    for div, text in (("effects-resolving", resolving_sentence(e)), ("effects-design", design_sentence(e)),
                      ("effects-additivity", additivity_sentence(e))):
        out.append(f'<p id="{div}">{html.escape(text)}</p>')
    notes = note_lines(e)
    if notes:
        out.append(f'<ul id="effects-notes">{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>')
    return [*out, "</section>"]


__all__ = ["effects_section", "forest_figure", "other_figure"]

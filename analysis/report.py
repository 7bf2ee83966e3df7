"""One self-contained HTML report of a run (or several, compared).

`python -m analysis.report RUN -o report.html [--compare RUN_B RUN_C ...]`

The file must open offline, e.g. on a cluster login node or attached to an
issue, so plotly.js is embedded once in the head and no element refers to a
network address.  Every figure sits in a div with a stable id (`fig-acc-macs`,
`fig-acc-latency`, `fig-mca-heatmap`, `fig-parallel`, `fig-hypervolume`;
once `search.confirm` has run, "The answer" comes first: `fig-answer-macs`,
`fig-answer-latency`, `confirm-table`, `answer-text`; and with --compare
`fig-compare-front`, `fig-compare-hypervolume`) so that
tests and people can find them.

Accuracy is the mean over an architecture's seeds with its standard error
(`record.stats`): the plots draw ± 1 SE as error bars, a note states the
run's noise floor (`note-noise`), and the front table marks members that are
not significantly more accurate than a cheaper member ("≈ #n").  The
hypervolume is the share of a fixed box — chance accuracy and the baselines'
costs, not the trials' own range — stated in `note-hv-reference` and reused
for every run of a comparison.
"""
from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from record.objectives import OBJECTIVES
from record.rundir import ACCURACY_STATUSES, CONFIRM_FILE, STATUSES, TRAINED_STATUSES, write_text_atomic
from record.stats import Z, describe_noise
from space import presets_for

from . import figures
from .confirm import confirm_latency_source, reference_of, study_answer, table_cells
from .effects.report import effects_section
from .fidelity import fidelity, load_fidelity
from .cli import Parser, UserError, parse_objectives, run_main
from .latency_label import latency_axis_label, latency_source
from .load import RunData, RunError, check_objectives, load_run
from .pareto import fixed_box, hypervolume_history, pareto_front
from .select import cheaper_equivalents, estimate_of, knee_point, noise_message

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
header dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
header dt { font-weight: 600; } .note { color: #8a5a00; background: #fff6e0; padding: .5em 1em; }
table { border-collapse: collapse; font-size: 90%; } td, th { border: 1px solid #ccc; padding: .2em .5em; }
tr.knee { background: #ffe8a8; font-weight: 600; } td.mca { font-family: monospace; }
td.noise { color: #8a5a00; } td.acc { white-space: nowrap; }
section { margin: 2em 0; }
"""
TABLE_COLUMNS = ["label", "number", *OBJECTIVES, "n_seeds", "mca_string", "mca_kernels", "ratio"]
HV_AXIS = "hypervolume (share of the fixed box)"


def _objectives(data: RunData, objectives: Sequence[str] | None) -> list[str]:
    try:
        return check_objectives(list(objectives) if objectives else data.objectives)
    except ValueError as exc:
        where = "" if objectives else f" (from {data.path}/run.json)"
        raise RunError(f"{exc}{where}") from None


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _note(text: str, div_id: str) -> str:
    return f'<p class="note" id="{div_id}">{html.escape(text)}</p>'


def _header(data: RunData, objectives: list[str]) -> str:
    t = data.trials
    counts = t["status"].value_counts()
    done = int(counts[[s for s in TRAINED_STATUSES if s in counts.index]].sum())
    requested = data.meta.get("trials", "?")
    status = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in STATUSES)
    items = [("run", data.name), ("directory", str(data.path)), ("sampler", data.meta.get("sampler", "?")),
             ("objectives", ", ".join(objectives)), ("trials done / requested", f"{done} / {requested}"),
             ("status counts", status), ("budget", data.meta.get("budget", "?")),
             ("accuracy trained as", data.meta.get("trained_as", "the budget's architecture itself")),
             ("images per training", _sizes(data)),
             ("seeds", f"baselines x{data.meta.get('baseline_seeds', 1)}, repeats {data.meta.get('repeats', 1)}"),
             ("latency_ms", latency_source(data.meta)),
             ("created", data.meta.get("created", "?"))]
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items)
    return f"<header><h1>Search report: {html.escape(data.name)}</h1><dl>{rows}</dl></header>"


def _sizes(data: RunData) -> str:
    sizes = data.meta.get("data_sizes") or {}
    if not sizes:
        return "not recorded"
    return f"{int(sizes.get('train', 0)):,} training, {int(sizes.get('val', 0)):,} validation"


def _front_table(front: pd.DataFrame, knee_number: int | None, sort_by: str, same: dict[int, int]) -> str:
    """The front, one row per architecture; `same` marks members within noise of a cheaper one (≈ #n)."""
    front = front.sort_values([sort_by, "number"])
    labels = {int(n): str(lab) for n, lab in zip(front["number"], front["label"])}
    columns = ["selected", *TABLE_COLUMNS, "within noise"]
    head = "".join(f"<th>{html.escape('seeds' if c == 'n_seeds' else c)}</th>" for c in columns)
    body = []
    for _, r in front.iterrows():
        number = int(r["number"])
        knee = knee_number is not None and number == knee_number
        cells = ["★ knee" if knee else ""]
        for c in TABLE_COLUMNS:
            v = r[c]
            if c == "val_acc" and pd.notna(v):
                cells.append(estimate_of(r).show())
            elif pd.isna(v):
                cells.append("")
            elif c in OBJECTIVES:
                cells.append(f"{int(v):,}" if OBJECTIVES[c].integer else format(float(v), OBJECTIVES[c].fmt))
            else:
                cells.append(str(v))
        cells.append(f"≈ {labels[same[number]]} (cheaper)" if number in same else "")
        classes = {"mca_string": "mca", "within noise": "noise", "val_acc": "acc"}
        tds = "".join(f'<td class="{classes.get(c, "")}">{html.escape(x)}</td>' for c, x in zip(columns, cells))
        marks = " ".join(m for m in ("knee" if knee else "", "within-noise" if number in same else "") if m)
        body.append(f'<tr class="{marks}" data-number="{number}">{tds}</tr>')
    return f'<table id="front-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _box_note(box: dict[str, tuple[float, float]], origin: dict[str, str], source: str) -> str:
    def show(o: str, v: float) -> str:
        return OBJECTIVES[o].show(v) if o in OBJECTIVES else f"{v:g}"
    parts = [f"{o} {show(o, ideal)} → {show(o, ref)} ({origin[o]})" for o, (ideal, ref) in box.items()]
    return (f"Hypervolume: the share of a fixed box, from the ideal to the reference point, that the front "
            f"dominates (1 = all of it); the box is {source}: " + "; ".join(parts) + ". It does not move with the "
            "trials, so the curve rises only when the search finds something new.")


def noise_floor(data: RunData) -> str:
    """The run's noise floor in a line (record.stats), for the report."""
    ok = data.ok
    p = float(ok["val_acc"].mean()) if len(ok) else None
    return describe_noise(data.sd_seed, data.seeded_archs, data.n_val, p)


def _run_sections(data: RunData, objectives: list[str], box: dict, origin: dict) -> list[str]:
    """A run's page body: notes on what is left out, then the plots, the front and the fidelity check."""
    out = _status_notes(data)
    ok = data.ok
    if ok.empty:
        return [*out, _note("no ok trial yet: nothing to plot.", "note-empty")]
    out.append(_note(f"val_acc is the mean over an architecture's seeds ± its standard error (error bars: ± 1 SE); "
                     f"front members closer than {Z:g} standard errors are indistinguishable. Noise floor: "
                     + noise_floor(data) + ".", "note-noise"))
    out.append("<section><h2>Accuracy against cost</h2>")
    out.append(_figure_html(figures.tradeoff_figure(ok, "macs", "val_acc against MACs"), "fig-acc-macs"))
    if figures.with_cost(ok, "latency_ms").empty:
        out.append(_note("latency_ms was not measured in this run: the accuracy-latency plot is skipped.",
                         "note-no-latency"))
    else:
        out.append(_figure_html(figures.tradeoff_figure(ok, "latency_ms", "val_acc against latency",
                                                        latency_axis_label([data.meta])), "fig-acc-latency"))
    out.append("</section>")
    front = pareto_front(ok, objectives)
    out.append("<section><h2>Where MCA goes</h2>")
    out.append(_figure_html(figures.mca_heatmap(ok, front), "fig-mca-heatmap"))
    out.append(_figure_html(figures.parallel_figure(ok), "fig-parallel"))
    if len(data.curves):
        out.append("</section><section><h2>Learning curves</h2>")
        rungs = data.meta.get("rung_epochs") or []
        out.append(_figure_html(figures.learning_curves_figure(data.curves, rungs), "fig-curves"))
    out.append("</section><section><h2>Search progress</h2>")
    hist = hypervolume_history(data.trials, objectives, box=box)
    out.append(_note(_box_note(box, origin, "this run's"), "note-hv-reference"))
    out.append(_figure_html(figures.hypervolume_figure([(data.name, hist)], objectives, "share of the fixed box",
                                                       yaxis_title=HV_AXIS), "fig-hypervolume"))
    out.append("</section>")
    return [*out, *_front_section(data, front, objectives), *_fidelity_section(data, objectives)]


def _answer_section(data: RunData) -> list[str]:
    """"The answer": search.confirm's systems on the test batch (error bars ± 1 SD over seeds) against MACs
    and latency, the proxy front faint behind, and the study's table and sentence — confirm.md's numbers."""
    backbone = data.meta.get("backbone", "ghostnet")
    head = '<section id="answer"><h2>The answer: the chosen architecture against the presets, on the test batch</h2>'
    result = study_answer(data.path, backbone)
    if result is None:
        if not (data.path / CONFIRM_FILE).exists():
            return []
        return [head, _note(f"search.confirm has no ok result of the reference {reference_of(backbone)} yet.",
                            "note-answer-empty"), "</section>"]
    summary, _, sentence = result
    presets = list(presets_for(backbone))
    out = [head, f'<p id="answer-text"><b>{html.escape(sentence)}</b></p>',
           _figure_html(figures.answer_figure(summary, data.ok, "macs", presets), "fig-answer-macs")]
    if summary["latency_ms"].notna().any():
        out.append(_figure_html(figures.answer_figure(summary, data.ok, "latency_ms", presets,
                                                      f"latency_ms ({confirm_latency_source(data.meta)})"),
                                "fig-answer-latency"))
    columns, rows = table_cells(summary, reference_of(backbone), confirm_latency_source(data.meta))
    thead = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    tbody = "".join(f'<tr data-system="{html.escape(r[0])}">' + "".join(f"<td>{html.escape(c)}</td>" for c in r)
                    + "</tr>" for r in rows)
    out.append(f'<table id="confirm-table"><thead><tr>{thead}</tr></thead><tbody>{tbody}</tbody></table>')
    return [*out, "</section>"]


def _status_notes(data: RunData) -> list[str]:
    """Trials left out of the plots (not ok), and trainings the scheduler stopped early."""
    out = []
    failed = int((~data.trials["status"].isin(ACCURACY_STATUSES)).sum())
    if failed:
        out.append(_note(f"{failed} of {len(data.trials)} trials are not ok (failed, diverged or infeasible); "
                         "they are counted above and left out of every plot.", "note-not-ok"))
    stopped = data.trials[data.trials["status"] == "stopped"]
    if len(stopped):
        at = ", ".join(f"{n} at epoch {int(e)}" for e, n in stopped["epochs"].value_counts().sort_index().items())
        out.append(_note(f"{len(stopped)} of {len(data.trials)} trainings were stopped early by the moasha "
                         f"scheduler ({at}): their last accuracy is a lower-fidelity figure, drawn in grey in "
                         "the learning curves and never on a front.", "note-stopped"))
    return out


def _front_section(data: RunData, front, objectives: list[str]) -> list[str]:
    """The front's table, its knee point and the members within noise of a cheaper one."""
    knee = knee_point(front, objectives) if len(front) else None
    sort_by = next((o for o in objectives if o != "val_acc"), "macs")
    same = cheaper_equivalents(front, objectives)
    out = [f"<section><h2>Pareto front ({len(front)} of {len(data.ok)} ok architectures, objectives "
           f"{html.escape(', '.join(objectives))})</h2>"]
    if knee is not None:
        out.append(f"<p>Selected (knee point: closest to the ideal point after normalising each objective over "
                   f"the front): <b>{html.escape(str(knee['label']))}</b>, "
                   f"<code>python -m analysis.select {html.escape(str(data.path))} -o best.json</code></p>")
        knee_number = int(knee["number"])
        if knee_number in same:
            cheaper = front[front["number"] == same[knee_number]].iloc[0]
            out.append(_note("Not significant: " + noise_message(knee, cheaper, objectives) + ".", "note-knee-noise"))
    if same:
        out.append(_note(f"{len(same)} front member{'s are' if len(same) != 1 else ' is'} not significantly more "
                         f"accurate than a cheaper member (marked ≈ in the table: |Δval_acc| < {Z:g}·SE).",
                         "note-within-noise"))
    out.append(_front_table(front, None if knee is None else int(knee["number"]), sort_by, same))
    out.append("</section>")
    return out


def _fidelity_section(data: RunData, objectives: list[str]) -> list[str]:
    """"Can you trust this front?": proxy against reference accuracy, when search.fidelity has run."""
    reference = load_fidelity(data.path)
    if reference is None:
        return []
    head = '<section id="fidelity"><h2>Can you trust this front?</h2>'
    result = fidelity(data.ok, reference, objectives)
    if result is None:
        return [head, _note("fewer than 3 architectures have both a proxy and a reference result yet.",
                            "note-fidelity-empty"), "</section>"]
    items = "".join(f"<li>{html.escape(line)}</li>" for line in result.lines())
    out = [head, f'<ul id="fidelity-stats">{items}</ul>']
    if result.warning():
        out.append(_note(result.warning(), "note-fidelity-warning"))
    out.append(_figure_html(figures.fidelity_figure(result.pairs, result.epochs, result.tau, result.tau_ci),
                            "fig-fidelity"))
    out.append("</section>")
    return out


def _compare_sections(runs: list[RunData], objectives: list[str], box: dict, origin: dict) -> list[str]:
    names: list[str] = []
    for i, r in enumerate(runs):  # legends must tell runs apart even when two share a name
        names.append(r.name if r.name not in names else f"{r.name} [{i + 1}]")
    cost = next((o for o in objectives if o != "val_acc"), "macs")
    curves = [(n, hypervolume_history(r.trials, objectives, box=box)) for n, r in zip(names, runs)]
    rows = "".join(f"<li>{html.escape(n)}: {len(r.ok)} ok architectures, {len(r.trials)} trials, sampler "
                   f"{html.escape(str(r.meta.get('sampler', '?')))} — {html.escape(str(r.path))}</li>"
                   for n, r in zip(names, runs))
    return [
        f"<section><h2>Comparison of {len(runs)} runs</h2><ul>{rows}</ul>",
        _figure_html(figures.compare_fronts_figure(
            [(n, r.ok) for n, r in zip(names, runs)], cost,
            latency_axis_label([r.meta for r in runs]) if cost == "latency_ms" else None), "fig-compare-front"),
        _note(_box_note(box, origin, f"{names[0]}'s, the same for every run"), "note-compare-hv-reference"),
        _figure_html(figures.hypervolume_figure(curves, objectives, f"share of {names[0]}'s fixed box",
                                                yaxis_title=HV_AXIS), "fig-compare-hypervolume"),
        "</section>",
    ]


def write_report(run_dirs: Sequence[Path], out_path: Path, objectives: Sequence[str] | None = None) -> Path:
    """Write the report of `run_dirs[0]` (plus a comparison with the others) to `out_path`.

    Objectives default to the first run's; RunError (one line) for an unusable
    run directory or an unknown objective.
    """
    if not run_dirs:
        raise RunError("no run directory given")
    runs = [load_run(p) for p in run_dirs]
    objectives = _objectives(runs[0], objectives)
    box, origin = fixed_box(runs[0].archs, objectives)  # one box for the run and every run it is compared with
    body = [_header(runs[0], objectives), *_answer_section(runs[0]),
            *effects_section(runs[0], _figure_html, _note),  # "Which bottlenecks deserve MCA" (issue #29)
            *_run_sections(runs[0], objectives, box, origin)]
    if len(runs) > 1:
        body += _compare_sections(runs, objectives, box, origin)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Search report: {html.escape(runs[0].name)}</title><style>{CSS}</style>"
            f'<script type="text/javascript" id="plotlyjs">{get_plotlyjs()}</script></head>'
            f"<body>{''.join(body)}</body></html>\n")
    out_path = Path(out_path)
    write_text_atomic(out_path, page)  # a reader never sees half a report; a full disk keeps the last one
    return out_path


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.report",
               description="Write a self-contained HTML report (Pareto fronts, MCA placement, hypervolume) of a run.")
    p.add_argument("run", help="run directory (<storage-path>/<name>)")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default %(default)s)")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN", help="other runs to overlay on this one")
    p.add_argument("--objectives", nargs="+", default=None, help="objectives of the fronts (default: the run's)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    objectives = parse_objectives(args.objectives)
    try:
        out = write_report([Path(args.run), *map(Path, args.compare)], Path(args.output), objectives)
    except OSError as exc:
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="analysis.report"))

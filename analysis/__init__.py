"""Analysis of search runs: load a run directory, Pareto front and hypervolume, selection, reports.

Modules: `load` (run directory -> typed DataFrame), `pareto` (front, exact
hypervolume), `select` (knee point / best under a budget; CLI), `report`
(self-contained Plotly HTML; CLI), `figures`, `cli`.  Nothing here imports Ray or
starts training; importing the package itself imports nothing heavy.
"""

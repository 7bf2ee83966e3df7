"""Which bottlenecks deserve MCA, answered from all trainings of a run at once (`python -m analysis.effects RUN`).

`model` fits the additive OLS over every ok training (seeds averaged per
architecture) with its design and Holm's control; `costs` prices each choice
exactly (MACs, params) and by the latency table; `checks` states the smallest
resolvable effect, the design's variance inflation and whether the additive
model holds on the run's own data; `sim` plants known effects in simulated
runs (how the intervals were proven); `answer` turns a run into the effects,
their sentences and JSON; `report` draws them into the Plotly report; `cli`
is the command.
"""
from __future__ import annotations

from .answer import PTS, Effects, analyse, effects_pick, load_effects, report_text, to_json
from .model import EffectsError

__all__ = ["EffectsError", "Effects", "PTS", "analyse", "effects_pick", "load_effects", "report_text", "to_json"]

"""Optuna behind Ray Tune: the sampler, the study, and the bookkeeping around them.

Ray's own `OptunaSearch` drives the Optuna study (durable SQLite storage,
define-by-run space from `SearchSpace`, baselines via `points_to_evaluate`).
`ArchSearcher` wraps it for the three things Tune cannot know about:

* duplicates — an architecture already evaluated in this run is not trained
  again; the sampler is told its known result and asked for another;
* `--max-macs` — an architecture above the budget is never trained; it is
  recorded as infeasible, and the sampler learns it through Optuna's
  constraints support (the trial carries a positive constraint and is told
  PRUNED: no score is invented for a net that was never trained);
* failures — a trial that raised or diverged is told FAIL, never a fake score.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from record.objectives import Direction, ray_mode
from search.ledger import PENDING, Ledger
from space import ArchConfig, SearchSpace

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 500  # suggestions tried per Tune trial before the space counts as exhausted
STUDY_NAME = "search"


def make_sampler(name: str, seed: int, population_size: int) -> optuna.samplers.BaseSampler:
    """Optuna's samplers read constraints from the trials (Trial.set_constraint)."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def point_of(space: SearchSpace, config: ArchConfig) -> dict[str, Any] | None:
    """The sampler's params for `config`, or None when the menu cannot express it.

    Without MCA the kernel scales do not change the model, so any kernel set of
    the menu expresses such a config (the canonical keys agree).
    """
    try:
        params = space.to_params(config)
        if not any(config.mca):
            params["kernels"] = "-".join(str(k) for k in space.kernel_sets[0])
        return params if space.from_params(params).key == config.key else None
    except ValueError:
        return None


def heal_study(storage_url: str, ledger: Ledger, space: SearchSpace) -> None:
    """After a kill: trials left RUNNING/WAITING in storage are closed.

    Those whose architecture did finish (its row is in the table) are told the
    recorded values; the rest were cut off and are told FAIL.  Uses Optuna's
    public storage API (trial ids through study id + trial number).
    """
    storage = optuna.storages.RDBStorage(storage_url)
    study_id = storage.get_study_id_from_name(STUDY_NAME)
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        values = None
        if t.state == TrialState.RUNNING:
            try:
                values = ledger.values(space.from_params(t.params).key)
            except ValueError:
                values = None
        state = TrialState.COMPLETE if values is not None else TrialState.FAIL
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_state_values(trial_id, state=state, values=values)


class ArchSearcher(Searcher):
    """Deduplicating, budget-aware front of `OptunaSearch` (see module docstring)."""

    def __init__(
        self,
        inner: OptunaSearch,
        space: SearchSpace,
        objectives: list[str],
        directions: list[Direction],
        ledger: Ledger,
        macs_of: Callable[[ArchConfig], int],
        max_macs: float | None,
        on_infeasible: Callable[[ArchConfig, int], None],
        on_exhausted: Callable[[], None] = lambda: None,
        references: list[ArchConfig] | None = None,
    ) -> None:
        modes = [ray_mode(d) for d in directions]
        super().__init__(metric=inner.metric, mode=modes[0] if len(modes) == 1 else modes)
        self.inner = inner
        self.space = space
        self.objectives = objectives
        self.ledger = ledger  # owned by the search driver; the table writer records results in it
        self.macs_of = macs_of
        self.max_macs = max_macs
        self.on_infeasible = on_infeasible
        self.on_exhausted = on_exhausted
        # Baselines outside the sampler's menu (e.g. the s=1 CNN when 1 is not among
        # --ratios): trained first for comparison, but Optuna cannot be told about
        # a point outside its distributions, so they bypass the sampler.
        self.references = [a for a in (references or []) if a.key not in ledger]
        self._live: dict[str, str | None] = {}  # Tune trial id -> inner trial id (None: reference)
        self.skipped_duplicates = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.references:
            arch = self.references.pop(0)
            self.ledger.mark(arch.key, PENDING)
            self._live[trial_id] = None
            return {"arch": arch.to_dict()}
        for attempt in range(MAX_ATTEMPTS):
            inner_id = trial_id if attempt == 0 else f"{trial_id}~{attempt}"
            params = self.inner.suggest(inner_id)
            if params is None or params == Searcher.FINISHED:
                return params
            arch = self.space.from_params(params)
            seen = self.ledger.get(arch.key)
            if seen is not None:
                self.skipped_duplicates += 1
                self._tell(inner_id, self.ledger.values(arch.key), pruned=seen.status == "infeasible")
                continue
            if self.max_macs is not None:
                macs = self.macs_of(arch)
                if macs > self.max_macs:
                    self.ledger.mark(arch.key, "infeasible")
                    self.on_infeasible(arch, macs)
                    self._tell(inner_id, None, pruned=True)
                    continue
            self._live[trial_id] = inner_id
            self.ledger.mark(arch.key, PENDING)
            return {**params, "arch": arch.to_dict()}
        self.on_exhausted()
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self._live:
            return
        inner_id = self._live.pop(trial_id)
        if inner_id is None:
            return
        ok = not error and result is not None and result.get("status") == "ok"
        values = [float(result[o]) for o in self.objectives] if ok else None
        self._tell(inner_id, values)

    def _tell(self, inner_id: str, values: list[float] | None, pruned: bool = False) -> None:
        if values is not None:
            self.inner.on_trial_complete(inner_id, result=dict(zip(self.objectives, values)))
        elif pruned:
            self.inner.on_trial_complete(inner_id, result=None, error=False)  # PRUNED
        else:
            self.inner.on_trial_complete(inner_id, result=None, error=True)  # FAIL

    # Durability lives in study.db and trials.csv, not in Tune's searcher
    # checkpoints: nothing to save, and pickling the study each step is waste.
    def save(self, checkpoint_path: str) -> None:
        return None

    def restore(self, checkpoint_path: str) -> None:
        return None


def make_optuna_search(
    space: SearchSpace,
    objectives: list[str],
    directions: list[str],
    sampler: optuna.samplers.BaseSampler,
    storage_url: str,
    points: list[dict[str, Any]],
    max_macs: float | None = None,
    macs_of: Callable[[ArchConfig], int] | None = None,
) -> OptunaSearch:
    """Ray's OptunaSearch over the run's durable study (created or loaded).

    With `max_macs`, each trial carries the constraint macs - max_macs (≤ 0 is
    feasible) through Optuna's constraints support, so TPE learns the
    infeasible region and NSGA-II's constrained domination can use it.
    """
    storage = optuna.storages.RDBStorage(storage_url)
    modes = [ray_mode(d) for d in directions]

    def define_by_run(trial: optuna.Trial) -> None:
        arch = space.suggest(trial)
        if max_macs is not None and macs_of is not None:
            trial.set_constraint("macs", macs_of(arch) - max_macs)

    return OptunaSearch(
        space=define_by_run,
        metric=objectives[0] if len(objectives) == 1 else objectives,
        mode=modes[0] if len(modes) == 1 else modes,
        points_to_evaluate=points or None,
        sampler=sampler,
        study_name=STUDY_NAME,
        storage=storage,
    )

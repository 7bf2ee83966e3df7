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
* failures — a trial that raised or diverged is told FAIL, never a fake score;
* seeds — baselines are trained with `--baseline-seeds` seeds, and with
  `--repeats K` an architecture on the front or within one standard error of
  it is re-trained with new seeds until it has K results.  Every training is
  a Tune trial of the same trainable (the seed travels in the trial config),
  so repeats run on a cluster like any other trial.

How the sampler learns a mean.  A finished Optuna trial cannot change, so an
architecture that may get more seeds keeps its Optuna trial open (RUNNING)
and is told once, with the mean over its seeds, when its seeds are done (see
`ArchSearcher._settle`).  An architecture told earlier whose mean moves later
(it came within one SE of the front only after the front changed, or a kill
closed its trial before its repeats finished) gets a new COMPLETE trial with
the same parameters and the new mean, through
`study.add_trial(optuna.trial.create_trial(...))`.  Telling a single-seed
value early instead would let NSGA-II's elitism keep a lucky seed as a
parent; the extra trial keeps the history append-only, as Optuna requires.
Without repeats and with one baseline seed nothing waits: each trial is told
its result as it finishes, as before.

How the sampler learns a stopped training (`--scheduler moasha`).  It is told
COMPLETE with the values it was stopped with: its accuracy at the rung and its
exact costs.  Not PRUNED: Optuna's multi-objective samplers skip pruned trials
(older releases crashed on them, optuna#5260), so NSGA-II and TPE would learn
nothing from a stop and keep proposing the same region.  The rung accuracy
understates what the net would reach, but the scheduler stopped it because it
ranked in the bottom of its peers at the same epoch, so a pessimistic value is
the lesson the sampler should draw.  Our own front never uses it: the ledger
keeps stopped trainings off the front, and they are never repeated.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Collection, Sequence

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from record.arch import from_flat
from search.diskguard import GUARD, is_full_disk
from record.objectives import Direction, ray_mode
from search.ledger import Ledger
from search.study import STUDY_NAME
from space import ArchConfig, SearchSpace
from space.search_space import mca_param

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 500  # suggestions tried per Tune trial before the space counts as exhausted


def make_sampler(name: str, seed: int, population_size: int) -> optuna.samplers.BaseSampler:
    """Optuna's samplers read constraints from the trials (Trial.set_constraint)."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        # Scrambled Sobol: every bottleneck's MCA bit is balanced and nearly uncorrelated with the others,
        # the design analysis.effects estimates placement effects best from (lowest variance inflation).
        # Optuna maps each categorical choice to one Sobol coordinate; the warning about the first trial
        # being sampled independently is expected (the baselines come first), and so is Optuna's note that
        # the sampler is experimental (a user asked for it by name; the line says nothing they can act on).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                              warn_independent_sampling=False)
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
                values = ledger.sampler_values(space.from_params(t.params).key)
            except ValueError:
                values = None
        state = TrialState.COMPLETE if values is not None else TrialState.FAIL
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_state_values(trial_id, state=state, values=values)


def distributions_of(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """The distributions `SearchSpace.suggest` asks for, to add a trial by hand."""
    out = {mca_param(i): CategoricalDistribution([False, True]) for i in range(space.n_blocks)}
    out["kernels"] = CategoricalDistribution(space.kernel_choices)
    out["ratio"] = CategoricalDistribution(list(space.ratios))
    return out


def told_values(study: optuna.Study, space: SearchSpace) -> dict[str, list[float]]:
    """Architecture key → the values of its newest COMPLETE trial in the study."""
    out: dict[str, list[float]] = {}
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        try:
            out[space.from_params(t.params).key] = list(t.values)
        except ValueError:
            continue
    return out


def _same(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    return a is not None and b is not None and len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0) for x, y in zip(a, b))


class MeanTeller:
    """Adds a COMPLETE trial carrying an architecture's current mean (see the module docstring)."""

    def __init__(self, study: optuna.Study, space: SearchSpace, macs_of: Callable[[ArchConfig], int] | None = None,
                 max_macs: float | None = None) -> None:
        self.study = study
        self.space = space
        self.macs_of = macs_of
        self.max_macs = max_macs
        self.told = told_values(study, space)

    def add(self, config: ArchConfig, values: list[float]) -> bool:
        """A new trial for `config` with `values`; False when the menu cannot express it (a reference)."""
        params = point_of(self.space, config)
        if params is None:
            return False
        constraints = None
        if self.max_macs is not None and self.macs_of is not None:
            constraints = {"macs": float(self.macs_of(config) - self.max_macs)}
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions_of(self.space), values=values, constraints=constraints))
        self.told[config.key] = list(values)
        return True


def reconcile_study(storage_url: str, ledger: Ledger, space: SearchSpace,
                    macs_of: Callable[[ArchConfig], int] | None = None, max_macs: float | None = None) -> int:
    """Make the study agree with the trials table; returns the trials added.

    Trials left open by a kill (or by the end of the budget while an
    architecture waited for its repeats) are closed with the architecture's
    mean (`heal_study`); every architecture whose newest COMPLETE trial
    holds other values than the table's (its mean, or a stopped training's
    rung values: `Ledger.sampler_values`) gets a new trial with them.  So a
    training the study missed or was told FAIL for is healed whatever path
    Tune took to end it.
    """
    heal_study(storage_url, ledger, space)
    teller = MeanTeller(optuna.load_study(study_name=STUDY_NAME, storage=storage_url), space, macs_of, max_macs)
    added = 0
    for key, entry in ledger.entries.items():
        values = ledger.sampler_values(key)
        if values is None or entry.row is None or _same(teller.told.get(key), values):
            continue
        added += teller.add(from_flat(entry.row), values)
    return added


@dataclass(frozen=True)
class Handout:
    """The rules of what `ArchSearcher` hands out: objectives, the MACs cap, and seeds per architecture."""

    objectives: list[str]
    directions: list[Direction]
    macs_of: Callable[[ArchConfig], int]
    max_macs: float | None = None
    seed: int = 0  # an architecture's first seed; further ones count up from it
    repeats: int = 1
    baseline_keys: Collection[str] = ()
    baseline_seeds: int = 1
    every: int = 1  # seeds every architecture gets (search.oneshot: one per supernet)


@dataclass(frozen=True)
class Hooks:
    """What `ArchSearcher` tells its owner: an infeasible architecture, an exhausted space, and which
    trainings the scheduler stopped (Tune trial id -> rung epoch)."""

    on_infeasible: Callable[[ArchConfig, int], None] = lambda arch, macs: None
    on_exhausted: Callable[[], None] = lambda: None
    stopped: Callable[[str], int | None] | None = None


class ArchSearcher(Searcher):
    """Deduplicating, budget-aware, seed-aware front of `OptunaSearch` (see module docstring)."""

    def __init__(self, inner: OptunaSearch, space: SearchSpace, ledger: Ledger, rules: Handout,
                 hooks: Hooks = Hooks(), references: Sequence[ArchConfig] = (), storage_url: str | None = None) -> None:
        modes = [ray_mode(d) for d in rules.directions]
        super().__init__(metric=inner.metric, mode=modes[0] if len(modes) == 1 else modes)
        self.inner = inner
        self.space = space
        self.ledger = ledger  # owned by the search driver; the table writer records results in it
        self.objectives = rules.objectives
        self.macs_of, self.max_macs = rules.macs_of, rules.max_macs
        self.seed, self.repeats = rules.seed, rules.repeats
        self.baseline_keys, self.baseline_seeds = set(rules.baseline_keys), rules.baseline_seeds
        self.every = rules.every
        self.on_infeasible, self.on_exhausted, self.stopped = hooks.on_infeasible, hooks.on_exhausted, hooks.stopped
        # Baselines outside the sampler's menu (e.g. the s=1 CNN when 1 is not among
        # --ratios): trained first for comparison, but Optuna cannot be told about
        # a point outside its distributions, so they bypass the sampler.
        self.references = [a for a in references if a.key not in ledger]
        self._live: dict[str, tuple[str, int]] = {}  # Tune trial id -> (architecture key, seed)
        self._open: dict[str, str] = {}  # architecture key -> inner trial id not told yet (seeds to come)
        self._configs: dict[str, ArchConfig] = {}
        # The study behind `inner` (Ray's OptunaSearch keeps it as `_ot_study`), to add mean trials.
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url) if storage_url else inner._ot_study
        self._teller = MeanTeller(study, space, rules.macs_of, rules.max_macs)
        self.skipped_duplicates = 0
        self.repeat_trainings = 0  # seeds beyond an architecture's first handed out in this attempt

    # -- what to train next ---------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self._settle()
        if self.references:
            return self._hand_out(trial_id, self.references.pop(0), self.seed)
        repeat = self._next_repeat()
        if repeat is not None:
            self.repeat_trainings += 1
            return self._hand_out(trial_id, *repeat)
        for attempt in range(MAX_ATTEMPTS):
            inner_id = trial_id if attempt == 0 else f"{trial_id}~{attempt}"
            params = self.inner.suggest(inner_id)
            if params is None or params == Searcher.FINISHED:
                return params
            arch = self.space.from_params(params)
            seen = self.ledger.get(arch.key)
            if seen is not None:
                self.skipped_duplicates += 1
                values = self.ledger.sampler_values(arch.key)
                self._tell(inner_id, values, pruned=seen.status == "infeasible")
                if values is not None:
                    self._teller.told[arch.key] = values
                continue
            if self.max_macs is not None:
                macs = self.macs_of(arch)
                if macs > self.max_macs:
                    self.ledger.mark(arch.key, "infeasible")
                    self.on_infeasible(arch, macs)
                    self._tell(inner_id, None, pruned=True)
                    continue
            self._open[arch.key] = inner_id
            return self._hand_out(trial_id, arch, self.seed, params, stoppable=arch.key not in self.baseline_keys)
        self.on_exhausted()
        return Searcher.FINISHED

    def _hand_out(self, trial_id: str, arch: ArchConfig, seed: int,
                  params: dict[str, Any] | None = None, stoppable: bool = False) -> dict[str, Any]:
        """The trial config.  Only a sampled architecture's first training is `stoppable` by an
        early-stopping scheduler; baselines (the noise floor) and repeats (front members) run to the end."""
        self._configs[arch.key] = arch
        self.ledger.mark_pending(arch.key, seed)
        self._live[trial_id] = (arch.key, seed)
        return {**(params or {}), "arch": arch.to_dict(), "seed": seed, "stoppable": stoppable}

    def _base_target(self, key: str) -> int:
        return max(self.every, self.baseline_seeds if key in self.baseline_keys else 1)

    def target(self, key: str) -> int:
        """Trainings `key` should have: its baseline seeds, or --repeats while it is near the front."""
        base = self._base_target(key)
        if self.repeats > base and self.ledger.near_front(key):
            return self.repeats
        return base

    def _wants_more(self, key: str) -> bool:
        entry = self.ledger.get(key)
        if entry is None or entry.status == "infeasible":
            return False
        if entry.trainings and entry.values is None:  # trained, never ok: a failure is not noise to average
            return False
        return entry.trainings + len(entry.pending) < self.target(key)

    def _next_repeat(self) -> tuple[ArchConfig, int] | None:
        """(architecture, new seed) of the first architecture that wants another seed, if any."""
        for key in list(self.ledger.entries):
            if self._wants_more(key):
                taken = self.ledger.entries[key].seeds
                seed = self.seed
                while seed in taken:
                    seed += 1
                return self._config(key), seed
        return None

    def _config(self, key: str) -> ArchConfig:
        if key not in self._configs:
            self._configs[key] = from_flat(self.ledger.entries[key].row)  # type: ignore[arg-type]
        return self._configs[key]

    # -- telling the sampler ----------------------------------------------------
    def _settled(self, key: str) -> bool:
        entry = self.ledger.get(key)
        return entry is not None and not entry.pending and not self._wants_more(key)

    def _settle(self) -> None:
        """Tell Optuna the mean of every architecture whose seeds are done (module docstring)."""
        for key, entry in list(self.ledger.entries.items()):
            if not self._settled(key):
                continue
            values = self.ledger.sampler_values(key)
            if key in self._open:
                self._tell(self._open.pop(key), values)
                if values is not None:
                    self._teller.told[key] = values
            elif values is not None and not _same(self._teller.told.get(key), values):
                self._teller.add(self._config(key), values)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Tune calls this before the table writer records the row, so only a one-seed
        architecture is told here (its result is its value); the others wait for `_settle`."""
        if trial_id not in self._live:
            return
        key, _seed = self._live.pop(trial_id)
        if key not in self._open or max(self.repeats, self._base_target(key)) > 1:
            return
        stopped = self.stopped is not None and self.stopped(trial_id) is not None
        if stopped and (error or result is None or any(result.get(o) is None for o in self.objectives)):
            return  # Tune ended it without the rung's result (it was not running): `_settle` tells the row's
        ok = not error and result is not None and (result.get("status") == "ok" or stopped)
        values = [float(result[o]) for o in self.objectives] if ok else None  # type: ignore[index]
        self._tell(self._open.pop(key), values)
        if values is not None:
            self._teller.told[key] = values

    def _tell(self, inner_id: str, values: list[float] | None, pruned: bool = False) -> None:
        """Tell the study; a study that meets a full disk ends the experiment (trials.csv rebuilds it on resume)."""
        try:
            if values is not None:
                self.inner.on_trial_complete(inner_id, result=dict(zip(self.objectives, values)))
            elif pruned:
                self.inner.on_trial_complete(inner_id, result=None, error=False)  # PRUNED
            else:
                self.inner.on_trial_complete(inner_id, result=None, error=True)  # FAIL
        except Exception as exc:
            if not is_full_disk(exc):
                raise
            GUARD.full(exc, "the study (study.db)")

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

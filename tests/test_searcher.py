"""ArchSearcher around Ray's real OptunaSearch on a real SQLite study (no Ray cluster needed)."""
from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.trial import TrialState

from record.arch import to_flat
from search.ledger import Ledger
from search.searcher import (STUDY_NAME, ArchSearcher, Handout, Hooks, heal_study, make_optuna_search,
                             make_sampler, point_of, reconcile_study)
from space import PRESETS, ArchConfig, SearchSpace, build_model, count_macs

SPACE = SearchSpace()
OBJECTIVES = ["val_acc", "macs"]
DIRECTIONS = ["maximize", "minimize"]


def macs_of(arch: ArchConfig, _cache={}) -> int:
    if arch.key not in _cache:
        _cache[arch.key] = count_macs(build_model(arch))
    return _cache[arch.key]


def make(tmp_path, sampler="random", points=(), max_macs=None, references=(), **seeding):
    """`seeding`: the Handout's repeats / baseline_keys / baseline_seeds, and the Hooks' stopped."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    inner = make_optuna_search(SPACE, OBJECTIVES, DIRECTIONS, make_sampler(sampler, 3, 4), url, list(points),
                               max_macs=max_macs, macs_of=macs_of)
    infeasible: list[tuple[str, int]] = []
    known = Ledger(OBJECTIVES, DIRECTIONS, n_val=1000)
    hooks = Hooks(on_infeasible=lambda a, m: infeasible.append((a.key, m)), stopped=seeding.pop("stopped", None))
    searcher = ArchSearcher(inner, SPACE, known, Handout(OBJECTIVES, DIRECTIONS, macs_of, max_macs, **seeding), hooks,
                            references=list(references), storage_url=url)
    study = optuna.load_study(study_name=STUDY_NAME, storage=url)
    return searcher, known, infeasible, study


def ok_row(arch: ArchConfig, values: list[float]) -> dict[str, str]:
    """The trials-table row the table writer hands the ledger for an ok trial."""
    return {"status": "ok", "key": arch.key, **{o: repr(float(v)) for o, v in zip(OBJECTIVES, values)}}


def finish(searcher, known, trial_id, config, val_acc=0.5):
    arch = ArchConfig.from_dict(config["arch"])
    values = [val_acc, macs_of(arch)]
    known.record(ok_row(arch, values))
    searcher.on_trial_complete(trial_id, {"status": "ok", "val_acc": values[0], "macs": values[1]})
    return arch


def test_baselines_come_first_and_out_of_menu_ones_bypass_the_sampler(tmp_path):
    points = [p for p in (point_of(SPACE, c) for c in PRESETS.values()) if p]
    refs = [c for c in PRESETS.values() if point_of(SPACE, c) is None]
    assert [c.ratio for c in refs] == [1], "only the s=1 CNN is outside the default menu"
    searcher, known, _, study = make(tmp_path, points=points, references=refs)
    keys = [ArchConfig.from_dict(searcher.suggest(f"t{i}")["arch"]).key for i in range(4)]
    assert set(keys) == {c.key for c in PRESETS.values()}
    assert keys[0] == PRESETS["cnn"].key


def test_a_repeated_architecture_is_not_trained_again(tmp_path):
    searcher, known, _, study = make(tmp_path)
    first = searcher.suggest("t0")
    arch = finish(searcher, known, "t0", first, val_acc=0.61)
    # Make the sampler propose exactly that architecture again.
    study.enqueue_trial({k: v for k, v in first.items() if k != "arch"})
    second = searcher.suggest("t1")
    assert ArchConfig.from_dict(second["arch"]).key != arch.key
    assert searcher.skipped_duplicates == 1
    told = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(told) == 2 and told[0].values == told[1].values == [0.61, macs_of(arch)]


def test_architectures_above_max_macs_are_never_suggested(tmp_path):
    limit = (macs_of(PRESETS["ghostnet"]) + macs_of(PRESETS["selective_mca"])) / 2
    searcher, known, infeasible, study = make(tmp_path, sampler="nsga2", max_macs=limit)
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        assert macs_of(ArchConfig.from_dict(config["arch"])) <= limit
        finish(searcher, known, f"t{i}", config)
    assert infeasible, "the random start proposes some nets above the budget"
    assert all(m > limit for _, m in infeasible)
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert len(pruned) == len(infeasible)
    # Optuna's constraints support recorded the violation for the sampler.
    assert all(t.constraints["macs"] > 0 for t in pruned)
    assert all(t.constraints["macs"] <= 0 for t in study.get_trials() if t.state == TrialState.COMPLETE)


def test_failed_trials_are_told_fail_not_a_score(tmp_path):
    searcher, known, _, study = make(tmp_path)
    searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.on_trial_complete("t0", None, error=True)
    searcher.on_trial_complete("t1", {"status": "diverged", "val_acc": None, "macs": 1})
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]


def test_heal_study_closes_trials_left_running_by_a_kill(tmp_path):
    searcher, known, _, study = make(tmp_path)
    done = searcher.suggest("t0")
    searcher.suggest("t1")  # both left RUNNING, as after SIGKILL
    arch = ArchConfig.from_dict(done["arch"])
    known.record(ok_row(arch, [0.7, 123.0]))
    heal_study(f"sqlite:///{tmp_path / 'study.db'}", known, SPACE)
    states = {t.number: (t.state, t.values) for t in study.get_trials()}
    assert states[0] == (TrialState.COMPLETE, [0.7, 123.0])
    assert states[1][0] == TrialState.FAIL


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random", "qmc"])
def test_every_sampler_drives_the_space(tmp_path, sampler):
    searcher, known, _, study = make(tmp_path, sampler=sampler)
    keys = set()
    for i in range(5):
        config = searcher.suggest(f"t{i}")
        keys.add(finish(searcher, known, f"t{i}", config, val_acc=0.1 * i).key)
    assert len(keys) == 5


def test_the_qmc_sampler_says_nothing_a_user_cannot_act_on():
    """Optuna's "experimental" warning is not printed at every search with --sampler qmc."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(make_sampler("qmc", seed=0, population_size=8), optuna.samplers.QMCSampler)


def finish_seed(searcher, known, trial_id, config, val_acc):
    """As `finish`, for the training of `config["seed"]`."""
    arch = ArchConfig.from_dict(config["arch"])
    values = [val_acc, macs_of(arch)]
    known.record({**ok_row(arch, values), **to_flat(arch), "seed": str(config["seed"])})
    searcher.on_trial_complete(trial_id, {"status": "ok", "val_acc": values[0], "macs": values[1]})
    return arch


def test_repeats_wait_for_their_seeds_then_tell_the_mean(tmp_path):
    """--repeats 3: the front member gets seeds 1 and 2; Optuna hears once, the mean, when they are done."""
    import numpy as np

    searcher, known, _, study = make(tmp_path, repeats=3)
    first = searcher.suggest("t0")
    arch = finish_seed(searcher, known, "t0", first, 0.6)
    assert first["seed"] == 0
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING], "not told a single seed"
    repeats = [searcher.suggest("t1"), searcher.suggest("t2")]
    assert [ArchConfig.from_dict(c["arch"]).key for c in repeats] == [arch.key, arch.key]
    assert [c["seed"] for c in repeats] == [1, 2], "new seeds, never one already taken"
    finish_seed(searcher, known, "t1", repeats[0], 0.5)
    finish_seed(searcher, known, "t2", repeats[1], 0.64)
    nxt = searcher.suggest("t3")
    assert ArchConfig.from_dict(nxt["arch"]).key != arch.key and nxt["seed"] == 0
    told = study.get_trials()[0]
    assert told.state == TrialState.COMPLETE and told.values == pytest.approx([np.mean([0.6, 0.5, 0.64]), macs_of(arch)])
    est = known.estimate(arch.key)
    assert est.n == 3 and est.mean == pytest.approx(np.mean([0.6, 0.5, 0.64]))
    p = est.mean
    sd = np.std([0.6, 0.5, 0.64], ddof=1)
    assert est.se == pytest.approx(np.sqrt(sd ** 2 / 3 + p * (1 - p) / 1000 / 3))
    assert searcher.repeat_trainings == 2


def test_baselines_are_trained_with_their_seeds(tmp_path):
    points = [p for p in (point_of(SPACE, c) for c in PRESETS.values()) if p]
    refs = [c for c in PRESETS.values() if point_of(SPACE, c) is None]
    searcher, known, _, study = make(tmp_path, points=points, references=refs, baseline_seeds=2,
                                     baseline_keys=[c.key for c in PRESETS.values()])
    configs = [searcher.suggest(f"t{i}") for i in range(8)]
    pairs = [(ArchConfig.from_dict(c["arch"]).key, c["seed"]) for c in configs]
    assert sorted(pairs) == sorted((c.key, s) for c in PRESETS.values() for s in (0, 1))
    # Optuna knows nothing until an architecture's seeds are in: every baseline trial is still open.
    assert all(t.state == TrialState.RUNNING for t in study.get_trials())


def test_a_mean_that_moves_after_the_tell_becomes_a_new_trial(tmp_path):
    """Optuna's finished trials are immutable: a later seed adds a trial with the new mean (on resume too)."""
    searcher, known, _, study = make(tmp_path)
    config = searcher.suggest("t0")
    arch = finish_seed(searcher, known, "t0", config, 0.6)  # one seed, told at once
    assert [t.values for t in study.get_trials()] == [[0.6, macs_of(arch)]]
    known.record({**ok_row(arch, [0.4, macs_of(arch)]), **to_flat(arch), "seed": "1"})  # e.g. a repeat in a later attempt
    assert reconcile_study(f"sqlite:///{tmp_path / 'study.db'}", known, SPACE) == 1
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0].values == [0.6, macs_of(arch)] and trials[1].values == pytest.approx([0.5, macs_of(arch)])
    assert trials[1].params == trials[0].params
    assert reconcile_study(f"sqlite:///{tmp_path / 'study.db'}", known, SPACE) == 0, "already agrees"


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_samplers_keep_proposing_after_stopped_trainings(tmp_path, sampler):
    """Every other training is stopped at a rung (--scheduler moasha) and told COMPLETE with its rung
    values: NSGA-II (population 4, so generations breed from stopped trials) and TPE keep proposing
    new architectures — no crash, none twice — and the study holds each stopped one's rung values."""
    stopped: dict[str, int] = {}
    searcher, known, _, study = make(tmp_path, sampler=sampler, stopped=stopped.get)
    keys, rung_values = [], {}
    for i in range(24):
        trial_id = f"t{i}"
        config = searcher.suggest(trial_id)
        arch = ArchConfig.from_dict(config["arch"])
        assert config["stoppable"] is True  # a sampled architecture's first training
        keys.append(arch.key)
        values = [0.1 + 0.01 * (i % 7), macs_of(arch)]
        if i % 2:
            stopped[trial_id] = 1
            # Tune tells the searcher first (with the rung's result), then the table writer records the row.
            searcher.on_trial_complete(trial_id, {"status": "running", "epoch": 1, "val_acc": values[0],
                                                  "macs": values[1]})
            known.record({**ok_row(arch, values), "status": "stopped", "epochs": "1"})
            rung_values[arch.key] = values
        else:
            finish(searcher, known, trial_id, config, val_acc=values[0])
    assert len(set(keys)) == len(keys), "no architecture proposed twice"
    told = {SPACE.from_params(t.params).key: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert all(told[k] == pytest.approx(v) for k, v in rung_values.items())
    assert known.stopped == 12 and known.trained == 24 and known.failed == 0
    assert not set(rung_values) & set(known.front), "a stopped training is never on the front"


def test_a_stopped_training_tune_ends_without_its_result_is_told_its_row(tmp_path):
    """Tune's stop of a trial that is not running (pending a restart, say) reaches the searcher with no
    result: it is not told FAIL but, once the table writer has its row, its rung values."""
    stopped: dict[str, int] = {}
    searcher, known, _, study = make(tmp_path, stopped=stopped.get)
    arch = ArchConfig.from_dict(searcher.suggest("t0")["arch"])
    stopped["t0"] = 1
    searcher.on_trial_complete("t0", None)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    known.record({**ok_row(arch, [0.3, macs_of(arch)]), "status": "stopped", "epochs": "1"})
    searcher.suggest("t1")
    assert study.get_trials()[0].state == TrialState.COMPLETE
    assert study.get_trials()[0].values == pytest.approx([0.3, macs_of(arch)])


def test_reconcile_tells_a_stopped_training_the_study_holds_as_failed(tmp_path):
    """Whatever path left a stopped training FAIL in the study, the resume (and the end of every attempt)
    adds a COMPLETE trial with the rung values of its row; a second pass adds nothing."""
    searcher, known, _, study = make(tmp_path)
    arch = ArchConfig.from_dict(searcher.suggest("t0")["arch"])
    searcher.on_trial_complete("t0", None, error=True)
    known.record({**ok_row(arch, [0.3, macs_of(arch)]), **to_flat(arch), "status": "stopped", "epochs": "1"})
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert reconcile_study(url, known, SPACE) == 1
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.get_trials()[1].values == pytest.approx([0.3, macs_of(arch)])
    assert reconcile_study(url, known, SPACE) == 0

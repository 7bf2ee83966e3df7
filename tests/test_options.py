"""The options table of `search.run`: one row per flag drives the parser, the help, the checks and resume."""
from __future__ import annotations

import dataclasses

import pytest

from cli_kit import UserError
from search.options import (BY_NAME, FLAGS, MEASURE_SETTINGS, OVERRIDE_FLAGS, SEARCH_SETTINGS, Options,
                            build_parser, merge_stored, parse_args)


def test_every_flag_is_an_option_and_every_option_a_flag():
    held = {f.name for f in dataclasses.fields(Options)} - {"budget_overrides", "explicit"}
    assert held == set(BY_NAME) - set(OVERRIDE_FLAGS)
    assert set(SEARCH_SETTINGS) | set(MEASURE_SETTINGS) <= held


def test_help_states_each_plain_default_from_the_table():
    text = "".join(build_parser().format_help().split())  # argparse wraps lines, also at hyphens
    for f in FLAGS:
        assert f.flag in text
        if "{default" in f.help:
            assert "".join(f.help.format(default=f.default).replace("%%", "%").split()) in text, f.name


def test_defaults_come_from_the_table_and_nothing_counts_as_given():
    opts = parse_args(["--data-dir", "/tmp/d"])
    assert opts.explicit == {"data_dir"}
    assert (opts.trials, opts.baseline_seeds, opts.population_size, opts.reduction_factor) == (200, 3, 20, 3.0)
    assert opts.budget_overrides == {}


def test_given_flags_are_the_explicit_ones_and_overrides_go_to_the_budget():
    opts = parse_args(["--trials", "5", "--no-baselines", "--epochs", "2", "--lr", "0.05"])
    assert opts.explicit == {"trials", "baselines", "epochs", "lr"}
    assert (opts.trials, opts.baselines) == (5, False)
    assert opts.budget_overrides == {"epochs": 2, "lr": 0.05}


@pytest.mark.parametrize("argv", [["--tri", "5"], ["--resume", "--name", "r", "--tri", "5"]])
def test_an_abbreviated_flag_is_refused_not_guessed(argv):
    """With abbreviations on, `--tri 5` set trials but did not count as given on --resume."""
    with pytest.raises(UserError, match="unrecognized arguments: --tri 5"):
        parse_args(argv)


def test_options_are_immutable():
    opts = parse_args([])
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.trials = 3  # type: ignore[misc]


def test_resume_takes_the_stored_settings_and_refuses_a_changed_one():
    stored = {**parse_args(["--sampler", "tpe", "--seed", "7"]).search_settings(), "trials": 9, "data_dir": "/x"}
    resumed = merge_stored(parse_args(["--name", "r", "--resume"]), stored)
    assert (resumed.sampler, resumed.seed, resumed.trials, str(resumed.data_dir)) == ("tpe", 7, 9, "/x")
    same = merge_stored(parse_args(["--name", "r", "--resume", "--sampler", "tpe", "--trials", "12"]), stored)
    assert (same.sampler, same.trials) == ("tpe", 12)
    with pytest.raises(UserError, match="created with sampler='tpe'"):
        merge_stored(parse_args(["--name", "r", "--resume", "--sampler", "nsga2"]), stored)

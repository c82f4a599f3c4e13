"""A grid's runs (`condpt.experiment_plan`): which runs, their labels and policies, `--only` selection."""

from __future__ import annotations

import re

import pytest
from experiment_grids import robust_grid, small_grid

from condpt.experiment_plan import arm_runs, check_only, parse_only, policy_overrides, run_policy, selected


def test_runs_skip_coverage_for_mle_and_overrides_are_yaml():
    cfg = small_grid(coverages=[1.0, 0.9], seeds=[0, 1])
    runs = [(r.arm.name, r.coverage, r.seed) for r in arm_runs(cfg)]
    assert runs == [("mle", 1.0, 0), ("condition", 1.0, 0), ("condition", 0.9, 0),
                    ("mle", 1.0, 1), ("condition", 1.0, 1), ("condition", 0.9, 1)]
    assert policy_overrides({"mode": "condition", "coverage": 0.9, "selfref": {"n_generated": 5}}) == [
        "data.policy.mode=\"condition\"", "data.policy.coverage=0.9", 'data.policy.selfref={"n_generated": 5}']



def test_misses_dimension_runs_mle_once_per_seed_and_coverage_one_once():
    labels = [r.label for r in arm_runs(robust_grid())]
    assert labels[:8] == ["mle-cov1-s0", "route-cov1-s0", "route-cov0.9-s0", "route-cov0.9-score-s0",
                          "band-cov1-s0", "band-cov0.9-s0", "band-cov0.9-score-s0", "mle-cov1-s1"]
    assert len(labels) == len(set(labels)) == 3 + 2 * (1 + 2 * 3)  # mle per seed; 1.0 once; 0.9 × 2 × 3 seeds
    assert {r.misses for r in arm_runs(robust_grid()) if r.coverage == 1.0} == {"none"}
    run = next(r for r in arm_runs(robust_grid()) if r.label == "route-cov0.9-score-s2")
    assert run_policy(run, {}) == {"mode": "route", "coverage": 0.9, "seed": 2, "misses": "score"}
    random = next(r for r in arm_runs(robust_grid()) if r.label == "route-cov0.9-s2")
    assert "misses" not in run_policy(random, {})  # the default: the policy (and run name) runs had before


def test_only_selects_runs():
    only = parse_only("arm=route,arm=band,seed=1,misses=score")
    assert only == {"arm": {"route", "band"}, "seed": {"1"}, "misses": {"score"}}
    picked = [r.label for r in arm_runs(robust_grid()) if selected(r, only)]
    assert picked == ["route-cov0.9-score-s1", "band-cov0.9-score-s1"]
    assert [r.label for r in arm_runs(robust_grid()) if selected(r, parse_only("coverage=1.0,arm=route"))] == \
        ["route-cov1-s0"]
    for bad in ("arm", "colour=red", "seed="):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_only(bad)


@pytest.mark.parametrize("spec", ["", ",", " , "])
def test_only_that_names_nothing_is_refused(spec):
    """`--only ""` once ran the whole grid (hours) as if no --only had been given."""
    with pytest.raises(ValueError, match="names no run"):
        parse_only(spec)


@pytest.mark.parametrize("spec", ["coverage=x", "coverage=nan", "seed=1,coverage=0.9%"])
def test_only_coverage_must_be_a_number(spec):
    """A coverage that is not a number was a bare float() error naming neither --only nor the value."""
    with pytest.raises(ValueError, match=r"--only .*coverage"):
        parse_only(spec)


def test_only_values_that_match_no_run_are_named_with_a_suggestion():
    """Hostile probe: `--only arm=route,arm=bnad` ran route and silently dropped the typo; `seed=01` or
    `seed=x` matched nothing. Each value must match some run of the grid, else it is named with the
    grid's values and the nearest one."""
    plan = arm_runs(robust_grid())
    check_only(plan, parse_only("arm=route,arm=band,seed=1,coverage=0.90,misses=score"))
    for spec, why in (("arm=route,arm=bnad", "arm 'bnad' matches no run of the grid: did you mean 'band'?"),
                      ("seed=x", "seed 'x' matches no run"), ("seed=7", "seed '7' matches no run"),
                      ("coverage=0.5", "coverage '0.5' matches no run"), ("misses=scor", "did you mean 'score'")):
        with pytest.raises(ValueError, match=re.escape(why)):
            check_only(plan, parse_only(spec))


def test_only_accepts_the_coverages_a_grid_accepts():
    """A grid may list coverage 0 (no bad document seen); --only coverage=0 was refused as outside (0, 1]."""
    cfg = small_grid(coverages=[0.0, 1.0])
    only = parse_only("coverage=0")
    assert [r.label for r in arm_runs(cfg) if selected(r, only)] == ["condition-cov0-s0"]

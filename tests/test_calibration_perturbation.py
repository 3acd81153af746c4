"""Calibration of the perturbation statistics at small size (tests/calib_perturbation.py has the
logistic model; `python tests/calib_perturbation.py` prints every rate at the README's sizes):

* the set-rank and repeat-permutation tests reject a true null no more often than 0.05 (within 3
  Monte Carlo standard errors);
* the naive problem-level sign-flip test is NOT calibrated when head sets and noise draws have
  effects shared by all problems (the reason the package does not use it), and is when they have none;
* planted effects are detected;
* the two-stage bootstrap interval of the synergistic accuracy covers its truth at about the nominal
  rate when draws vary little (s_draw 0.2 logits), and under-covers with 3 repeats when they vary
  more (s_draw 0.5: measured 0.875 in 1000 simulations) -- 3 draws say little about the draw variance.
"""

import numpy as np
import pytest
from calib_perturbation import (
    bootstrap_coverage,
    expected_accuracy,
    repeat_permutation_rates,
    set_rank_rates,
    sigmoid,
)

N_NULL, N_PLANTED = 3000, 400


def _three_se_above(rate_row):
    return rate_row["nominal"] + 3 * rate_row["mc_se"]


@pytest.fixture(scope="module")
def set_rank_rows():
    rows = set_rank_rates(n_sims=N_NULL, n_planted=N_PLANTED, n_flips=499, seed=21)
    return {(r["test"], r["quantity"]): r for r in rows}


@pytest.fixture(scope="module")
def repeat_rows():
    rows = repeat_permutation_rates(n_sims=N_NULL, n_planted=N_PLANTED, seed=22)
    return {r["quantity"]: r for r in rows}


def test_set_rank_false_positive_rate_is_at_most_its_level(set_rank_rows):
    r = set_rank_rows[("set_rank", "false_positive_rate")]
    assert r["n_sims"] == N_NULL and r["s_set"] > 0 and r["s_draw"] > 0
    assert r["rate"] <= _three_se_above(r), r


def test_repeat_permutation_false_positive_rate_is_at_most_its_level(repeat_rows):
    r = repeat_rows["false_positive_rate"]
    assert r["n_repeats"] == 3 and r["rate"] <= _three_se_above(r), r


def test_naive_problem_level_test_is_not_calibrated_for_head_sets(set_rank_rows):
    # the counterexample: same null as the set-rank test, problems treated as independent units
    r = set_rank_rows[("naive_problem_sign_flip", "false_positive_rate")]
    assert r["rate"] > 0.10, r


def test_naive_test_is_fine_without_set_and_draw_effects():
    # checks the naive implementation itself: with nothing shared across problems it holds its level
    rows = set_rank_rates(n_sims=1000, n_planted=0, n_flips=499, seed=23, s_set=0.0, s_draw=0.0)
    r = rows[1]
    assert r["test"] == "naive_problem_sign_flip" and r["rate"] <= _three_se_above(r), r


def test_planted_effects_are_detected(set_rank_rows, repeat_rows):
    assert set_rank_rows[("set_rank", "power")]["planted"] == 1.5
    assert set_rank_rows[("set_rank", "power")]["rate"] > 0.8
    assert repeat_rows["power"]["rate"] > 0.8


def test_expected_accuracy_matches_monte_carlo():
    x = np.random.default_rng(0).normal(-0.5, 1.6, 400_000)
    assert expected_accuracy(-0.5, 1.6) == pytest.approx(sigmoid(x).mean(), abs=2e-3)


def test_bootstrap_coverage_of_the_synergistic_accuracy():
    # small draw effects: coverage consistent with the nominal 0.95 (measured 0.956 at 2000 simulations)
    r = bootstrap_coverage(n_sims=800, n_boot=300, seed=24)[0]
    print(f"\ncoverage s_draw 0.2, 3 repeats: {r['rate']:.3f} [{r['rate_ci_low']:.3f}, {r['rate_ci_high']:.3f}]")
    assert 0.92 <= r["rate"] <= 0.98, r


def test_bootstrap_under_covers_with_three_repeats_when_draws_vary():
    # a documented limitation, not a target: 3 resampled draws understate the draw variance by 1/3
    # and have few distinct means. If the interval is improved, raise the upper bound.
    r = bootstrap_coverage(n_sims=600, n_boot=300, seed=25, s_draw=0.5)[0]
    print(f"\ncoverage s_draw 0.5, 3 repeats: {r['rate']:.3f} [{r['rate_ci_low']:.3f}, {r['rate_ci_high']:.3f}]")
    assert 0.80 <= r["rate"] <= 0.93, r

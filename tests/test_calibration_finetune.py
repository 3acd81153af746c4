"""Calibration of the fine-tuning statistics at small size (tests/calib_finetune.py has the model;
`python tests/calib_finetune.py` prints every rate at 10,000 simulations):

* the exact permutation test over 5 against 5 runs rejects a true null no more often than 0.05
  (within 3 Monte Carlo standard errors) with normal, tied (1/500 grid), seed-correlated, skewed
  and best-of-10-checkpoints run accuracies; it is conservative with seed correlation;
* it is NOT exact when the regions' runs differ in spread only (its null is exchangeability, not
  equal means): a documented limitation, measured ~0.078 with a 4x sd ratio;
* a 2-sd difference is detected most of the time (measured two-sided 0.78, one-sided 0.89);
* the Welch interval and the interaction contrast cover at about their level.
"""

import pytest
from calib_finetune import best_of_checkpoints_bias, interaction_rates, two_sample_rates

N_NULL, N_POWER = 2000, 1000


def _three_se_above(row):
    return row["nominal"] + 3 * row["mc_se"]


def _three_se_below(row):
    return row["nominal"] - 3 * row["mc_se"]


def _by_quantity(rows):
    return {r["quantity"]: r for r in rows}


@pytest.mark.parametrize("scenario,seed", [("normal", 101), ("grid", 102), ("rho0.5", 103), ("skewed", 104),
                                           ("best_of_10", 105)])
def test_permutation_false_positive_rate_is_at_most_its_level(scenario, seed):
    rows = _by_quantity(two_sample_rates(scenario, N_NULL, seed=seed))
    for quantity in ("fpr_two_sided", "fpr_one_sided"):
        r = rows[quantity]
        assert r["n_sims"] == N_NULL and r["rate"] <= _three_se_above(r), r
    cover = rows["coverage"]
    assert cover["rate"] >= 0.95 - 3 * (0.95 * 0.05 / N_NULL) ** 0.5, cover


def test_seed_correlation_makes_the_unpaired_test_conservative():
    r = _by_quantity(two_sample_rates("rho0.5", N_NULL, seed=106))["fpr_two_sided"]
    assert r["rate"] < 0.03, r                       # measured 0.0135 at 10,000 simulations


def test_unequal_spread_alone_inflates_the_permutation_test():
    # a documented limitation, not a target: the null is "same distribution", so a region whose
    # runs only spread more is rejected too often (measured 0.078 at 10,000 simulations)
    r = _by_quantity(two_sample_rates("sd_x4", N_NULL, seed=107))["fpr_two_sided"]
    assert r["rate"] > 0.058, r


def test_power_for_a_two_sd_difference():
    rows = _by_quantity(two_sample_rates("normal", N_POWER, shift_sd=2.0, seed=108))
    assert rows["power_two_sided"]["rate"] > 0.7, rows["power_two_sided"]
    assert rows["power_one_sided"]["rate"] > 0.82, rows["power_one_sided"]
    assert rows["coverage"]["rate"] >= 0.93, rows["coverage"]


@pytest.mark.parametrize("scenario,seed", [("equal_sd", 111), ("sft_sd_x2", 112), ("skewed", 113)])
def test_interaction_false_positive_rate_and_coverage(scenario, seed):
    rows = _by_quantity(interaction_rates(scenario, N_NULL, seed=seed))
    assert rows["fpr_two_sided"]["rate"] <= _three_se_above(rows["fpr_two_sided"]), rows["fpr_two_sided"]
    cover = rows["coverage"]
    assert cover["rate"] >= 0.95 - 3 * (0.95 * 0.05 / N_NULL) ** 0.5, cover


def test_interaction_power_for_a_three_sd_contrast():
    r = _by_quantity(interaction_rates("equal_sd", N_POWER, contrast_sd=3.0, seed=114))["power_two_sided"]
    assert r["rate"] > 0.8, r                        # measured 0.87; 1.4 sd (the paper's RL g): 0.30


def test_best_checkpoint_is_optimistic():
    # E max of 10 standard normals = 1.539
    assert best_of_checkpoints_bias(20_000) == pytest.approx(1.539, abs=0.03)

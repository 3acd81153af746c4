"""Calibration of the ablation verdict at small size (tests/calib_ablation.py has the model and
larger sizes for the benchmark): under the null (the synergistic order is a random permutation)
the rank p-value and the ratio interval reject no more often than their nominal level, and a
planted effect (the order removes the most important heads first) is detected."""
import pytest
from calib_ablation import ablation_rates
from scipy import stats as sps

N_NULL, N_PLANTED = 300, 100


@pytest.fixture(scope="module", params=[False, True], ids=["pooled", "cross_validated"])
def rates(request):
    rows = ablation_rates(N_NULL, N_PLANTED, seed=11, n_boot=200, n_heads=24, n_prompts=12,
                          n_random=39, random_grid=6, cross_validate=request.param)
    return {r["test"]: r for r in rows}


@pytest.mark.parametrize("test", ["ablation_rank_p", "ablation_rank_p_less_redundant",
                                  "ablation_ratio_interval", "ablation_ratio_interval_above_1"])
def test_false_positive_rate_is_consistent_with_its_level(rates, test):
    r = rates[test]
    assert r["n_sims"] == N_NULL
    # exact binomial: a rate above alpha would make this many false positives unlikely
    assert sps.binomtest(r["false_positives"], N_NULL, r["alpha"], alternative="greater").pvalue > 0.01
    assert r["fpr_ci_low"] <= r["alpha"]


@pytest.mark.parametrize("test", ["ablation_rank_p", "ablation_rank_p_less_redundant",
                                  "ablation_ratio_interval"])
def test_planted_effect_is_detected(rates, test):
    assert rates[test]["power"] > 0.8


def test_rows_describe_themselves(rates):
    r = rates["ablation_rank_p"]
    assert r["null"] == "synergistic order = random permutation" and r["alpha"] == 0.05
    assert r["n_random"] == 39 and r["n_heads"] == 24 and r["n_prompts"] == 12
    assert 0 <= r["fpr_ci_low"] <= r["false_positive_rate"] <= r["fpr_ci_high"] <= 1

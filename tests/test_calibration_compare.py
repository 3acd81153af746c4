"""The paired model comparison is calibrated under its null and detects a planted difference."""
import pytest
from calib_compare import comparison_rates


@pytest.fixture(scope="module")
def rates():
    return {r["test"]: r for r in comparison_rates(n_sims=300, n_permutations=59)}


@pytest.mark.parametrize("score", ["mid_minus_outer", "quad_coef"])
def test_permutation_p_is_calibrated_and_powerful(rates, score):
    row = rates[f"difference_{score} (permutation p)"]
    assert row["fpr_ci_low"] <= 0.05, row         # consistent with <= 5%
    assert row["false_positive_rate"] <= 0.09, row
    assert row["power"] >= 0.8, row


@pytest.mark.parametrize("score", ["mid_minus_outer", "quad_coef"])
def test_interval_excludes_zero_no_more_often_than_alpha(rates, score):
    row = rates[f"difference_{score} (interval excludes 0)"]
    assert row["fpr_ci_low"] <= 0.05 and row["false_positive_rate"] <= 0.09, row
    assert row["power"] >= 0.8, row

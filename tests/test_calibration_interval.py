"""The summary's interval of the inverted-U scores excludes 0 no more often than 5% when depth does
not matter, and usually does under a planted inverted U."""
import pytest
from calib_profile import perm_interval_rates


@pytest.fixture(scope="module")
def rates():
    return {r["test"]: r for r in perm_interval_rates(n_sims=300, n_perm=99)}


@pytest.mark.parametrize("score", ["mid_minus_outer", "quad_coef"])
def test_layer_permutation_interval_is_calibrated(rates, score):
    row = rates[f"{score} interval (layer permutation) excludes 0"]
    assert row["fpr_ci_low"] <= 0.05 and row["false_positive_rate"] <= 0.09, row
    assert row["power"] >= 0.8, row

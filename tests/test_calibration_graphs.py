"""Calibration of graphs.graph_statistics at small size (tests/calib_graphs.py has the simulations).

Every p-value and interval of the entry point must reject a true null at most 5% of the time
(exact one-sided binomial test of "rate > 5%" not significant at 0.002, Bonferroni over the 32
rows at a family-wise 5%: the exact tests reject at about 5% and would otherwise fail some row
by chance whenever the random streams change), and the planted effect
(hub-integrated synergy vs modular redundancy network) must be detected. Sizes: 12 heads
(66 pairs), 8 prompts (8 folds of one prompt), n_boot = n_null = 19; 120 iid draws (pair-shuffle
and exchangeable nulls), 80 draws each of two exchangeable structured nulls (weak shared modules;
the same with per-prompt head effects), 20 planted draws. `python tests/calib_graphs.py --help`
runs the larger calibrations.
"""
import pytest
from calib_graphs import calibration_rows
from scipy.stats import binomtest

ALPHA = 0.05
SIZES = dict(n_heads=12, n_prompts=8, n_boot=19, n_null=19, alpha=ALPHA, seed=0)


@pytest.fixture(scope="module")
def rows():
    out = calibration_rows(n_sims=120, n_power_sims=20, nulls=("iid",), **SIZES)
    out += calibration_rows(n_sims=80, n_power_sims=0, nulls=("shared_weak", "shared_headnoise"), **SIZES)
    return out


def test_every_test_is_calibrated(rows):
    tests = {r["test"] for r in rows}
    # 8 pair-shuffle p-values, 4 difference p-values (fold test) and 4 difference intervals
    assert len(tests) == 16
    assert sum(r["test"].endswith("_p_null") for r in rows) == 8     # only under iid
    assert len(rows) == 8 + 3 * 8
    for r in rows:
        k, n = r["n_rejected"], r["n_sims"]
        pv = binomtest(k, n, ALPHA, alternative="greater").pvalue
        assert pv > 0.002, f"{r['test']} under {r['null']}: {k}/{n} false positives"
        assert r["fpr_ci_low"] <= r["false_positive_rate"] <= r["fpr_ci_high"]
        assert r["n_undefined"] == 0


def test_planted_effect_detected(rows):
    power = {r["test"]: r["power"] for r in rows if r["null"] == "iid"}
    for variant in ("thresholded", "weighted"):
        for metric in ("global_efficiency", "modularity"):
            # fold test: 8 folds of one prompt each, smallest p 2 / 256
            assert power[f"synergy_minus_redundancy_{variant}_{metric}_p"] >= 0.7
            assert power[f"synergy_minus_redundancy_{variant}_{metric}_ci_excludes_0"] >= 0.9
        # the hub network is more integrated than a random arrangement of its values
        assert power[f"synergy_{variant}_global_efficiency_p_null"] >= 0.9

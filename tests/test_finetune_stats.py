"""Unit tests of synergy_core.finetune_stats: best/final checkpoint per run, group summaries,
hand-computed and scipy-checked p-values, floors, Hedges' g, Welch intervals, the RL-vs-SFT
contrast, validation, and NaN (with a counted reason) where undefined."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from synergy_core.finetune_stats import (
    COMPARISONS,
    GROUP_COLUMNS,
    INTERACTION_COLUMNS,
    NOTE_FEW,
    NOTE_NO_SPREAD,
    RUN_COLUMNS,
    TEST_COLUMNS,
    TEST_EXACT,
    TEST_MONTE_CARLO,
    finetune_statistics,
    hedges_g,
    permutation_p,
    welch_contrast,
    welch_interval,
)


def checkpoints(run_accuracies: dict, steps=(100, 200, 300), base: float | None = 0.3, n_problems=500):
    """{(method, region): [[accuracy per step] per seed]} -> the per-checkpoint table, base first."""
    rows = [] if base is None else [dict(method="base", region="none", seed=0, step=0, accuracy=base,
                                         n_problems=n_problems)]
    for (method, region), seeds in run_accuracies.items():
        for seed, accs in enumerate(seeds):
            rows += [dict(method=method, region=region, seed=seed, step=s, accuracy=a, n_problems=n_problems)
                     for s, a in zip(steps, accs)]
    return pd.DataFrame(rows)


def design(finals: dict, steps=(100, 200, 300)) -> pd.DataFrame:
    """{(method, region): [final accuracy per seed]}; earlier steps lower by 0.01 per step back
    (so best == final for best_from_step <= the last step)."""
    n = len(steps)
    return checkpoints({k: [[v - 0.01 * (n - 1 - i) for i in range(n)] for v in values]
                        for k, values in finals.items()}, steps)


SYN, RED, RND = [0.42, 0.43, 0.44, 0.45, 0.46], [0.30, 0.31, 0.33, 0.32, 0.30], [0.40, 0.41, 0.39, 0.42, 0.38]
FULL = {("grpo", "synergistic"): SYN, ("grpo", "redundant"): RED, ("grpo", "random"): RND,
        ("sft", "synergistic"): [0.40, 0.41, 0.42, 0.39, 0.40], ("sft", "redundant"): [0.41, 0.40, 0.39, 0.40, 0.42],
        ("sft", "random"): [0.40, 0.40, 0.41, 0.39, 0.41]}


# ------------------------------------------------------------------------------ runs: best and final

def test_best_and_final_checkpoint_with_ties_and_best_from_step():
    acc = checkpoints({("grpo", "synergistic"): [[0.50, 0.40, 0.45, 0.45, 0.42],     # tie at 300/400: earliest
                                                 [0.10, 0.20, 0.30, 0.40, 0.35]],
                       ("grpo", "random"): [[0.9, 0.3, 0.2, 0.1, 0.2], [0.2, 0.2, 0.2, 0.2, 0.2]]},
                      steps=(100, 200, 300, 400, 500))
    runs = finetune_statistics(acc, best_from_step=200)["runs"]
    assert list(runs.columns) == RUN_COLUMNS
    assert list(zip(runs.method, runs.region, runs.seed)) == [
        ("base", "none", 0), ("grpo", "synergistic", 0), ("grpo", "synergistic", 1), ("grpo", "random", 0),
        ("grpo", "random", 1)]
    r = runs.set_index(["method", "region", "seed"])
    # step 100 (0.50 and 0.9) is before best_from_step and not eligible
    assert r.loc[("grpo", "synergistic", 0), ["best_step", "best_accuracy"]].tolist() == [300, pytest.approx(0.45)]
    assert r.loc[("grpo", "synergistic", 1), ["best_step", "best_accuracy"]].tolist() == [400, pytest.approx(0.40)]
    assert r.loc[("grpo", "random", 0), ["best_step", "best_accuracy"]].tolist() == [200, pytest.approx(0.3)]
    assert r.loc[("grpo", "random", 1), "best_step"] == 200                     # all equal: the earliest
    assert r.final_step.tolist() == [0, 500, 500, 500, 500]
    assert r.final_accuracy.tolist() == pytest.approx([0.3, 0.42, 0.35, 0.2, 0.2])
    assert r.n_steps.tolist() == [1, 5, 5, 5, 5] and r.n_missing.tolist() == [0] * 5
    # with best_from_step 0 the early peaks are eligible
    runs0 = finetune_statistics(acc, best_from_step=0)["runs"].set_index(["method", "region", "seed"])
    assert runs0.loc[("grpo", "synergistic", 0), "best_step"] == 100
    assert runs0.loc[("grpo", "random", 0), "best_accuracy"] == pytest.approx(0.9)


def test_row_order_of_the_input_does_not_matter():
    acc = design(FULL)
    a = finetune_statistics(acc, best_from_step=100)
    b = finetune_statistics(acc.sample(frac=1.0, random_state=4).reset_index(drop=True), best_from_step=100)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])


def test_nan_accuracies_are_skipped_for_best_and_counted(caplog):
    acc = checkpoints({("grpo", "synergistic"): [[0.4, np.nan, 0.3], [0.4, 0.5, np.nan]],
                       ("grpo", "random"): [[0.3, 0.3, 0.3], [0.2, 0.25, 0.3]]})
    with caplog.at_level("WARNING"):
        out = finetune_statistics(acc, best_from_step=100)
    r = out["runs"].set_index(["method", "region", "seed"])
    assert r.loc[("grpo", "synergistic", 0), ["best_step", "best_accuracy", "n_missing"]].tolist() == [
        100, pytest.approx(0.4), 1]
    assert r.loc[("grpo", "synergistic", 1), "best_accuracy"] == pytest.approx(0.5)
    assert math.isnan(r.loc[("grpo", "synergistic", 1), "final_accuracy"])
    assert "2 of 13 checkpoint accuracies are NaN" in caplog.text
    g = out["groups"].set_index(["method", "region", "selection"])
    assert g.loc[("grpo", "synergistic", "final"), ["n_runs", "n_missing"]].tolist() == [1, 1]
    assert g.loc[("grpo", "synergistic", "best"), ["n_runs", "n_missing"]].tolist() == [2, 0]
    t = out["tests"].set_index(["selection", "comparison"]).loc[("final", "synergistic_vs_random")]
    assert t.n_a == 1 and t.n_b == 2 and math.isnan(t.hedges_g) and t.g_note == NOTE_FEW


def test_a_run_without_an_eligible_step_is_refused_by_name():
    acc = checkpoints({("grpo", "synergistic"): [[0.4, 0.5]], ("sft", "random"): [[0.3, 0.2]]}, steps=(100, 200))
    finetune_statistics(acc, best_from_step=200)
    with pytest.raises(ValueError, match=r"run grpo/synergistic/seed0: no evaluated step >= best_from_step 300"):
        finetune_statistics(acc, best_from_step=300)
    nan_only = checkpoints({("sft", "random"): [[0.3, np.nan]]}, steps=(100, 200))
    with pytest.raises(ValueError, match=r"run sft/random/seed0: every step >= best_from_step 200 has a NaN"):
        finetune_statistics(nan_only, best_from_step=200)


def test_base_model_is_reported_but_never_compared():
    out = finetune_statistics(design(FULL), best_from_step=100)
    runs, groups, tests = out["runs"], out["groups"], out["tests"]
    assert runs.iloc[0][["method", "region", "best_accuracy", "final_accuracy"]].tolist() == [
        "base", "none", pytest.approx(0.3), pytest.approx(0.3)]
    base = groups[groups.method == "base"]
    assert base.selection.tolist() == ["best", "final"] and base.n_runs.tolist() == [1, 1]
    assert base["mean"].tolist() == pytest.approx([0.3, 0.3]) and base.sd.isna().all() and base.ci_lo.isna().all()
    assert "base" not in set(tests.method)
    assert len(tests) == 2 * 2 * 3


# ------------------------------------------------------------------------------ groups

def test_groups_by_hand():
    groups = finetune_statistics(design(FULL), best_from_step=100)["groups"]
    assert list(groups.columns) == GROUP_COLUMNS
    g = groups.set_index(["method", "region", "selection"]).loc[("grpo", "synergistic", "final")]
    x = np.array(SYN)
    half = sps.t.ppf(0.975, 4) * x.std(ddof=1) / math.sqrt(5)
    assert g.n_runs == 5 and g.n_missing == 0
    assert [g["mean"], g.sd, g["median"], g["min"], g["max"]] == pytest.approx(
        [x.mean(), x.std(ddof=1), 0.44, 0.42, 0.46])
    assert [g.ci_lo, g.ci_hi] == pytest.approx([x.mean() - half, x.mean() + half])
    lo, hi = sps.t.interval(0.95, 4, loc=x.mean(), scale=sps.sem(x))
    assert [g.ci_lo, g.ci_hi] == pytest.approx([lo, hi])
    # best == final in this design (accuracy rises with the step)
    best = groups.set_index(["method", "region", "selection"]).loc[("grpo", "synergistic", "best")]
    assert best["mean"] == pytest.approx(g["mean"])


# ------------------------------------------------------------------------------ permutation test

def brute_force_p(a, b):
    values = np.r_[a, b]
    n, n_a = len(values), len(a)
    observed = np.mean(a) - np.mean(b)
    stats = []
    for first in itertools.combinations(range(n), n_a):
        mask = np.zeros(n, bool)
        mask[list(first)] = True
        stats.append(values[mask].mean() - values[~mask].mean())
    stats = np.array(stats)
    return np.mean(np.abs(stats) >= abs(observed) - 1e-12), np.mean(stats >= observed - 1e-12)


def rational_p(a, b):
    """Exact two- and one-sided p of integer data (counts of correct answers): Fractions, no rounding."""
    values = [int(v) for v in np.r_[a, b]]
    n, n_a = len(values), len(a)

    def diff(first):
        rest = [values[i] for i in range(n) if i not in first]
        return Fraction(sum(values[i] for i in first), n_a) - Fraction(sum(rest), n - n_a)

    observed = diff(tuple(range(n_a)))
    stats = [diff(first) for first in itertools.combinations(range(n), n_a)]
    return (sum(abs(s) >= abs(observed) for s in stats) / len(stats),
            sum(s >= observed for s in stats) / len(stats))


@pytest.mark.parametrize("n_a,n_b,grid", [(5, 5, None), (4, 6, None), (3, 5, 500), (5, 5, 500), (2, 3, None)])
def test_permutation_p_against_scipy_and_brute_force(n_a, n_b, grid):
    rng = np.random.default_rng(n_a * 10 + n_b)
    a, b = rng.normal(0.42, 0.01, n_a), rng.normal(0.41, 0.01, n_b)
    if grid:                                                  # accuracies on a 1/500 grid: ties happen
        a, b = np.round(a * grid) / grid, np.round(b * grid) / grid
    r = permutation_p(a, b)
    assert r.exact and r.n_relabellings == math.comb(n_a + n_b, n_a)
    two, one = brute_force_p(a, b)
    assert r.p == pytest.approx(two, abs=1e-12) and r.p_one_sided == pytest.approx(one, abs=1e-12)
    if grid:
        # ties: exact rational arithmetic on the counts of correct answers is the reference. scipy's
        # tie tolerance (relative, ~1e-14) misses ties that float rounding split (seen with 5 vs 5).
        two, one = rational_p(np.round(a * grid).astype(int), np.round(b * grid).astype(int))
        assert r.p == pytest.approx(two, abs=1e-12) and r.p_one_sided == pytest.approx(one, abs=1e-12)
        return

    def stat(x, y, axis):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    greater = sps.permutation_test((a, b), stat, permutation_type="independent", alternative="greater",
                                   n_resamples=np.inf, vectorized=True)
    assert r.p_one_sided == pytest.approx(greater.pvalue, abs=1e-12)
    if n_a == n_b:   # symmetric null: scipy's two-sided 2 min(one-sided) equals P(|T| >= |t|)
        both = sps.permutation_test((a, b), stat, permutation_type="independent", alternative="two-sided",
                                    n_resamples=np.inf, vectorized=True)
        assert r.p == pytest.approx(both.pvalue, abs=1e-12)


def test_floor_for_five_against_five_is_two_in_252():
    r = permutation_p([0.50, 0.51, 0.52, 0.53, 0.54], [0.30, 0.31, 0.32, 0.33, 0.34])
    assert r.p_floor == pytest.approx(2 / 252) and r.p == pytest.approx(2 / 252)
    assert r.p_one_sided_floor == pytest.approx(1 / 252) and r.p_one_sided == pytest.approx(1 / 252)
    assert r.exact and r.n_relabellings == 252
    # the other direction: two-sided unchanged, one-sided (H1 a > b) at its maximum
    flipped = permutation_p([0.30, 0.31, 0.32, 0.33, 0.34], [0.50, 0.51, 0.52, 0.53, 0.54])
    assert flipped.p == pytest.approx(2 / 252) and flipped.p_one_sided == pytest.approx(1.0)
    # unequal sides: no mirror image, floor 1 / C
    assert permutation_p([0.9, 0.8], [0.1, 0.2, 0.3]).p_floor == pytest.approx(1 / 10)
    # a paired sign-flip test on 5 pairs could not go below 2/32 > 0.05; the exact unpaired test can
    assert 2 / 32 > 0.05 > r.p_floor


def test_ties_count_against_rejection():
    r = permutation_p([0.4] * 5, [0.4] * 5)
    assert r.p == 1.0 and r.p_one_sided == 1.0
    # the difference equal to a relabelling's up to rounding is still a tie
    a, b = np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1])
    assert permutation_p(a + 1e-15, b).p == pytest.approx(1.0)


def test_monte_carlo_beyond_the_exact_limit():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.0, 1.0, 6), rng.normal(0.5, 1.0, 6)
    exact = permutation_p(a, b)
    mc = permutation_p(a, b, exact_limit=100, n_monte_carlo=20_000, seed=3)
    assert not mc.exact and mc.n_relabellings == 20_000
    assert mc.p_floor == pytest.approx(1 / 20_001) and mc.p_one_sided_floor == pytest.approx(1 / 20_001)
    assert mc.p == pytest.approx(exact.p, abs=0.015) and mc.p_one_sided == pytest.approx(exact.p_one_sided, abs=0.015)
    assert permutation_p(a, b, exact_limit=100, n_monte_carlo=20_000, seed=3) == mc       # seeded
    separated = permutation_p(np.linspace(1, 2, 11), np.linspace(-2, -1, 11))             # C(22, 11) > 100000
    assert not separated.exact and separated.p == pytest.approx(1 / 100_000)
    assert separated.n_relabellings == 99_999


def test_permutation_p_undefined_is_nan():
    for a, b in (([], [0.1, 0.2]), ([0.1, np.nan], [0.2, 0.3])):
        r = permutation_p(a, b)
        assert math.isnan(r.p) and math.isnan(r.p_floor) and r.n_relabellings == 0


# ------------------------------------------------------------------------------ effect size and intervals

def test_hedges_g_by_hand():
    a, b = np.array([0.42, 0.45, 0.44, 0.47]), np.array([0.40, 0.41, 0.39, 0.43, 0.40])
    pooled = math.sqrt((3 * np.var(a, ddof=1) + 4 * np.var(b, ddof=1)) / 7)
    j = 1 - 3 / (4 * 9 - 9)
    assert hedges_g(a, b).g == pytest.approx(j * (a.mean() - b.mean()) / pooled, rel=1e-12)
    assert hedges_g(a, b).note == ""
    t = sps.ttest_ind(a, b, equal_var=True).statistic
    assert hedges_g(a, b).g == pytest.approx(j * t * math.sqrt(1 / 4 + 1 / 5))
    assert hedges_g(b, a).g == pytest.approx(-hedges_g(a, b).g)


def test_hedges_g_undefined_with_a_reason():
    assert hedges_g([0.4], [0.3, 0.2]).note == NOTE_FEW and math.isnan(hedges_g([0.4], [0.3, 0.2]).g)
    zero = hedges_g([0.3] * 5, [0.3 + 1e-17] * 5)
    assert math.isnan(zero.g) and zero.note == NOTE_NO_SPREAD
    assert math.isnan(hedges_g([0.1 * 3] * 5, [0.3] * 5).g)           # 0.30000000000000004: still no spread


@pytest.mark.parametrize("ci", [0.95, 0.9])
def test_welch_interval_against_scipy(ci):
    a, b = np.array([0.42, 0.45, 0.44, 0.47, 0.43]), np.array([0.40, 0.41, 0.33, 0.43, 0.40, 0.36])
    r = welch_interval(a, b, ci)
    ref = sps.ttest_ind(a, b, equal_var=False)
    lo, hi = ref.confidence_interval(confidence_level=ci)
    assert [r.lo, r.hi] == pytest.approx([lo, hi], rel=1e-10)
    assert r.df == pytest.approx(ref.df) and r.p == pytest.approx(ref.pvalue) and r.note == ""
    assert r.estimate == pytest.approx(a.mean() - b.mean())


def test_welch_undefined_without_spread_or_runs():
    r = welch_interval([0.3] * 4, [0.2] * 4)
    assert r.estimate == pytest.approx(0.1) and math.isnan(r.lo) and math.isnan(r.p) and r.note == NOTE_NO_SPREAD
    r = welch_interval([0.3], [0.2, 0.25])
    assert math.isnan(r.lo) and r.note == NOTE_FEW
    # one side without spread is fine: df = n_b - 1
    r = welch_interval([0.3] * 4, [0.2, 0.25, 0.22])
    assert r.df == pytest.approx(2.0) and np.isfinite(r.lo)
    with pytest.raises(ValueError, match="ci"):
        welch_interval([0.1, 0.2], [0.3, 0.4], 95)


def test_welch_contrast_of_four_groups_by_hand():
    rng = np.random.default_rng(2)
    groups = [rng.normal(m, s, n) for m, s, n in ((0.45, 0.01, 5), (0.40, 0.02, 5), (0.41, 0.005, 4),
                                                   (0.40, 0.01, 6))]
    r = welch_contrast([(groups[0], 1), (groups[1], -1), (groups[2], -1), (groups[3], 1)], 0.95)
    v = [np.var(x, ddof=1) / len(x) for x in groups]
    se = math.sqrt(sum(v))
    df = sum(v) ** 2 / sum(vi**2 / (len(x) - 1) for vi, x in zip(v, groups))
    est = groups[0].mean() - groups[1].mean() - groups[2].mean() + groups[3].mean()
    q = sps.t.ppf(0.975, df)
    assert [r.estimate, r.se, r.df, r.lo, r.hi] == pytest.approx([est, se, df, est - q * se, est + q * se])
    assert r.p == pytest.approx(2 * sps.t.sf(abs(est) / se, df))


# ------------------------------------------------------------------------------ the tables

def test_tests_table_numbers_and_dtypes():
    tests = finetune_statistics(design(FULL), best_from_step=100)["tests"]
    assert list(tests.columns) == TEST_COLUMNS
    assert list(zip(tests.method, tests.selection, tests.comparison)) == [
        (m, s, c) for m in ("grpo", "sft") for s in ("best", "final") for c in COMPARISONS]
    for column in ("mean_a", "mean_b", "diff", "diff_lo", "diff_hi", "hedges_g", "p", "p_one_sided", "p_floor",
                   "p_one_sided_floor"):
        assert tests[column].dtype == np.float64, column
    for column in ("n_a", "n_b", "n_relabellings"):
        assert tests[column].dtype == np.int64, column
    t = tests.set_index(["method", "selection", "comparison"])
    row = t.loc[("grpo", "final", "synergistic_vs_redundant")]
    assert row.test == TEST_EXACT and row.n_a == 5 and row.n_b == 5 and row.n_relabellings == 252
    assert row["diff"] == pytest.approx(np.mean(SYN) - np.mean(RED))
    assert row.p == pytest.approx(2 / 252) and row.p_floor == pytest.approx(2 / 252)
    assert row.p_one_sided == pytest.approx(1 / 252)
    assert row.hedges_g == pytest.approx(hedges_g(SYN, RED).g)
    lo, hi = sps.ttest_ind(SYN, RED, equal_var=False).confidence_interval(0.95)
    assert [row.diff_lo, row.diff_hi] == pytest.approx([lo, hi])
    assert row.mean_a == pytest.approx(np.mean(SYN)) and row.mean_b == pytest.approx(np.mean(RED))
    red_rnd = t.loc[("grpo", "final", "redundant_vs_random")]
    assert red_rnd["diff"] < 0 and red_rnd.p_one_sided > 0.9                 # H1 is "first higher"
    assert TEST_MONTE_CARLO != TEST_EXACT


def test_missing_region_skips_its_comparisons_and_interaction_needs_both_methods():
    only = {k: v for k, v in FULL.items() if k != ("grpo", "redundant")}
    out = finetune_statistics(design(only), best_from_step=100)
    grpo = out["tests"][out["tests"].method == "grpo"]
    assert set(grpo.comparison) == {"synergistic_vs_random"}
    assert set(out["interaction"].comparison) == {"synergistic_vs_random"}
    no_sft = finetune_statistics(design({k: v for k, v in FULL.items() if k[0] == "grpo"}), best_from_step=100)
    assert list(no_sft["interaction"].columns) == INTERACTION_COLUMNS and no_sft["interaction"].empty


def test_interaction_by_hand():
    inter = finetune_statistics(design(FULL), best_from_step=100)["interaction"]
    assert list(inter.columns) == INTERACTION_COLUMNS
    assert list(zip(inter.selection, inter.comparison)) == [(s, c) for s in ("best", "final") for c in COMPARISONS]
    row = inter.set_index(["selection", "comparison"]).loc[("final", "synergistic_vs_random")]
    g_syn, g_rnd = np.array(SYN), np.array(RND)
    s_syn, s_rnd = np.array(FULL["sft", "synergistic"]), np.array(FULL["sft", "random"])
    assert row.diff_grpo == pytest.approx(g_syn.mean() - g_rnd.mean())
    assert row.diff_sft == pytest.approx(s_syn.mean() - s_rnd.mean())
    assert row.contrast == pytest.approx(row.diff_grpo - row.diff_sft)
    ref = welch_contrast([(g_syn, 1), (g_rnd, -1), (s_syn, -1), (s_rnd, 1)])
    assert [row.se, row.df, row.lo, row.hi, row.p] == pytest.approx([ref.se, ref.df, ref.lo, ref.hi, ref.p])
    assert row.note == "" and 0 < row.p < 0.05
    for column in ("diff_grpo", "diff_sft", "contrast", "se", "df", "lo", "hi", "p"):
        assert inter[column].dtype == np.float64, column


def test_zero_spread_gives_nan_with_counted_reasons(caplog):
    flat = {("grpo", "synergistic"): [0.4] * 5, ("grpo", "random"): [0.3] * 5,
            ("sft", "synergistic"): [0.4] * 5, ("sft", "random"): [0.4] * 5}
    with caplog.at_level("WARNING"):
        out = finetune_statistics(design(flat), best_from_step=100)
    tests = out["tests"]
    assert len(tests) == 4 and tests.hedges_g.isna().all() and (tests.g_note == NOTE_NO_SPREAD).all()
    assert tests.diff_lo.isna().all() and tests.diff_hi.isna().all()
    # the permutation p is still defined: complete separation, or nothing at all
    grpo = tests[tests.method == "grpo"]
    assert grpo.p.tolist() == pytest.approx([2 / 252] * 2) and (tests[tests.method == "sft"].p == 1.0).all()
    assert tests["diff"].notna().all() and (tests[tests.method == "grpo"]["diff"] > 0).all()
    assert out["interaction"].p.isna().all() and (out["interaction"].note == NOTE_NO_SPREAD).all()
    assert f"4 of 4 Hedges' g are undefined (NaN): {NOTE_NO_SPREAD} x4" in caplog.text
    assert "4 of 4 Welch intervals are undefined" in caplog.text
    assert "2 of 2 interaction contrasts" in caplog.text


# ------------------------------------------------------------------------------ validation

def test_validation_refuses_broken_tables():
    good = design(FULL)
    with pytest.raises(ValueError, match="lacks column"):
        finetune_statistics(good.drop(columns="n_problems"), best_from_step=100)
    with pytest.raises(ValueError, match="empty"):
        finetune_statistics(good.iloc[:0], best_from_step=100)
    with pytest.raises(ValueError, match="unknown region"):
        finetune_statistics(good.assign(region=good.region.replace("random", "shuffled")), best_from_step=100)
    with pytest.raises(ValueError, match=r"checkpoint grpo/synergistic/seed0 step 100 appears 2 times"):
        finetune_statistics(pd.concat([good, good.iloc[[1]]], ignore_index=True), best_from_step=100)
    with pytest.raises(ValueError, match=r"'accuracy' must be a number in \[0, 1\]"):
        finetune_statistics(good.assign(accuracy=good.accuracy.where(good.index != 3, 42.0)), best_from_step=100)
    with pytest.raises(ValueError, match="'step' must hold integers"):
        finetune_statistics(good.assign(step=good.step.astype(float).where(good.index != 3, 1.5)),
                            best_from_step=100)
    with pytest.raises(ValueError, match="ci must be"):
        finetune_statistics(good, best_from_step=100, ci=1.5)


def test_accuracy_read_as_text_with_empty_cells():
    good = design(FULL)
    text = good.assign(accuracy=good.accuracy.map(repr).where(good.index != 3, ""))
    out = finetune_statistics(text, best_from_step=100)
    assert out["runs"].n_missing.sum() == 1
    with pytest.raises(ValueError, match="'accuracy' must be a number"):
        finetune_statistics(good.assign(accuracy=good.accuracy.map(repr).where(good.index != 3, "oops")),
                            best_from_step=100)

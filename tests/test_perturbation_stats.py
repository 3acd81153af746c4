"""Unit tests of synergy_core.perturbation_stats: hand-computed accuracies and p-values, floors,
effect sizes, validation, NaN where undefined, and the two-stage bootstrap."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from synergy_core.perturbation_stats import (
    ACCURACY_COLUMNS,
    ALTERNATIVES,
    SETS_COLUMNS,
    TESTS_COLUMNS,
    accuracy_cube,
    glass_delta,
    hedges_g,
    perturbation_statistics,
    repeat_permutation_p,
    set_rank_p,
    two_stage_bootstrap,
)
from synergy_core.resample import percentile_ci


def long_table(units) -> pd.DataFrame:
    """units: [(condition, set, alpha, repeat, correct per problem)] -> the merged long table."""
    frames = []
    for condition, set_, alpha, repeat, correct in units:
        n = len(correct)
        frames.append(pd.DataFrame(dict(problem_id=[f"q{i:03d}" for i in range(n)], condition=condition, set=set_,
                                        alpha=float(alpha), repeat=repeat, correct=np.asarray(correct, dtype=int),
                                        answer="42", n_tokens=7)))
    return pd.concat(frames, ignore_index=True)


def units_from_accuracies(syn, red, random_sets, n_problems=20, alpha=1.0, baseline=1.0):
    """A table whose unit accuracies are given (rounded to 1 / n_problems): ``syn``/``red`` [R]
    repeat accuracies, ``random_sets`` [S][R]."""
    def row(acc):
        k = int(round(acc * n_problems))
        return [1] * k + [0] * (n_problems - k)

    units = [("baseline", 0, 0.0, 0, row(baseline))]
    units += [("synergistic", 0, alpha, r, row(a)) for r, a in enumerate(syn)]
    units += [("redundant", 0, alpha, r, row(a)) for r, a in enumerate(red)]
    units += [("random", s, alpha, r, row(a)) for s, accs in enumerate(random_sets) for r, a in enumerate(accs)]
    return units


SMALL = [
    ("baseline", 0, 0.0, 0, [1, 1, 1, 0]),
    ("synergistic", 0, 1.0, 0, [1, 0, 0, 0]),
    ("synergistic", 0, 1.0, 1, [1, 1, 0, 0]),
    ("redundant", 0, 1.0, 0, [1, 1, 1, 0]),
    ("redundant", 0, 1.0, 1, [1, 1, 1, 1]),
    ("random", 0, 1.0, 0, [1, 1, 0, 0]),
    ("random", 0, 1.0, 1, [1, 1, 1, 0]),
    ("random", 1, 1.0, 0, [0, 1, 0, 0]),
    ("random", 1, 1.0, 1, [1, 0, 0, 0]),
]


# ------------------------------------------------------------------------------ accuracies

def test_hand_computed_accuracies_sets_and_order():
    long = long_table(SMALL).sample(frac=1.0, random_state=3)          # row order must not matter
    accuracy, sets, tests = perturbation_statistics(long, n_boot=200, seed=1)
    assert list(accuracy.columns) == ACCURACY_COLUMNS and list(sets.columns) == SETS_COLUMNS
    assert list(tests.columns) == TESTS_COLUMNS
    assert list(accuracy.condition) == ["baseline", "synergistic", "redundant", "random"]
    acc = accuracy.set_index("condition")
    assert acc.accuracy.to_dict() == pytest.approx(dict(baseline=0.75, synergistic=0.375, redundant=0.875,
                                                        random=(0.5 + 0.75 + 0.25 + 0.25) / 4))
    assert acc.loc["baseline", "alpha"] == 0.0 and acc.loc["random", "alpha"] == 1.0
    assert acc.n_problems.tolist() == [4] * 4
    assert acc.n_sets.tolist() == [1, 1, 1, 2] and acc.n_repeats.tolist() == [1, 2, 2, 2]
    assert math.isnan(acc.loc["baseline", "unit_sd"])
    assert acc.loc["synergistic", "unit_sd"] == pytest.approx(np.std([0.25, 0.5], ddof=1))
    assert acc.loc["random", "unit_sd"] == pytest.approx(np.std([0.5, 0.75, 0.25, 0.25], ddof=1))
    random_sets = sets[sets.condition == "random"].set_index("set").accuracy
    assert random_sets.to_dict() == pytest.approx({0: 0.625, 1: 0.25})
    t = tests.set_index("comparison")
    assert t.loc["synergistic_vs_random", "diff"] == pytest.approx(0.375 - 0.4375)
    assert t.loc["synergistic_vs_redundant", "diff"] == pytest.approx(0.375 - 0.875)
    assert t.loc["redundant_vs_random", "diff"] == pytest.approx(0.875 - 0.4375)
    # synergistic (0.375) lies between the random sets (0.25, 0.625): one of 2 is at least as low
    assert t.loc["synergistic_vs_random", "p"] == pytest.approx(2 / 3)
    assert t.loc["redundant_vs_random", "p"] == pytest.approx(1 / 3)
    assert t.loc["synergistic_vs_redundant", "p"] == pytest.approx(1 / 6)   # complete separation, C(4, 2) = 6
    assert t.loc["synergistic_vs_redundant", "p_floor"] == pytest.approx(1 / 6)


def test_output_is_numeric_and_deterministic():
    long = long_table(SMALL)
    a1, s1, t1 = perturbation_statistics(long, n_boot=100, seed=5)
    a2, s2, t2 = perturbation_statistics(long, n_boot=100, seed=5)
    pd.testing.assert_frame_equal(a1, a2)
    pd.testing.assert_frame_equal(t1, t2)
    for column in ("diff", "diff_ci_low", "diff_ci_high", "effect_size", "p", "p_floor", "alpha"):
        assert t1[column].dtype == np.float64
    assert t1.n_a.dtype == np.int64 and t1.n_b.dtype == np.int64
    assert t1.set_index("comparison").alternative.to_dict() == {
        "synergistic_vs_random": "synergistic < random", "synergistic_vs_redundant": "synergistic < redundant",
        "redundant_vs_random": "redundant > random"}
    assert t1.set_index("comparison").effect_size_kind.to_dict() == {
        "synergistic_vs_random": "glass_delta", "synergistic_vs_redundant": "hedges_g",
        "redundant_vs_random": "glass_delta"}


def test_alternatives_follow_the_paper():
    assert {k: (c.a, c.b, c.direction) for k, c in ALTERNATIVES.items()} == {
        "synergistic_vs_random": ("synergistic", "random", "less"),
        "synergistic_vs_redundant": ("synergistic", "redundant", "less"),
        "redundant_vs_random": ("redundant", "random", "greater")}


def test_rows_ordered_baseline_first_then_alpha_then_condition():
    units = []
    for alpha in (2.0, 0.5):
        units += [(c, s, alpha, r, [1, 0, 1]) for c, n_sets in (("random", 2), ("redundant", 1), ("synergistic", 1))
                  for s in range(n_sets) for r in range(2)]
    units.append(("baseline", 0, 0.0, 0, [1, 1, 1]))
    accuracy, sets, tests = perturbation_statistics(long_table(units), n_boot=50)
    assert list(zip(accuracy.condition, accuracy.alpha)) == [
        ("baseline", 0.0), ("synergistic", 0.5), ("redundant", 0.5), ("random", 0.5),
        ("synergistic", 2.0), ("redundant", 2.0), ("random", 2.0)]
    assert list(zip(tests.alpha, tests.comparison)) == [(a, c) for a in (0.5, 2.0) for c in ALTERNATIVES]
    assert len(sets) == 1 + 2 * (1 + 1 + 2)


# ------------------------------------------------------------------------------ set rank

def test_synergistic_worst_of_19_random_sets_gives_the_floor():
    rng = np.random.default_rng(0)
    random_sets = [[0.5 + 0.05 * rng.integers(0, 6)] * 3 for _ in range(19)]
    long = long_table(units_from_accuracies([0.2, 0.25, 0.2], [0.6, 0.6, 0.65], random_sets))
    tests = perturbation_statistics(long, n_boot=100)[2].set_index("comparison")
    syn = tests.loc["synergistic_vs_random"]
    assert syn.p == pytest.approx(1 / 20) and syn.p_floor == pytest.approx(1 / 20)
    assert syn.n_a == 1 and syn.n_b == 19 and syn.test == "set_rank"


def test_set_rank_p_by_hand():
    random_sets = np.arange(19) / 100 + 0.3                    # 0.30 ... 0.48
    assert set_rank_p(0.1, random_sets).p == pytest.approx(1 / 20)
    assert set_rank_p(0.395, random_sets).p == pytest.approx((1 + 10) / 20)    # 10 random sets below
    assert set_rank_p(0.9, random_sets).p == pytest.approx(1.0)
    assert set_rank_p(0.9, random_sets, "greater").p == pytest.approx(1 / 20)
    assert set_rank_p(0.1, random_sets, "greater").p == pytest.approx(1.0)
    assert set_rank_p(0.1, random_sets).p_floor == pytest.approx(1 / 20)
    assert set_rank_p(0.5, np.arange(99) / 99).p_floor == pytest.approx(1 / 100)


def test_set_rank_ties_count_against_the_core():
    random_sets = np.r_[0.25, 0.25, np.linspace(0.4, 0.6, 17)]
    assert set_rank_p(0.25, random_sets).p == pytest.approx(3 / 20)
    # an accuracy that differs from a tie only by rounding is still a tie
    assert set_rank_p(0.25 + 1e-13, random_sets).p == pytest.approx(3 / 20)
    assert set_rank_p(0.25 - 1e-13, random_sets).p == pytest.approx(3 / 20)
    assert set_rank_p(0.6, random_sets, "greater").p == pytest.approx(2 / 20)
    # all equal: no evidence at all
    assert set_rank_p(0.5, np.full(19, 0.5)).p == 1.0


def test_set_rank_without_random_sets_is_nan():
    r = set_rank_p(0.3, [])
    assert math.isnan(r.p) and math.isnan(r.p_floor)
    with pytest.raises(ValueError, match="direction"):
        set_rank_p(0.3, [0.5], "two-sided")


def test_no_random_sets_gives_nan_not_zero():
    long = long_table(units_from_accuracies([0.2, 0.3], [0.6, 0.7], []))
    accuracy, _, tests = perturbation_statistics(long, n_boot=50)
    assert "random" not in set(accuracy.condition)
    t = tests.set_index("comparison")
    for name in ("synergistic_vs_random", "redundant_vs_random"):
        row = t.loc[name]
        undefined = ["p", "p_floor", "diff", "diff_ci_low", "diff_ci_high", "effect_size"]
        assert np.isnan(row[undefined].to_numpy(float)).all()
        assert row.n_a == 0 and row.n_b == 0
    assert t.loc["synergistic_vs_redundant", "p"] == pytest.approx(1 / 6)


# ------------------------------------------------------------------------------ repeat permutation

def test_repeat_permutation_complete_separation_with_three_repeats():
    r = repeat_permutation_p([0.1, 0.2, 0.15], [0.5, 0.45, 0.6])
    assert r.p == pytest.approx(1 / 20) and r.p_floor == pytest.approx(1 / 20) and r.exact and r.n_null == 20
    assert repeat_permutation_p([0.1, 0.2, 0.15], [0.5, 0.45, 0.6], "greater").p == pytest.approx(1.0)
    assert repeat_permutation_p([0.5, 0.45, 0.6], [0.1, 0.2, 0.15], "greater").p == pytest.approx(1 / 20)


def test_repeat_permutation_by_brute_force():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 10, 4) / 10, rng.integers(0, 10, 5) / 10     # integer-ish: ties happen
    values = np.r_[a, b]
    observed = a.mean() - b.mean()
    stats = []
    for first in __import__("itertools").combinations(range(9), 4):
        rest = [i for i in range(9) if i not in first]
        stats.append(values[list(first)].mean() - values[rest].mean())
    expected = np.mean(np.array(stats) <= observed + 1e-9)
    r = repeat_permutation_p(a, b)
    assert r.p == pytest.approx(expected) and r.p_floor == pytest.approx(1 / math.comb(9, 4))


def test_repeat_permutation_monte_carlo_beyond_the_exact_limit():
    a = np.linspace(0.1, 0.2, 11)
    b = np.linspace(0.5, 0.6, 11)                        # C(22, 11) = 705432 splits: sampled
    r = repeat_permutation_p(a, b, seed=3)
    assert not r.exact and r.p == pytest.approx(1 / 20001) and r.p_floor == pytest.approx(1 / 20001)
    small_limit = repeat_permutation_p([0.1, 0.3, 0.2, 0.4], [0.2, 0.5, 0.35, 0.3], max_exact=10, n_mc=4000, seed=1)
    exact = repeat_permutation_p([0.1, 0.3, 0.2, 0.4], [0.2, 0.5, 0.35, 0.3])
    assert not small_limit.exact and small_limit.p == pytest.approx(exact.p, abs=0.03)


def test_one_repeat_gives_nan_effect_size_and_a_large_floor():
    long = long_table(units_from_accuracies([0.2], [0.6], [[0.4], [0.5], [0.45]]))
    t = perturbation_statistics(long, n_boot=50)[2].set_index("comparison").loc["synergistic_vs_redundant"]
    assert math.isnan(t.effect_size) and t.p == pytest.approx(0.5) and t.p_floor == pytest.approx(0.5)
    assert t.n_a == 1 and t.n_b == 1


# ------------------------------------------------------------------------------ effect sizes

def test_hedges_g_by_hand_and_against_scipy():
    a, b = np.array([0.2, 0.25, 0.3]), np.array([0.5, 0.4, 0.6, 0.55])
    pooled = math.sqrt((2 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1)) / 5)
    by_hand = (1 - 3 / (4 * 7 - 9)) * (a.mean() - b.mean()) / pooled
    assert hedges_g(a, b) == pytest.approx(by_hand)
    # Cohen's d = t sqrt(1/n_a + 1/n_b) for the equal-variance t statistic
    t = sps.ttest_ind(a, b, equal_var=True).statistic
    assert hedges_g(a, b) == pytest.approx((1 - 3 / 19) * t * math.sqrt(1 / 3 + 1 / 4))
    assert math.isnan(hedges_g([0.2], [0.3, 0.4])) and math.isnan(hedges_g([0.2, 0.2], [0.3, 0.3]))


def test_glass_delta_by_hand():
    random_sets = np.array([0.4, 0.5, 0.6])
    assert glass_delta(0.2, random_sets) == pytest.approx((0.2 - 0.5) / 0.1)
    assert math.isnan(glass_delta(0.2, [0.5])) and math.isnan(glass_delta(0.2, [0.5, 0.5, 0.5]))
    assert math.isnan(glass_delta(0.2, []))


def test_undefined_effect_sizes_are_nan_and_logged(caplog):
    long = long_table(units_from_accuracies([0.2, 0.2], [0.6, 0.6], [[0.4, 0.4], [0.4, 0.4]]))
    with caplog.at_level("WARNING"):
        tests = perturbation_statistics(long, n_boot=50)[2]
    assert tests.effect_size.isna().all()
    assert "3 of 3 effect sizes are undefined" in caplog.text


# ------------------------------------------------------------------------------ validation

def test_validation_refuses_broken_tables():
    good = long_table(SMALL)
    accuracy_cube(good)
    with pytest.raises(ValueError, match=r"unit random/set1/alpha1/repeat0 answered 3 of the 4 problems"):
        accuracy_cube(good.drop(index=good.index[(good.condition == "random") & (good.set == 1)
                                                 & (good.repeat == 0)][:1]))
    with pytest.raises(ValueError, match="duplicate rows"):
        accuracy_cube(pd.concat([good, good.iloc[[3]]], ignore_index=True))
    with pytest.raises(ValueError, match="'correct' must be 0 or 1; found 2"):
        accuracy_cube(good.assign(correct=good.correct.where(good.index != 5, 2)))
    with pytest.raises(ValueError, match="unknown condition"):
        accuracy_cube(good.assign(condition=good.condition.replace("random", "shuffled")))
    with pytest.raises(ValueError, match="lacks column"):
        accuracy_cube(good.drop(columns="correct"))
    with pytest.raises(ValueError, match="sets have different numbers of repeats"):
        accuracy_cube(good[~((good.condition == "random") & (good.set == 1) & (good.repeat == 1))])
    with pytest.raises(ValueError, match="conditions have different numbers of repeats"):
        accuracy_cube(good[~((good.condition == "synergistic") & (good.repeat == 1))])
    with pytest.raises(ValueError, match="one fixed set"):
        accuracy_cube(good.assign(set=good.set.where(~((good.condition == "redundant") & (good.repeat == 1)), 1)))
    with pytest.raises(ValueError, match="baseline units must have alpha 0"):
        accuracy_cube(good.assign(alpha=good.alpha.where(good.condition != "baseline", 0.5)))
    with pytest.raises(ValueError, match="empty"):
        accuracy_cube(good.iloc[:0])


def test_cube_arrays():
    cube = accuracy_cube(long_table(SMALL))
    assert cube.correct.shape == (9, 4) and list(cube.problem_ids) == ["q000", "q001", "q002", "q003"]
    group = cube.groups[("random", 1.0)]
    assert group.sets.tolist() == [0, 1] and group.units.shape == (2, 2)
    assert cube.correct[group.units[1, 0]].tolist() == [0, 1, 0, 0]


# ------------------------------------------------------------------------------ bootstrap

def _logistic_table(rng, n_problems, n_random_sets=9, n_repeats=3, problem_sd=1.5, s_set=0.3, s_draw=0.2,
                    planted=0.5):
    logits = rng.normal(0.0, problem_sd, n_problems)
    units = [("baseline", 0, 0.0, 0, rng.random(n_problems) < 1 / (1 + np.exp(-logits)))]
    for condition, n_sets, shift in (("synergistic", 1, planted), ("redundant", 1, 0.0),
                                     ("random", n_random_sets, 0.0)):
        for s in range(n_sets):
            effect = shift + rng.normal(0, s_set)
            for r in range(n_repeats):
                p = 1 / (1 + np.exp(-(logits - effect - rng.normal(0, s_draw))))
                units.append((condition, s, 1.0, r, rng.random(n_problems) < p))
    return long_table(units)


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_more_problems():
    widths = {}
    for n_problems in (50, 800):
        accuracy = perturbation_statistics(_logistic_table(np.random.default_rng(7), n_problems), n_boot=400)[0]
        assert (accuracy.ci_low <= accuracy.accuracy).all() and (accuracy.accuracy <= accuracy.ci_high).all()
        widths[n_problems] = (accuracy.ci_high - accuracy.ci_low).to_numpy()
    assert (widths[800] < widths[50]).all()


def test_two_stage_bootstrap_resamples_sets_of_a_multi_set_condition():
    # problems all alike, sets differ: the whole spread comes from resampling sets
    correct = np.repeat(np.array([[1.0], [1.0], [0.0], [0.0]]), 10, axis=1)    # 2 sets x 2 repeats, 10 problems
    boot = two_stage_bootstrap(correct, {"random": np.array([[0, 1], [2, 3]]), "one": np.array([[0, 1]])},
                               n_boot=400, rng=np.random.default_rng(0))
    assert set(np.unique(boot["random"])) == {0.0, 0.5, 1.0}
    assert np.all(boot["one"] == 1.0)


def test_paired_difference_interval_is_narrower_than_unpaired():
    # problem difficulty dominates: a problem either side gets right is right on both
    rng = np.random.default_rng(3)
    table = _logistic_table(rng, 300, problem_sd=4.0, s_set=0.05, s_draw=0.05, planted=0.5)
    cube = accuracy_cube(table)
    groups = {k: g.units for k, g in cube.groups.items()}
    paired = two_stage_bootstrap(cube.correct, groups, 1000, np.random.default_rng(1))
    key_s, key_r = ("synergistic", 1.0), ("random", 1.0)
    unpaired_s = two_stage_bootstrap(cube.correct, {key_s: groups[key_s]}, 1000, np.random.default_rng(2))[key_s]
    unpaired_r = two_stage_bootstrap(cube.correct, {key_r: groups[key_r]}, 1000, np.random.default_rng(3))[key_r]

    def width(x):
        ci = percentile_ci(x, 0.95)
        return ci["ci_high"] - ci["ci_low"]

    assert width(paired[key_s] - paired[key_r]) < 0.6 * width(unpaired_s - unpaired_r)
    tests = perturbation_statistics(table, n_boot=1000, seed=1)[2].set_index("comparison")
    row = tests.loc["synergistic_vs_random"]
    assert row.diff_ci_high - row.diff_ci_low == pytest.approx(width(paired[key_s] - paired[key_r]), rel=0.25)


def test_bootstrap_is_fast_at_the_papers_size():
    import time

    rng = np.random.default_rng(0)
    n_problems, n_units = 500, 130
    correct = (rng.random((n_units, n_problems)) < 0.4).astype(float)
    groups = {"random": np.arange(120).reshape(40, 3), "syn": np.arange(120, 123)[None],
              "red": np.arange(123, 126)[None]}
    start = time.perf_counter()
    two_stage_bootstrap(correct, groups, 1000, rng)
    assert time.perf_counter() - start < 2.0

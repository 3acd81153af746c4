"""Ranking on synthetic per-head values with known answers, ties and NaN included."""
import numpy as np
import pandas as pd
import pytest

from synergy_core.ranking import (
    layer_profile,
    per_head_means,
    rank_difference,
    rank_heads,
    synergy_redundancy_correlation,
)


def test_per_head_means_skip_diagonal_and_nan():
    m = np.array([[9.0, 1.0, 3.0], [1.0, 9.0, np.nan], [3.0, np.nan, 9.0]])
    mean, nan = per_head_means(m)
    np.testing.assert_allclose(mean, [2.0, 1.0, 3.0])
    np.testing.assert_array_equal(nan, [0, 1, 1])


def test_rank_difference_known_answer_with_ties():
    syn = np.array([1.0, 2.0, 2.0, 4.0])   # ranks 1, 2.5, 2.5, 4
    red = np.array([4.0, 3.0, 1.0, 2.0])   # ranks 4, 3, 1, 2
    r = rank_difference(syn, red)
    np.testing.assert_allclose(r["synergy_rank"], [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(r["rank_diff"], [-3, -0.5, 1.5, 2])
    np.testing.assert_allclose(r["syn_red"], [0, 2.5 / 5, 4.5 / 5, 1])


def test_nan_heads_are_unranked_not_zero():
    syn = np.array([1.0, np.nan, 3.0, 2.0])
    red = np.array([3.0, 1.0, 1.0, 2.0])
    r = rank_difference(syn, red)
    assert np.isnan(r["syn_red"][1]) and np.isnan(r["synergy_rank"][1])
    np.testing.assert_allclose(r["synergy_rank"][[0, 2, 3]], [1, 3, 2])
    np.testing.assert_allclose(r["redundancy_rank"][[0, 2, 3]], [3, 1, 2])
    np.testing.assert_allclose(r["syn_red"][[0, 2, 3]], [0, 1, 0.5])


def test_constant_difference_cannot_be_normalised():
    r = rank_difference(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert np.all(np.isnan(r["syn_red"]))


def test_rank_heads_table_and_profile_on_planted_core():
    n_layers, n_heads = 5, 3
    h = n_layers * n_heads
    layer = np.repeat(np.arange(n_layers), n_heads)
    syn_head = np.where(layer == 2, 3.0, 1.0) + 0.01 * np.arange(h)   # middle layer synergistic
    red_head = np.where(layer == 2, 1.0, 3.0) + 0.01 * np.arange(h)[::-1]
    sts = (syn_head[:, None] + syn_head[None, :]) / 2
    rtr = (red_head[:, None] + red_head[None, :]) / 2
    table = rank_heads(sts, rtr, n_layers, n_heads)
    assert list(table.head_label[:4]) == ["L0H0", "L0H1", "L0H2", "L1H0"]
    np.testing.assert_allclose(table.depth[table.layer == 4], 1.0)
    assert table.loc[table.syn_red.idxmax(), "layer"] == 2
    prof = layer_profile(table)
    assert prof.syn_red_mean.idxmax() == 2
    assert prof.syn_red_mean[2] > prof.syn_red_mean[[0, 1, 3, 4]].max()
    np.testing.assert_array_equal(prof.n_heads, [3] * 5)


def test_correlation_diagnostic():
    t = pd.DataFrame({"synergy": [1, 2, 3, 4.0], "redundancy": [2, 4, 6, 8.5]})
    c = synergy_redundancy_correlation(t)
    assert c["spearman"] == pytest.approx(1.0) and c["pearson"] > 0.99
    assert np.isnan(synergy_redundancy_correlation(t.iloc[:2])["spearman"])

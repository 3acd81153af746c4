"""Graph metrics of the top-fraction head graph on matrices with known answers."""
import warnings

import networkx as nx
import numpy as np
import pytest

from synergy_core import graphs as G
from synergy_core.phiid.chunks import pair_matrix, upper_triangle_pairs
from synergy_core.resample import label_swap_means


def sym_random(n, seed=0, nan_frac=0.0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    m = (m + m.T) / 2
    if nan_frac:
        bad = np.triu(rng.random((n, n)) < nan_frac, 1)
        m[bad | bad.T] = np.nan
    np.fill_diagonal(m, np.nan)
    return m


def two_cliques(size=5, n_cliques=2):
    block = np.repeat(np.arange(n_cliques), size)
    m = (block[:, None] == block[None, :]).astype(float)
    np.fill_diagonal(m, np.nan)
    return m


def test_complete_graph_efficiency_one():
    m = np.ones((7, 7))
    g = G.top_edges_graph(m, fraction=1.0)
    assert g.number_of_edges() == 21 and g.number_of_nodes() == 7
    r = G.graph_metrics(m, fraction=1.0)
    assert r["global_efficiency"] == pytest.approx(1.0)
    assert r["n_edges"] == 21


@pytest.mark.parametrize("fraction,seed", [(0.1, 0), (0.2, 1), (0.35, 2), (0.05, 3)])
def test_efficiency_matches_networkx(fraction, seed):
    m = sym_random(15, seed, nan_frac=0.1)
    g = G.top_edges_graph(m, fraction)
    want = nx.global_efficiency(g)
    got = G.graph_metrics(m, fraction, seed=0)["global_efficiency"]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert G.global_efficiency(g.number_of_nodes(), np.array(g.edges)) == pytest.approx(want, rel=1e-12)


def test_efficiency_known_small_graph():
    # path 0-1-2 plus isolated node 3: distances 1, 1, 2 -> (2 * (1 + 1 + 1/2)) / (4 * 3)
    assert G.global_efficiency(4, np.array([[0, 1], [1, 2]])) == pytest.approx(5 / 12)
    assert G.global_efficiency(4, np.empty((0, 2), int)) == 0.0
    assert G.global_efficiency(1, np.empty((0, 2), int)) == 0.0


def test_two_disconnected_cliques_modularity_half():
    m = two_cliques(5)
    r = G.graph_metrics(m, fraction=20 / 45)
    assert r["n_edges"] == 20
    assert r["modularity"] == pytest.approx(0.5)
    assert r["n_communities"] == 2
    # two cliques of 5: each node reaches 4 others at distance 1 -> 4 / 9
    assert r["global_efficiency"] == pytest.approx(4 / 9)


def test_edge_count_rule_and_nan():
    m = sym_random(20, seed=4, nan_frac=0.2)
    n_finite = int(np.isfinite(m[np.triu_indices(20, 1)]).sum())
    for fraction in (0.0, 0.01, 0.1, 0.25, 0.5, 1.0):
        g = G.top_edges_graph(m, fraction)
        assert g.number_of_edges() == int(np.floor(fraction * n_finite + 0.5))
        assert g.number_of_nodes() == 20
        vals = [d["value"] for *_, d in g.edges(data=True)]
        assert np.all(np.isfinite(vals))
        if 0 < fraction < 1:                # every kept value >= every dropped finite value
            kept = {tuple(sorted(e)) for e in g.edges}
            dropped = [m[i, j] for i, j in zip(*np.triu_indices(20, 1))
                       if (i, j) not in kept and np.isfinite(m[i, j])]
            assert min(vals) >= max(dropped)
    assert G.n_top_edges(0.5, 5) == 3      # half up, not banker's rounding
    assert G.n_top_edges(0.1, 45) == 5     # 4.5 -> 5


def test_ties_broken_by_pair_order():
    m = np.full((5, 5), 2.0)
    m[3, 4] = m[4, 3] = 3.0                 # strictly largest
    e = G.top_edge_pairs(m, fraction=0.3)   # 3 of 10 pairs
    np.testing.assert_array_equal(e, [[3, 4], [0, 1], [0, 2]])


def test_graph_metrics_deterministic_with_seed():
    m = sym_random(30, seed=5)
    a = G.graph_metrics(m, 0.15, seed=3)
    b = G.graph_metrics(m, 0.15, seed=3)
    assert a == b
    assert -0.5 <= a["modularity"] <= 1 and 1 <= a["n_communities"] <= 30
    empty = G.graph_metrics(m, 0.0)
    assert empty["n_edges"] == 0 and np.isnan(empty["modularity"]) and empty["global_efficiency"] == 0


def test_bootstrap_graph_metrics_planted_modules():
    rng = np.random.default_rng(6)
    n_heads, n_prompts = 16, 20
    pairs = upper_triangle_pairs(n_heads)
    block = np.repeat([0, 1], 8)
    within = (block[pairs[:, 0]] == block[pairs[:, 1]]).astype(float)
    per_prompt = within[:, None] + 0.5 * rng.normal(size=(len(pairs), n_prompts))
    per_prompt[rng.random(per_prompt.shape) < 0.05] = np.nan
    fraction = 56 / 120                     # the 2 x 28 within-module pairs
    res = G.bootstrap_graph_metrics(per_prompt, pairs, n_heads, fraction, n_boot=50, seed=0)
    t = res["summary"].set_index("metric")
    assert list(t.index) == ["global_efficiency", "modularity", "n_communities"]
    assert t.loc["modularity", "estimate"] == pytest.approx(0.5)
    assert t.loc["modularity", "ci_low"] > 0.4
    assert t.loc["n_communities", "estimate"] == 2
    assert res["samples"]["modularity"].shape == (50,)
    # the estimate equals graph_metrics of the NaN-ignoring prompt-mean matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(per_prompt, axis=1)
    direct = G.graph_metrics(pair_matrix(mean, pairs, n_heads), fraction, seed=0)
    assert t.loc["global_efficiency", "estimate"] == pytest.approx(direct["global_efficiency"])
    again = G.bootstrap_graph_metrics(per_prompt, pairs, n_heads, fraction, n_boot=50, seed=0)
    np.testing.assert_array_equal(res["samples"]["global_efficiency"],
                                  again["samples"]["global_efficiency"])


# ---- weighted variant -------------------------------------------------------------------------

def nx_weighted_efficiency(n, pairs, w):
    """Reference: networkx Dijkstra with edge length 1 / w."""
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from((int(a), int(b), {"length": 1 / x}) for (a, b), x in zip(pairs, w) if x > 0)
    tot = sum(1 / d for u, dist in nx.all_pairs_dijkstra_path_length(g, weight="length")
              for v, d in dist.items() if u != v)
    return tot / (n * (n - 1))


def test_edge_weights_clip_nan_and_scale():
    v = np.array([2.0, -1.0, np.nan, 4.0, 0.0])
    w = G.edge_weights(v)
    # finite values clipped: 2, 0, 4, 0 -> mean 1.5
    np.testing.assert_allclose(w, [2 / 1.5, 0, 0, 4 / 1.5, 0])
    np.testing.assert_allclose(G.edge_weights(7.5 * v), w)
    np.testing.assert_array_equal(G.edge_weights([-1.0, np.nan]), [0.0, 0.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_efficiency_matches_networkx(seed):
    n = 11
    pairs = upper_triangle_pairs(n)
    rng = np.random.default_rng(seed)
    w = rng.exponential(size=len(pairs))
    w[rng.random(len(pairs)) < 0.3] = 0.0                  # some non-edges
    got = G.weighted_global_efficiency(n, pairs, w)
    assert got == pytest.approx(nx_weighted_efficiency(n, pairs, w), rel=1e-12)
    # the dense (Floyd-Warshall) path agrees with the sparse (Dijkstra) one
    assert G.weighted_global_efficiency(n, pairs, w + 1) == pytest.approx(
        nx_weighted_efficiency(n, pairs, w + 1), rel=1e-12)


def test_weighted_efficiency_known_values():
    n = 6
    pairs = upper_triangle_pairs(n)
    assert G.weighted_global_efficiency(n, pairs, np.ones(len(pairs))) == pytest.approx(1.0)
    # a strong hub: leaves reach each other via the hub (length 2 / 10) instead of directly (1)
    w = np.where((pairs == 0).any(axis=1), 10.0, 1.0)
    eff = G.weighted_global_efficiency(n, pairs, w)
    hub_pairs, leaf_pairs = 5, 10
    assert eff == pytest.approx((2 * hub_pairs * 10 + 2 * leaf_pairs * 5) / (n * (n - 1)))
    assert G.weighted_global_efficiency(n, pairs, np.zeros(len(pairs))) == 0.0
    with pytest.raises(ValueError):
        G.weighted_global_efficiency(n, pairs, -np.ones(len(pairs)))


def test_weighted_metrics_two_weak_linked_cliques():
    m = two_cliques(5) + 0.01                # within 1.01, between 0.01
    np.fill_diagonal(m, np.nan)
    r = G.weighted_graph_metrics(m)
    assert r["n_communities"] == 2 and r["n_edges"] == 45
    i, j = np.triu_indices(10, 1)
    pairs = np.stack([i, j], axis=1)
    w = G.edge_weights(m[i, j])
    g = G.weighted_graph(10, pairs, w)
    want_q = nx.community.modularity(g, [set(range(5)), set(range(5, 10))], weight="weight")
    assert r["modularity"] == pytest.approx(want_q, rel=1e-12)
    # within weight 20 x 1.01, between 25 x 0.01, two equal halves: Q = 20.2 / 20.45 - 1 / 2
    assert r["modularity"] == pytest.approx(20.2 / 20.45 - 0.5)
    assert r["global_efficiency"] == pytest.approx(nx_weighted_efficiency(10, pairs, w), rel=1e-12)
    # scale invariance, and a clipped negative / NaN pair is no edge
    assert G.weighted_graph_metrics(3 * m) == pytest.approx(r)
    m2 = m.copy()
    m2[0, 9] = m2[9, 0] = -5.0
    m2[1, 8] = m2[8, 1] = np.nan
    assert G.weighted_graph_metrics(m2)["n_edges"] == 43


@pytest.mark.parametrize("weighted", [False, True])
def test_vectorised_modularity_matches_networkx(weighted):
    rng = np.random.default_rng(7)
    n = 20
    pairs = upper_triangle_pairs(n)
    keep = rng.random(len(pairs)) < 0.4
    e = pairs[keep]
    w = rng.exponential(size=len(e)) if weighted else np.ones(len(e))
    g = G.weighted_graph(n, e, w)
    labels = rng.integers(0, 4, n)
    comms = [set(np.flatnonzero(labels == c).tolist()) for c in range(4)]
    comms = [c for c in comms if c]
    want = nx.community.modularity(g, comms, weight="weight")
    assert G._modularity(n, e, w, comms) == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_pair_graph_metrics_equals_matrix_versions():
    m = sym_random(14, seed=8, nan_frac=0.1)
    i, j = np.triu_indices(14, 1)
    pairs = np.stack([i, j], axis=1)
    assert G.pair_graph_metrics(m[i, j], pairs, 14, "thresholded", 0.2, seed=1) == G.graph_metrics(m, 0.2, 1)
    assert G.pair_graph_metrics(m[i, j], pairs, 14, "weighted", seed=1) == G.weighted_graph_metrics(m, 1)
    with pytest.raises(ValueError):
        G.pair_graph_metrics(m[i, j], pairs, 14, "binary")


# ---- null bands, label swaps --------------------------------------------------------------------

def test_null_band_p_value():
    null = np.arange(1.0, 20.0)                       # 1..19, median with obs
    r = G.null_band(100.0, null)
    assert r["p_value"] == pytest.approx(1 / 20) and r["n"] == 19
    assert r["null_median"] == 10.0
    assert r["null_low"] == pytest.approx(np.percentile(null, 2.5))
    # observed at the centre: every draw is at least as extreme
    assert G.null_band(10.0, null)["p_value"] == 1.0
    # centre 0, symmetric null; ties count as extreme
    r0 = G.null_band(2.0, [-3.0, -2.0, -1.0, 1.0, 2.0, np.nan], center=0.0)
    assert r0["p_value"] == pytest.approx((1 + 3) / (1 + 5)) and r0["n"] == 5
    assert np.isnan(G.null_band(np.nan, null)["p_value"])
    assert np.isnan(G.null_band(1.0, [])["p_value"])


def test_null_band_uniform_under_exchangeability():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4000, 20))
    p = np.array([G.null_band(row[0], row[1:])["p_value"] for row in x])
    for a in (0.05, 0.1, 0.25, 0.5):            # P(p <= a) = floor(a * 20) / 20 exactly
        assert abs(np.mean(p <= a) - np.floor(a * 20 + 1e-9) / 20) < 0.02


def test_label_swap_means():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    a[0, 1] = np.nan
    none = np.zeros((5, 1), bool)
    every = np.ones((5, 1), bool)
    ma, mb = label_swap_means(a, b, np.concatenate([none, every], axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(ma[:, 0], np.nanmean(a, axis=1))
        np.testing.assert_allclose(ma[:, 1], np.nanmean(b, axis=1))
        np.testing.assert_allclose(mb[:, 1], np.nanmean(a, axis=1))
    one = np.zeros((5, 1), bool)
    one[2] = True
    ma, mb = label_swap_means(a, b, one)
    mixed = a.copy()
    mixed[:, 2] = b[:, 2]
    np.testing.assert_allclose(ma[:, 0], np.nanmean(mixed, axis=1))


# ---- graph_statistics ---------------------------------------------------------------------------

def planted(n_heads=16, n_prompts=12, seed=11, scale_r=1.0):
    """Hub-integrated sts, modular rtr (4 blocks), noise, 3% NaN."""
    rng = np.random.default_rng(seed)
    pairs = upper_triangle_pairs(n_heads)
    i, j = pairs.T
    hub = (i == 0) | (j == 0)
    block = np.arange(n_heads) * 4 // n_heads
    within = block[i] == block[j]
    sts = (1 + 2 * hub)[:, None] + rng.normal(size=(len(pairs), n_prompts))
    rtr = scale_r * ((1 + 2 * within)[:, None] + rng.normal(size=(len(pairs), n_prompts)))
    bad = rng.random(sts.shape) < 0.03
    sts[bad] = np.nan
    rtr[bad] = np.nan
    return sts, rtr, pairs


def test_graph_statistics_table_and_estimates():
    sts, rtr, pairs = planted()
    t = G.graph_statistics(sts, rtr, pairs, 16, fraction=0.1, n_boot=30, n_null=30, seed=3)
    assert list(t.columns) == list(G.STAT_COLUMNS)
    assert len(t) == 12
    assert list(t.variant) == ["thresholded"] * 6 + ["weighted"] * 6
    assert list(t.network[:6]) == ["synergy"] * 2 + ["redundancy"] * 2 + ["synergy_minus_redundancy"] * 2
    assert list(t.metric[:2]) == ["global_efficiency", "modularity"]
    numeric = t.drop(columns=["network", "variant", "metric"])
    assert all(np.issubdtype(d, np.number) for d in numeric.dtypes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ms, mr = np.nanmean(sts, axis=1), np.nanmean(rtr, axis=1)
    key = t.set_index(["network", "variant", "metric"])
    for variant in G.VARIANTS:
        want_s = G.pair_graph_metrics(ms, pairs, 16, variant, 0.1, seed=3)
        want_r = G.pair_graph_metrics(mr, pairs, 16, variant, 0.1, seed=3)
        for metric in G.GRAPH_METRICS:
            assert key.loc[("synergy", variant, metric), "estimate"] == pytest.approx(want_s[metric])
            assert key.loc[("redundancy", variant, metric), "estimate"] == pytest.approx(want_r[metric])
            d = key.loc[("synergy_minus_redundancy", variant, metric)]
            assert d.estimate == pytest.approx(want_s[metric] - want_r[metric])
    net = t[t.network != "synergy_minus_redundancy"]
    dif = t[t.network == "synergy_minus_redundancy"]
    assert net[["ci_low", "ci_high", "p", "n_folds"]].isna().all().all()
    assert dif[["null_low", "null_high", "null_median", "p_null", "n_null"]].isna().all().all()
    assert (net.null_low <= net.null_high).all() and net.p_null.between(1 / 31, 1).all()
    assert (dif.ci_low <= dif.estimate).all() and (dif.estimate <= dif.ci_high).all()
    assert (t.n_boot == 30).all() and (net.n_null == 30).all()
    assert (dif.n_folds == 10).all() and dif.p.between(2 / 2 ** 10, 1).all()
    # bootstrap test: p < 0.05 exactly when the 95% interval excludes 0; same estimates and intervals
    b = G.graph_statistics(sts, rtr, pairs, 16, fraction=0.1, n_boot=30, n_null=30, seed=3,
                           difference_test="bootstrap")
    bd = b[b.network == "synergy_minus_redundancy"]
    assert ((bd.p < 0.05) == ((bd.ci_low > 0) | (bd.ci_high < 0))).all()
    np.testing.assert_array_equal(bd.ci_low, dif.ci_low)
    assert bd.n_folds.isna().all()


def test_graph_statistics_detects_planted_difference():
    sts, rtr, pairs = planted()
    t = G.graph_statistics(sts, rtr, pairs, 16, fraction=0.1, n_boot=40, n_null=40, seed=0)
    key = t.set_index(["network", "variant", "metric"])
    for variant in G.VARIANTS:
        eff = key.loc[("synergy_minus_redundancy", variant, "global_efficiency")]
        mod = key.loc[("synergy_minus_redundancy", variant, "modularity")]
        assert eff.estimate > 0 and eff.p < 0.01        # hub network more integrated
        assert mod.estimate < 0 and mod.p < 0.01        # modular network more segregated
        assert key.loc[("redundancy", variant, "modularity"), "p_null"] < 0.05
        assert key.loc[("synergy", variant, "global_efficiency"), "p_null"] < 0.05


def test_graph_statistics_deterministic_scale_invariant_and_options():
    sts, rtr, pairs = planted(n_heads=12, n_prompts=8)
    a = G.graph_statistics(sts, rtr, pairs, 12, 0.1, n_boot=10, n_null=10, seed=5)
    b = G.graph_statistics(sts, rtr, pairs, 12, 0.1, n_boot=10, n_null=10, seed=5)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(a, b)
    # every metric ignores a positive rescaling of a network; so does the whole table
    c = G.graph_statistics(0.5 * sts, 4 * rtr, pairs, 12, 0.1, n_boot=10, n_null=10, seed=5)
    pd_testing.assert_frame_equal(a, c, rtol=1e-9)
    g = G.graph_statistics(sts, rtr, pairs, 12, 0.1, n_boot=10, n_null=10, seed=np.random.default_rng(5))
    assert g.shape == a.shape
    z = G.graph_statistics(sts, rtr, pairs, 12, 0.1, n_boot=0, n_null=0)
    np.testing.assert_allclose(z.estimate, a.estimate)
    assert z[["boot_se", "ci_low", "null_low", "p_null"]].isna().all().all()
    assert (z.n_boot == 0).all()
    np.testing.assert_array_equal(z.p, a.p)              # the fold test needs neither
    zb = G.graph_statistics(sts, rtr, pairs, 12, 0.1, n_boot=0, n_null=0, difference_test="bootstrap")
    assert zb.p.isna().all()
    s = G.graph_statistics(sts, rtr, pairs, 12, 0.1, n_boot=10, n_null=10, seed=5, difference_test="label_swap")
    dif = s[s.network == "synergy_minus_redundancy"]
    assert dif.p.between(1 / 11, 1).all() and dif.null_low.notna().all() and (dif.n_null == 10).all()
    np.testing.assert_allclose(s.estimate, a.estimate)
    with pytest.raises(ValueError):
        G.graph_statistics(sts, rtr[:, :5], pairs, 12)
    with pytest.raises(ValueError):
        G.graph_statistics(sts, rtr, pairs, 12, difference_test="wald")
    with pytest.raises(ValueError):
        G.graph_statistics(sts, rtr, pairs, 12, n_folds=21)


def test_sign_flip_p_exact():
    assert G.sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)        # only +-(1, 2, 3)
    # |1 + 2 - 3| = 0 : every sign vector is at least as extreme
    assert G.sign_flip_p([1.0, 2.0, -3.0]) == 1.0
    # sums over signs of (1, 1, 3): |+-1 +-1 +-3| in {5, 3, 3, 1} x 2 -> P(>= 3) = 6 / 8
    assert G.sign_flip_p([1.0, -1.0, 3.0]) == pytest.approx(6 / 8)
    assert G.sign_flip_p([2.0, np.nan]) == 1.0 and np.isnan(G.sign_flip_p([np.nan]))
    rng = np.random.default_rng(12)
    p = np.array([G.sign_flip_p(rng.normal(size=8)) for _ in range(3000)])
    assert abs(np.mean(p <= 0.05) - 0.05) < 0.015      # exact for symmetric statistics
    with pytest.raises(ValueError):
        G.sign_flip_p(np.ones(21))


def test_prompt_folds():
    f = G.prompt_folds(23, 10, np.random.default_rng(0))
    assert f.shape == (23, 10) and (f.sum(axis=1) == 1).all()
    assert sorted(f.sum(axis=0)) == [2] * 7 + [3] * 3
    assert G.prompt_folds(4, 10, np.random.default_rng(0)).shape == (4, 4)

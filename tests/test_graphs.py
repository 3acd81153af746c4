"""Graph metrics of the top-fraction head graph on matrices with known answers."""
import warnings

import networkx as nx
import numpy as np
import pytest

from synergy_core import graphs as G
from synergy_core.phiid.chunks import pair_matrix, upper_triangle_pairs


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

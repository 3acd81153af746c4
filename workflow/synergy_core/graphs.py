"""Graph structure of the strongest head-pair interactions (e.g. the synergy network).

A head x head matrix (sts or rtr, nats) is thresholded to its top fraction of pairs, giving an
undirected **binary** graph on all H heads; its global efficiency and Louvain modularity describe
how integrated (short paths) or segregated (modules) the strongest interactions are.

Weighting: the graph is unweighted. Kept edges carry the matrix entry as the attribute
``"value"`` (deliberately not ``"weight"``, which networkx algorithms would pick up by default);
every metric here treats each edge as weight 1. This keeps the metrics defined for atoms that can
be negative (sts) and makes them depend only on which pairs are among the strongest.

Edge selection and ties: the ``k = floor(fraction * n + 0.5)`` (round half up) largest of the
``n`` finite upper-triangle entries ``(i < j)`` are kept; NaN entries are never kept and do not
count in ``n``. Ties at the threshold are broken by pair order (row-major upper triangle: the pair
with the smaller ``(i, j)`` wins), so exactly ``k`` edges are kept. All H heads are nodes,
isolated ones included.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from .resample import bootstrap_weights, percentile_ci, weighted_pair_means

__all__ = [
    "n_top_edges",
    "top_edge_pairs",
    "top_edges_graph",
    "global_efficiency",
    "graph_metrics",
    "bootstrap_graph_metrics",
]


def n_top_edges(fraction: float, n_pairs: int) -> int:
    """Number of edges kept: ``floor(fraction * n_pairs + 0.5)`` (round half up)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    return int(np.floor(fraction * n_pairs + 0.5))


def _check_matrix(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be square [H, H], got shape {m.shape}")
    return m


def top_edge_pairs(matrix, fraction: float = 0.10) -> np.ndarray:
    """The kept pairs ``[k, 2]`` (``i < j``), strongest first (see the module docstring for
    the count and tie rules). Only the upper triangle of ``matrix`` is read."""
    m = _check_matrix(matrix)
    i, j = np.triu_indices(m.shape[0], k=1)
    v = m[i, j]
    ok = np.flatnonzero(np.isfinite(v))
    k = n_top_edges(fraction, ok.size)
    order = ok[np.argsort(-v[ok], kind="stable")[:k]]   # stable: earlier pair wins a tie
    return np.stack([i[order], j[order]], axis=1)


def top_edges_graph(matrix, fraction: float = 0.10) -> nx.Graph:
    """Undirected unweighted graph of the top ``fraction`` of off-diagonal pairs by value.

    Parameters
    ----------
    matrix : array_like, float, shape [H, H]
        Symmetric pair matrix (e.g. prompt-mean sts, nats); only the upper triangle is read;
        NaN entries are ignored.
    fraction : float, default 0.10
        Fraction of the finite pairs kept as edges.

    Returns
    -------
    networkx.Graph
        Nodes ``0 .. H-1`` (all heads); ``k = floor(fraction * n_finite + 0.5)`` edges, each with
        attribute ``value`` (the matrix entry). Ties at the threshold: earlier pair in
        row-major upper-triangle order wins.
    """
    m = _check_matrix(matrix)
    g = nx.Graph()
    g.add_nodes_from(range(m.shape[0]))
    e = top_edge_pairs(m, fraction)
    g.add_edges_from((int(a), int(b), {"value": float(m[a, b])}) for a, b in e)
    return g


def global_efficiency(n_nodes: int, edges: np.ndarray) -> float:
    """Global efficiency of an unweighted undirected graph, via scipy BFS.

    ``E = sum_{u != v} 1 / d(u, v) / (n (n - 1))`` with ``1 / inf = 0``; equals
    ``networkx.global_efficiency`` (0 for fewer than 2 nodes).

    Parameters
    ----------
    n_nodes : int
    edges : array_like, int, shape [k, 2]
    """
    if n_nodes < 2:
        return 0.0
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    adj = sparse.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_nodes, n_nodes))
    d = csgraph.shortest_path(adj, method="D", directed=False, unweighted=True)
    np.fill_diagonal(d, np.inf)
    with np.errstate(divide="ignore"):
        inv = 1.0 / d
    return float(inv.sum() / (n_nodes * (n_nodes - 1)))


def _metrics(n_nodes: int, edges: np.ndarray, seed: int) -> dict:
    g = nx.Graph()
    g.add_nodes_from(range(n_nodes))
    g.add_edges_from(map(tuple, np.asarray(edges).tolist()))
    eff = global_efficiency(n_nodes, edges)
    if g.number_of_edges() == 0:
        return {"global_efficiency": eff, "modularity": np.nan, "n_communities": n_nodes,
                "n_edges": 0}
    comms = nx.community.louvain_communities(g, weight=None, seed=seed)
    q = nx.community.modularity(g, comms, weight=None)
    return {"global_efficiency": eff, "modularity": float(q), "n_communities": len(comms),
            "n_edges": g.number_of_edges()}


def graph_metrics(matrix, fraction: float = 0.10, seed: int = 0) -> dict:
    """Integration and segregation of the top-``fraction`` graph of ``matrix``.

    Parameters
    ----------
    matrix : array_like, float, shape [H, H]
        Symmetric pair matrix (upper triangle read, NaN ignored).
    fraction : float, default 0.10
    seed : int, default 0
        Seed of the Louvain algorithm.

    Returns
    -------
    dict
        ``global_efficiency`` (unitless, [0, 1], equal to ``networkx.global_efficiency``),
        ``modularity`` (of the partition ``networkx.community.louvain_communities(g, seed=seed)``,
        unweighted; NaN for a graph without edges), ``n_communities`` (isolated heads are
        communities of their own), ``n_edges``.
    """
    m = _check_matrix(matrix)
    return _metrics(m.shape[0], top_edge_pairs(m, fraction), seed)


def bootstrap_graph_metrics(per_prompt_values, pairs, n_total_heads: int, fraction: float = 0.10,
                            n_boot: int = 200, seed: int = 0, ci: float = 0.95) -> dict:
    """Bootstrap over prompts of :func:`graph_metrics` of the prompt-mean pair matrix.

    Each resample draws the prompts with replacement and rebuilds the pair matrix as the
    prompt-weighted NaN-ignoring mean of the per-prompt values (the pipeline's per-prompt
    aggregation), then thresholds it and computes the metrics (Louvain seeded with ``seed``).

    Parameters
    ----------
    per_prompt_values : array_like, float, shape [P, prompts]
        Per-prompt values of each pair (e.g. ``PairwisePhiID.per_prompt_sts``, nats), NaN for
        degenerate cells.
    pairs : array_like, int, shape [P, 2]
    n_total_heads : int
        Number of heads H (all layers).
    fraction : float, default 0.10
    n_boot : int, default 200
    seed : int, default 0
        Seeds both the resampling and Louvain.
    ci : float, default 0.95

    Returns
    -------
    dict
        ``summary`` : DataFrame, one row per metric (``global_efficiency``, ``modularity``,
        ``n_communities``) with ``estimate`` (all prompts), ``ci_low``, ``ci_high``,
        ``boot_mean``, ``boot_se``, ``n_valid``; ``samples`` : dict metric -> [n_boot];
        ``n_boot``, ``seed``.

    Notes
    -----
    Thresholded-graph metrics are not smooth functions of the data, and the percentile
    bootstrap is biased for them: a resample's pair means are noisier than the full-data
    means (duplicated prompts average less noise away), so which pairs make the top fraction
    is more random, and the resampled graphs drift towards a random graph (higher
    efficiency, fewer and weaker modules). When the pair structure is weak relative to the
    noise the whole interval can lie on one side of the estimate (seen in
    ``tests/benchmarks/bench_stats.py``). Check ``boot_mean - estimate``; use the
    intervals to compare conditions resampled the same way (e.g. trained vs randomly
    initialised model), not as coverage intervals for the estimate.
    """
    x = np.asarray(per_prompt_values, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64)
    if x.ndim != 2 or pairs.shape != (x.shape[0], 2):
        raise ValueError(f"per_prompt_values must be [P, prompts] and pairs [P, 2], got "
                         f"{x.shape} and {pairs.shape}")
    n = x.shape[1]
    rng = np.random.default_rng(seed)
    w = np.concatenate([np.ones((n, 1)), bootstrap_weights(n, int(n_boot), rng)], axis=1)
    means = weighted_pair_means(x, w)                                # [P, 1 + B]
    names = ("global_efficiency", "modularity", "n_communities")
    out = {k: np.full(w.shape[1], np.nan) for k in names}
    m = np.full((n_total_heads, n_total_heads), np.nan)
    for b in range(w.shape[1]):
        m[pairs[:, 0], pairs[:, 1]] = means[:, b]
        m[pairs[:, 1], pairs[:, 0]] = means[:, b]
        r = graph_metrics(m, fraction, seed)
        for k in names:
            out[k][b] = r[k]
    rows = [dict(metric=k, estimate=out[k][0], **percentile_ci(out[k][1:], ci)) for k in names]
    return {"summary": pd.DataFrame(rows), "samples": {k: v[1:] for k, v in out.items()},
            "n_boot": int(n_boot), "seed": seed, "ci": ci}

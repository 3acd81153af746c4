"""Graph structure of head-pair interactions: the synergy and the redundancy network of heads.

A network is one value per head pair (a prompt-mean sts or rtr, nats) on all H heads as nodes,
isolated heads included. Its integration is measured by global efficiency (short paths) and its
segregation by the modularity of a seeded Louvain partition (paper Fig 3b-c). Two variants:

``thresholded``
    Undirected **binary** graph of the top ``fraction`` of pairs. Kept edges carry the pair value
    as the attribute ``"value"`` (deliberately not ``"weight"``, which networkx algorithms would
    pick up by default); every metric treats each edge as weight 1, so the metrics depend only on
    which pairs are among the strongest (they are invariant to any increasing transformation of
    the values, and defined for negative values). Edge selection and ties: the
    ``k = floor(fraction * n + 0.5)`` (round half up) largest of the ``n`` finite values are kept;
    NaN values are never kept and do not count in ``n``. Ties at the threshold are broken by pair
    order (row-major upper triangle: the pair with the smaller ``(i, j)`` wins), so exactly ``k``
    edges are kept.
``weighted``
    The complete graph with the pair values as edge weights, as in the paper. Weights (see
    :func:`edge_weights`): ``w = max(value, 0) / mean(max(value, 0))`` over the finite pairs.
    Negative values are clipped to 0 and NaN values dropped, and a weight-0 pair is *no edge*:
    the shortest-path length ``1 / w`` needs ``w > 0``; Newman modularity (and Louvain) is
    defined for nonnegative weights only; a negative PhiID atom (sts can be negative) means "no
    synergy", not an anti-edge; a NaN pair (degenerate in every prompt) has no estimate and is
    not imputed. Dividing by the mean makes both weighted metrics invariant to a positive
    rescaling of the values, so networks with different magnitudes (synergy vs redundancy, nats)
    are compared by their arrangement, not their size (the Brain Connectivity Toolbox divides by
    the maximum instead, which ties the metric to one extreme pair).

    Weighted global efficiency: ``E_w = sum_{u != v} 1 / d(u, v) / (H (H - 1))`` with ``d`` the
    shortest-path length when an edge of weight ``w`` has length ``1 / w`` (scipy
    ``csgraph.shortest_path``), ``1 / inf = 0``. Unitless. With no weight clipped ``E_w >= 1``
    (``d(u, v) <= 1 / w_uv``), equal to 1 when all weights are equal; it grows when strong edges
    form short indirect routes. Weighted modularity: Newman modularity with weights (equal to
    ``networkx.community.modularity(g, c, weight="weight")``, computed vectorised) of the
    partition ``c = networkx.community.louvain_communities(g, weight="weight", seed=seed)``.

Statistics (:func:`graph_statistics`) over the per-prompt values ``[P, prompts]``:

null band (each network)
    Pair-shuffle null: the network's prompt-mean values permuted among the pairs (the same
    weights, or for ``thresholded`` a uniformly random set of ``k`` edges, on a random
    arrangement). ``null_low``/``null_high`` are percentiles of that null, *not* a confidence
    interval; ``p_null`` is the two-sided permutation p-value of :func:`null_band`.
synergy minus redundancy (each metric and variant)
    Paired by prompt. Interval: ``estimate -+ t * se`` (``se`` = SD of the difference over one
    prompt bootstrap, the same resample for both networks, x ``sqrt(n / (n - 1))``; ``t`` with
    ``n - 1`` degrees of freedom, ``n`` prompts); it contains the estimate by construction. The
    drift of resampled graphs towards random ones is shared by the two networks of the paired
    difference, but the interval is only approximately calibrated. ``p``: by default an exact
    fold sign-flip test (the difference recomputed in K disjoint random folds of prompts,
    :func:`sign_flip_p`), exact when each prompt's synergy and redundancy vectors are
    exchangeable; the bootstrap t-test and a label-swap permutation test are options. See
    :func:`graph_statistics`; ``tests/calib_graphs.py`` measures the false-positive rates of
    ``p``, of the interval and of ``p_null`` under simulated nulls, and the power for a planted
    integrated-synergy / modular-redundancy pair.

The single-network prompt bootstrap is reported only as ``boot_mean``/``boot_se``: resampled
pair means are noisier than the all-prompt means (duplicated prompts average less noise away),
so resampled graphs drift towards random ones and percentile intervals of one network's metric
can exclude its own estimate (issue #10).
"""

from __future__ import annotations

import numbers

import networkx as nx
import numpy as np
import pandas as pd
from scipy import sparse, stats
from scipy.sparse import csgraph

from .resample import bootstrap_weights, label_swap_means, percentile_ci, weighted_pair_means

__all__ = [
    "VARIANTS",
    "GRAPH_METRICS",
    "n_top_edges",
    "top_edge_pairs",
    "top_edges_graph",
    "global_efficiency",
    "graph_metrics",
    "bootstrap_graph_metrics",
    "edge_weights",
    "weighted_global_efficiency",
    "weighted_graph",
    "weighted_graph_metrics",
    "pair_graph_metrics",
    "null_band",
    "prompt_folds",
    "sign_flip_p",
    "graph_statistics",
]

VARIANTS = ("thresholded", "weighted")
GRAPH_METRICS = ("global_efficiency", "modularity")
NETWORKS = ("synergy", "redundancy", "synergy_minus_redundancy")
STAT_COLUMNS = ("network", "variant", "metric", "estimate", "boot_mean", "boot_se", "ci_low", "ci_high",
                "p", "null_low", "null_median", "null_high", "p_null", "n_boot", "n_null", "n_folds")
DIFFERENCE_TESTS = ("folds", "bootstrap", "label_swap")


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


def _check_pairs(values, pairs, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if v.shape[:1] != (len(e),):
        raise ValueError(f"values must have one row per pair ({len(e)}), got shape {v.shape}")
    if len(e) and (e.min() < 0 or e.max() >= n_nodes or np.any(e[:, 0] == e[:, 1])):
        raise ValueError(f"pairs must be distinct heads in [0, {n_nodes})")
    return v, e


def _top_pairs(values: np.ndarray, pairs: np.ndarray, fraction: float) -> np.ndarray:
    """Rows of ``pairs`` of the top ``fraction`` finite ``values``, strongest first; ties go to
    the smaller ``(i, j)``."""
    ok = np.flatnonzero(np.isfinite(values))
    k = n_top_edges(fraction, ok.size)
    order = ok[np.lexsort((pairs[ok, 1], pairs[ok, 0], -values[ok]))[:k]]
    return pairs[order]


def top_edge_pairs(matrix, fraction: float = 0.10) -> np.ndarray:
    """The kept pairs ``[k, 2]`` (``i < j``), strongest first (see the module docstring for
    the count and tie rules). Only the upper triangle of ``matrix`` is read."""
    m = _check_matrix(matrix)
    i, j = np.triu_indices(m.shape[0], k=1)
    return _top_pairs(m[i, j], np.stack([i, j], axis=1), fraction)


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


def _efficiency_from_lengths(n_nodes: int, lengths: sparse.csr_matrix, unweighted: bool) -> float:
    # Dijkstra / BFS for sparse graphs; Floyd-Warshall (faster in practice) for dense weighted ones.
    dense = not unweighted and lengths.nnz > n_nodes * n_nodes / 8
    d = csgraph.shortest_path(lengths, method="FW" if dense else "D", directed=False, unweighted=unweighted)
    np.fill_diagonal(d, np.inf)
    with np.errstate(divide="ignore"):
        inv = 1.0 / d
    return float(inv.sum() / (n_nodes * (n_nodes - 1)))


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
    return _efficiency_from_lengths(n_nodes, adj, unweighted=True)


def _modularity(n_nodes: int, edges: np.ndarray, weights: np.ndarray, communities) -> float:
    """Newman modularity (resolution 1) of a partition, vectorised; equals
    ``networkx.community.modularity`` (tested). ``edges`` [k, 2] distinct pairs, ``weights`` [k] > 0."""
    labels = np.empty(n_nodes, dtype=np.int64)
    for c, members in enumerate(communities):
        labels[list(members)] = c
    m = weights.sum()
    strength = np.bincount(edges[:, 0], weights, n_nodes) + np.bincount(edges[:, 1], weights, n_nodes)
    la, lb = labels[edges[:, 0]], labels[edges[:, 1]]
    within = weights[la == lb].sum()
    total = np.bincount(labels, strength)
    return float(within / m - np.sum((total / (2 * m)) ** 2))


def _louvain_metrics(g: nx.Graph, edges: np.ndarray, weights: np.ndarray, eff: float, weight, seed) -> dict:
    n_nodes = g.number_of_nodes()
    if len(edges) == 0:
        return {"global_efficiency": eff, "modularity": np.nan, "n_communities": n_nodes, "n_edges": 0}
    comms = nx.community.louvain_communities(g, weight=weight, seed=seed)
    return {"global_efficiency": eff, "modularity": _modularity(n_nodes, edges, weights, comms),
            "n_communities": len(comms), "n_edges": len(edges)}


def _metrics(n_nodes: int, edges: np.ndarray, seed: int) -> dict:
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    g = nx.Graph()
    g.add_nodes_from(range(n_nodes))
    g.add_edges_from(map(tuple, e.tolist()))
    return _louvain_metrics(g, e, np.ones(len(e)), global_efficiency(n_nodes, e), None, seed)


def graph_metrics(matrix, fraction: float = 0.10, seed: int = 0) -> dict:
    """Integration and segregation of the top-``fraction`` (thresholded, binary) graph of ``matrix``.

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


def edge_weights(values) -> np.ndarray:
    """Edge weights of the weighted variant from pair values.

    Parameters
    ----------
    values : array_like, float, shape [P]
        One value per pair (nats), NaN allowed.

    Returns
    -------
    np.ndarray, float64, shape [P]
        ``max(value, 0) / mean(max(value, 0))``, the mean taken over the finite values; NaN
        values give 0 (no edge). Unitless, mean 1 over the finite pairs; all 0 when no value is
        positive. Invariant to multiplying ``values`` by a positive constant.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    w = np.where(finite, np.maximum(np.where(finite, v, 0.0), 0.0), 0.0)
    mean = w[finite].mean() if finite.any() else 0.0
    return w / mean if mean > 0 else np.zeros_like(w)


def weighted_global_efficiency(n_nodes: int, pairs, weights) -> float:
    """Weighted global efficiency with edge length ``1 / weight``.

    Parameters
    ----------
    n_nodes : int
        Number of heads H.
    pairs : array_like, int, shape [P, 2]
    weights : array_like, float, shape [P]
        Nonnegative edge weights (e.g. from :func:`edge_weights`); pairs with weight 0 or NaN
        are not edges.

    Returns
    -------
    float
        ``sum_{u != v} 1 / d(u, v) / (n (n - 1))``, ``d`` the shortest-path length (sum of
        ``1 / w`` along the path), ``1 / inf = 0``; in the units of the weights (unitless for
        :func:`edge_weights`); 0 for fewer than 2 nodes.
    """
    w, e = _check_pairs(weights, pairs, n_nodes)
    if n_nodes < 2:
        return 0.0
    if np.any(w < 0):
        raise ValueError("weights must be nonnegative")
    keep = np.isfinite(w) & (w > 0)
    lengths = sparse.csr_matrix((1.0 / w[keep], (e[keep, 0], e[keep, 1])), shape=(n_nodes, n_nodes))
    return _efficiency_from_lengths(n_nodes, lengths, unweighted=False)


def weighted_graph(n_nodes: int, pairs, weights) -> nx.Graph:
    """networkx graph on nodes ``0 .. n_nodes - 1`` with an edge (attribute ``weight``) for each
    pair of finite positive weight. ``pairs`` [P, 2], ``weights`` [P]."""
    w, e = _check_pairs(weights, pairs, n_nodes)
    keep = np.flatnonzero(np.isfinite(w) & (w > 0))
    g = nx.Graph()
    g.add_nodes_from(range(n_nodes))
    g.add_weighted_edges_from(zip(e[keep, 0].tolist(), e[keep, 1].tolist(), w[keep].tolist()))
    return g


def _weighted_metrics(n_nodes: int, pairs: np.ndarray, values: np.ndarray, seed: int) -> dict:
    w = edge_weights(values)
    keep = w > 0
    eff = weighted_global_efficiency(n_nodes, pairs, w)
    return _louvain_metrics(weighted_graph(n_nodes, pairs, w), pairs[keep], w[keep], eff, "weight", seed)


def weighted_graph_metrics(matrix, seed: int = 0) -> dict:
    """Integration and segregation of the complete weighted graph of ``matrix``.

    Parameters
    ----------
    matrix : array_like, float, shape [H, H]
        Symmetric pair matrix (nats; upper triangle read). Weights are :func:`edge_weights` of
        the upper-triangle values: negative values clipped to 0, NaN dropped, divided by the mean.
    seed : int, default 0
        Seed of the Louvain algorithm.

    Returns
    -------
    dict
        ``global_efficiency`` (weighted, :func:`weighted_global_efficiency` of the normalised
        weights, unitless, >= 1 when no weight is clipped), ``modularity`` (weighted Louvain
        partition, weighted Newman modularity; NaN when no weight is positive),
        ``n_communities``, ``n_edges`` (pairs with positive weight).
    """
    m = _check_matrix(matrix)
    i, j = np.triu_indices(m.shape[0], k=1)
    return _weighted_metrics(m.shape[0], np.stack([i, j], axis=1), m[i, j], seed)


def pair_graph_metrics(values, pairs, n_total_heads: int, variant: str = "weighted",
                       fraction: float = 0.10, seed: int = 0) -> dict:
    """Graph metrics of one network given as pair values (no matrix needed).

    Parameters
    ----------
    values : array_like, float, shape [P]
        One value per pair (e.g. prompt-mean sts, nats), NaN allowed.
    pairs : array_like, int, shape [P, 2]
        Head indices of each pair (distinct heads; missing pairs are no edge).
    n_total_heads : int
        Number of heads H (all are nodes).
    variant : {"thresholded", "weighted"}
    fraction : float, default 0.10
        Fraction of finite pairs kept (``thresholded`` only).
    seed : int, default 0
        Louvain seed.

    Returns
    -------
    dict
        As :func:`graph_metrics` (thresholded; equal to it for the matrix of the same values,
        threshold ties going to the smaller ``(i, j)``) or :func:`weighted_graph_metrics`.
    """
    v, e = _check_pairs(values, pairs, n_total_heads)
    if variant == "thresholded":
        return _metrics(n_total_heads, _top_pairs(v, e, fraction), seed)
    if variant == "weighted":
        return _weighted_metrics(n_total_heads, e, v, seed)
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def _metric_samples(values: np.ndarray, pairs: np.ndarray, n_nodes: int, variant: str,
                    fraction: float, seed: int) -> np.ndarray:
    """``[len(GRAPH_METRICS), B]`` metrics of each column of ``values`` ``[P, B]``."""
    out = np.full((len(GRAPH_METRICS), values.shape[1]), np.nan)
    for b in range(values.shape[1]):
        r = pair_graph_metrics(values[:, b], pairs, n_nodes, variant, fraction, seed)
        out[:, b] = [r[k] for k in GRAPH_METRICS]
    return out


def bootstrap_graph_metrics(per_prompt_values, pairs, n_total_heads: int, fraction: float = 0.10,
                            n_boot: int = 200, seed: int = 0, ci: float = 0.95) -> dict:
    """Bootstrap over prompts of :func:`graph_metrics` (thresholded) of the prompt-mean pair matrix.

    Superseded for reporting by :func:`graph_statistics`; kept for diagnostics.

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
        ``n_communities``) with ``estimate`` (all prompts), ``ci_low``, ``ci_high`` (the
        ``ci`` *percentile range of the bootstrap metrics*: a description of how the metric
        varies over prompt resamples, not a confidence interval; it can exclude ``estimate``,
        see Notes), ``boot_mean``, ``boot_se``, ``n_valid``; ``samples`` : dict metric ->
        [n_boot]; ``n_boot``, ``seed``.

    Notes
    -----
    Thresholded-graph metrics are not smooth functions of the data, and the percentile
    bootstrap is biased for them: a resample's pair means are noisier than the full-data
    means (duplicated prompts average less noise away), so which pairs make the top fraction
    is more random, and the resampled graphs drift towards a random graph (higher
    efficiency, fewer and weaker modules). When the pair structure is weak relative to the
    noise the whole interval can lie on one side of the estimate (seen in
    ``tests/benchmarks/bench_stats.py``). Check ``boot_mean - estimate``. For reported
    numbers use :func:`graph_statistics` (pair-shuffle null bands per network, a paired
    synergy-minus-redundancy interval and a calibrated test).
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


def null_band(observed: float, null, ci: float = 0.95, center: float | None = None) -> dict:
    """Percentile band of a null distribution and the two-sided permutation p-value.

    Parameters
    ----------
    observed : float
        The statistic on the data.
    null : array_like, float, shape [n]
        The statistic on ``n`` null draws (NaN draws are dropped).
    ci : float, default 0.95
        Mass of the band: percentiles ``100 (1 - ci) / 2`` and ``100 (1 + ci) / 2``.
    center : float, optional
        Centre of the two-sided test. Default: the median of the null draws *and* the observed
        value together (a symmetric function of all ``n + 1`` values, so the test stays exact
        when they are exchangeable). Pass 0 for a null symmetric about 0.

    Returns
    -------
    dict
        ``null_low``, ``null_median``, ``null_high`` (of the null draws), ``p_value`` =
        ``(1 + #{|null - c| >= |observed - c|}) / (1 + n)`` (ties count as extreme, with a
        relative tolerance of 1e-9 for rounding), ``n`` (finite null draws). NaN p-value when
        ``observed`` is NaN or ``n == 0``.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    z = np.asarray(null, dtype=np.float64).ravel()
    z = z[np.isfinite(z)]
    out = {"null_low": np.nan, "null_median": np.nan, "null_high": np.nan, "p_value": np.nan,
           "n": int(z.size)}
    if z.size == 0:
        return out
    lo, med, hi = np.percentile(z, [100 * (1 - ci) / 2, 50, 100 * (1 + ci) / 2])
    out.update(null_low=float(lo), null_median=float(med), null_high=float(hi))
    if np.isfinite(observed):
        c = float(np.median(np.append(z, observed))) if center is None else float(center)
        d_obs = abs(observed - c)
        extreme = np.abs(z - c) >= d_obs - 1e-9 * max(d_obs, abs(c), 1e-300)
        out["p_value"] = float((1 + extreme.sum()) / (1 + z.size))
    return out


def prompt_folds(n_prompts: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Random partition of the prompts into ``min(n_folds, n_prompts)`` folds of near-equal size.

    Returns
    -------
    np.ndarray, float64, shape [prompts, K]
        One-hot prompt weights (column ``k`` selects fold ``k``'s prompts; sizes differ by at most
        one), for :func:`~synergy_core.resample.weighted_pair_means`.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    k = min(int(n_folds), n_prompts)
    labels = np.empty(n_prompts, dtype=np.int64)
    labels[rng.permutation(n_prompts)] = np.arange(n_prompts) % max(k, 1)
    return (labels[:, None] == np.arange(k)[None, :]).astype(np.float64)


def sign_flip_p(fold_statistics) -> float:
    """Exact two-sided sign-flip p-value of the sum of independent, null-symmetric statistics.

    Parameters
    ----------
    fold_statistics : array_like, float, shape [K]
        One statistic per fold (disjoint prompts), each symmetric about 0 under the null; NaN
        entries are dropped; at most 20 finite ones.

    Returns
    -------
    float
        ``#{e in {-1, +1}^K : |sum e_k T_k| >= |sum T_k|} / 2^K`` by full enumeration (ties count,
        relative tolerance 1e-9); its smallest value is ``2 / 2^K``. NaN for ``K = 0``.
    """
    t = np.asarray(fold_statistics, dtype=np.float64).ravel()
    t = t[np.isfinite(t)]
    k = t.size
    if k == 0:
        return np.nan
    if k > 20:
        raise ValueError(f"at most 20 fold statistics can be enumerated, got {k}")
    signs = 1.0 - 2.0 * ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1)
    obs = abs(t.sum())
    tol = 1e-9 * max(np.abs(t).sum(), 1e-300)
    return float(np.mean(np.abs(signs @ t) >= obs - tol))


def _rms(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    r = float(np.sqrt(np.mean(finite ** 2))) if finite.size else 0.0
    return r if r > 0 else 1.0


def graph_statistics(per_prompt_sts, per_prompt_rtr, pairs, n_total_heads: int, fraction: float = 0.10,
                     n_boot: int = 100, n_null: int = 100, seed: int | np.random.Generator = 0,
                     ci: float = 0.95, difference_test: str = "folds", n_folds: int = 10) -> pd.DataFrame:
    """Graph metrics of the synergy and redundancy networks, null bands, and their paired difference.

    Parameters
    ----------
    per_prompt_sts, per_prompt_rtr : array_like, float, shape [P, prompts]
        Per-prompt synergy and redundancy of each pair (nats), NaN for degenerate cells. Each
        network is the NaN-ignoring prompt mean (the pipeline's per-prompt aggregation).
    pairs : array_like, int, shape [P, 2]
        Head indices of each pair (``i < j``; any row order: threshold ties go to the smaller
        ``(i, j)``); pairs not listed are no edge.
    n_total_heads : int
        Number of heads H (all are nodes).
    fraction : float, default 0.10
        Fraction of finite pairs kept by the ``thresholded`` variant.
    n_boot : int, default 100
        Prompt-bootstrap resamples (the same resample for both networks). 0: no ``boot_*``,
        ``ci_*`` (nor ``p`` with ``difference_test="bootstrap"``).
    n_null : int, default 100
        Pair-shuffle draws of each network's null band (and label swaps with
        ``difference_test="label_swap"``). 0: no null columns.
    seed : int or numpy.random.Generator, default 0
        All randomness: bootstrap, pair shuffles, label swaps and folds come from independent
        child streams of ``numpy.random.default_rng(seed)``. Louvain is seeded with ``seed``
        itself when it is an int (as :func:`graph_metrics`), else with an int drawn from the
        Generator; every graph of one call uses that same Louvain seed.
    ci : float, default 0.95
        Mass of the difference interval and of the null bands.
    difference_test : {"folds", "bootstrap", "label_swap"}, default "folds"
        How ``p`` of the difference rows is computed (the interval is the bootstrap one always).

        ``folds`` (default): the prompts are split at random into ``K = min(n_folds, prompts)``
        disjoint folds; in each fold the difference ``T_k`` is recomputed from that fold's prompt
        means, and ``p`` is the exact sign-flip p-value of ``sum_k T_k`` (:func:`sign_flip_p`).
        Null: in every prompt the synergy and redundancy vectors are exchangeable, prompts
        independent; then each ``T_k`` is symmetric about 0 (swapping the labels of all of a
        fold's prompts negates it), so the test is exact whatever the metric and whatever the
        dependence between pairs. Smallest possible p: ``2 / 2^K`` (0.002 for K = 10; 0.0078
        for K = 8). It tests the metric difference at fold size (noisier graphs than with all
        prompts), so it loses power when the effect is weak relative to one fold's noise.
        ``bootstrap``: ``2 * t_{n-1}.sf(|estimate| / se)``, the t-test matching the interval
        (``p < 1 - ci`` exactly when the interval excludes 0; se = 0: p = 1 if the estimate is 0,
        else 0). More powerful but only approximately calibrated: false-positive rates up to
        about 7% at alpha = 5% were measured (``tests/calib_graphs.py``).
        ``label_swap``: two-sided permutation test ``(1 + #{|T_b| >= |T|}) / (1 + n_null)``; each
        draw swaps each prompt's synergy and redundancy vectors with probability 1/2, after
        dividing each network by the root mean square of its per-prompt values (no metric here
        changes under a positive rescaling of a network). Exact under the same null, but nearly
        powerless for thresholded metrics: the top-fraction graph of a mixture of two structured
        networks is the graph of whichever dominates the mixture, so the swapped differences are
        close to ``+-T`` and ``p`` stays large however strong the effect. With it the difference
        rows' ``null_*`` and ``n_null`` describe the label-swap null.
    n_folds : int, default 10
        Number of folds K of the ``folds`` test (at most 20; capped at the number of prompts).

    Returns
    -------
    pandas.DataFrame
        12 rows, tidy: ``variant`` in (thresholded, weighted) x ``network`` in (synergy,
        redundancy, synergy_minus_redundancy) x ``metric`` in (global_efficiency, modularity),
        in that nesting order. Columns ``network``, ``variant``, ``metric`` (str) and, numeric,
        NaN where not applicable (``STAT_COLUMNS``):

        ``estimate``
            Metric of the all-prompt mean network (difference rows: synergy minus redundancy).
            Unitless: thresholded efficiency in [0, 1]; weighted efficiency of mean-1 weights
            (>= 1 when nothing is clipped); modularity in [-0.5, 1].
        ``boot_mean``, ``boot_se``
            Mean and SD (ddof=1) over the prompt bootstrap. For a single network this shows the
            drift of resampled graphs towards random ones (``boot_mean - estimate``); it is not a
            confidence statement and no single-network interval is reported.
        ``ci_low``, ``ci_high``
            Difference rows only: ``estimate -+ t_{n-1, (1+ci)/2} * boot_se * sqrt(n / (n - 1))``,
            a t interval on the paired prompt-bootstrap SE (``n`` prompts); it contains
            ``estimate`` by construction. Approximate: it excluded 0 in up to about 7% of
            simulated null data sets at ci = 0.95 (``tests/calib_graphs.py``).
        ``p``
            Difference rows only: two-sided p-value of "synergy minus redundancy = 0", see
            ``difference_test`` (default: the fold sign-flip test).
        ``null_low``, ``null_median``, ``null_high``
            Network rows: percentiles ``100 (1 -+ ci) / 2`` and 50 of the pair-shuffle null
            (prompt-mean values permuted among pairs). A null band, not a confidence interval.
        ``p_null``
            Network rows only: two-sided pair-shuffle permutation p-value (:func:`null_band`,
            centre = median of null and observed): is the arrangement of the pair values more
            (or less) integrated / modular than a random arrangement of the same values?
        ``n_boot``, ``n_null``, ``n_folds``
            Finite bootstrap draws, null draws and (difference rows, ``folds`` test) fold
            statistics behind those columns.

    Notes
    -----
    Cost: ``2 variants x 2 networks x (1 + n_boot + n_null + K)`` graph evaluations (plus
    ``2 x 2 x n_null`` with ``label_swap``), dominated by Louvain on the complete weighted graph
    (about 55 ms at 128 heads, 8,128 pairs; a thresholded graph about 13 ms).
    """
    if difference_test not in DIFFERENCE_TESTS:
        raise ValueError(f"difference_test must be one of {DIFFERENCE_TESTS}, got {difference_test!r}")
    if not 1 <= int(n_folds) <= 20:
        raise ValueError(f"n_folds must lie in [1, 20], got {n_folds}")
    s = np.asarray(per_prompt_sts, dtype=np.float64)
    r = np.asarray(per_prompt_rtr, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64)
    if s.ndim != 2 or s.shape != r.shape or pairs.shape != (s.shape[0], 2):
        raise ValueError(f"per_prompt_sts and per_prompt_rtr must be [P, prompts] of one shape and pairs "
                         f"[P, 2], got {s.shape}, {r.shape} and {pairs.shape}")
    _check_pairs(s, pairs, n_total_heads)
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    n_boot, n_null = int(n_boot), int(n_null)
    if n_boot < 0 or n_null < 0:
        raise ValueError("n_boot and n_null must be >= 0")
    n_prompts = s.shape[1]
    rng = np.random.default_rng(seed)
    if isinstance(seed, numbers.Integral):
        louvain_seed = int(seed)
    else:
        louvain_seed = int(rng.integers(2 ** 31 - 1))
    boot_rng, shuffle_rng, swap_rng, fold_rng = rng.spawn(4)

    weights = np.concatenate([np.ones((n_prompts, 1)),
                              bootstrap_weights(n_prompts, n_boot, boot_rng)], axis=1)
    nets = ("synergy", "redundancy")
    means = dict(zip(nets, (weighted_pair_means(s, weights), weighted_pair_means(r, weights))))
    perms = np.stack([shuffle_rng.permutation(len(pairs)) for _ in range(n_null)], axis=1) \
        if n_null else np.empty((len(pairs), 0), np.int64)                      # [P, n_null]
    if difference_test == "label_swap":
        swap = swap_rng.random((n_prompts, n_null)) < 0.5
        swapped = dict(zip(nets, label_swap_means(s / _rms(s), r / _rms(r), swap)))
    if difference_test == "folds":
        folds = prompt_folds(n_prompts, int(n_folds), fold_rng)
        fold_means = dict(zip(nets, (weighted_pair_means(s, folds), weighted_pair_means(r, folds))))
    df = n_prompts - 1
    inflate = np.sqrt(n_prompts / df) if df > 0 else np.nan
    t_q = stats.t.ppf((1 + ci) / 2, df) if df > 0 else np.nan

    def samples(values, variant):
        return _metric_samples(values, pairs, n_total_heads, variant, fraction, louvain_seed)

    rows = []
    for variant in VARIANTS:
        boot = {k: samples(means[k], variant) for k in nets}                          # [2, 1 + B]
        shuffled = {k: samples(means[k][:, 0][perms], variant) for k in nets}         # [2, n_null]
        if difference_test == "label_swap":
            swaps = {k: samples(swapped[k], variant) for k in nets}                   # [2, n_null]
        if difference_test == "folds":
            fold_metrics = {k: samples(fold_means[k], variant) for k in nets}         # [2, K]
        for network in NETWORKS:
            diff = network == "synergy_minus_redundancy"
            for m, metric in enumerate(GRAPH_METRICS):
                x = boot["synergy"][m] - boot["redundancy"][m] if diff else boot[network][m]
                est, bs = x[0], x[1:]
                bs = bs[np.isfinite(bs)]
                row = dict(network=network, variant=variant, metric=metric, estimate=est,
                           boot_mean=bs.mean() if bs.size else np.nan,
                           boot_se=bs.std(ddof=1) if bs.size > 1 else np.nan, n_boot=bs.size)
                if not diff:
                    band = null_band(est, shuffled[network][m], ci)
                    row.update(null_low=band["null_low"], null_median=band["null_median"],
                               null_high=band["null_high"], p_null=band["p_value"], n_null=band["n"])
                    rows.append(row)
                    continue
                se = row["boot_se"] * inflate
                row.update(ci_low=est - t_q * se, ci_high=est + t_q * se)
                if se > 0:
                    row["p"] = float(2 * stats.t.sf(abs(est) / se, df))
                elif se == 0 and np.isfinite(est):
                    row["p"] = 1.0 if est == 0 else 0.0
                if difference_test == "label_swap":
                    band = null_band(est, swaps["synergy"][m] - swaps["redundancy"][m], ci, center=0.0)
                    row.update(null_low=band["null_low"], null_median=band["null_median"],
                               null_high=band["null_high"], p=band["p_value"], n_null=band["n"])
                elif difference_test == "folds":
                    t_k = fold_metrics["synergy"][m] - fold_metrics["redundancy"][m]
                    row.update(p=sign_flip_p(t_k), n_folds=int(np.isfinite(t_k).sum()))
                rows.append(row)
    return pd.DataFrame(rows, columns=list(STAT_COLUMNS))

"""Uncertainty and null models for the head ranking, the layer profile and the ablation curves.

Everything here is pure numpy/scipy and vectorised over resamples: a bootstrap resample or a
split half of the prompts is a vector of nonnegative *prompt weights* (the multiplicity of each
prompt), and all resamples are evaluated at once with matrix products.

Conventions (the same as :mod:`synergy_core.ranking` and :mod:`synergy_core.phiid`):

* heads are layer-major (head index = ``layer * n_heads + head``), ``H`` heads in all;
* ``pairs`` is ``[P, 2]`` with ``i < j`` (normally :func:`phiid.chunks.upper_triangle_pairs`);
* ``per_prompt_sts`` / ``per_prompt_rtr`` are ``[P, prompts]`` in nats, NaN for degenerate
  (pair, prompt) cells;
* a head's synergy (redundancy) is the mean over its pairs of the pair's prompt-mean sts (rtr),
  NaN pairs skipped; ranks are ascending with ties averaged; ``syn_red`` is the min-max
  normalised ``synergy_rank - redundancy_rank`` (1 = most synergistic); heads NaN in either
  quantity are left out of both rankings and get NaN;
* normalised depth of layer ``l`` is ``l / (L - 1)`` (0 when ``L == 1``).

Percentile intervals use ``np.nanpercentile`` over the resamples that gave a finite value;
``n_valid`` columns say how many did.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats as sps

from .ranking import head_means, layer_depth, pair_incidence, rank_difference
from .resample import bootstrap_weights, percentile_ci, weighted_pair_means

__all__ = [
    "MIDDLE_THIRD",
    "syn_red_from_prompt_weights",
    "layer_means",
    "inverted_u_score",
    "bootstrap_profile",
    "split_half_reliability",
    "circular_shift_surrogate",
    "surrogate_null",
    "category_profiles",
]

#: Closed interval of normalised depth that counts as the middle third of the layers.
MIDDLE_THIRD: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0)

# Tolerance on the third boundaries, so that depths like 5/15 count as exactly 1/3.
_DEPTH_TOL = 1e-9
# Resamples evaluated per matrix product in syn_red_from_prompt_weights (bounds memory:
# about 8 * P * _BLOCK bytes per temporary, 16 MiB for 8,128 pairs).
_BLOCK = 256


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
@contextmanager
def _quiet():
    """Context silencing the RuntimeWarnings of all-NaN reductions and 0/0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _check_per_prompt(per_prompt_sts, per_prompt_rtr, pairs, n_total_heads):
    sts = np.asarray(per_prompt_sts, dtype=np.float64)
    rtr = np.asarray(per_prompt_rtr, dtype=np.float64)
    pairs = np.asarray(pairs)
    if sts.ndim != 2 or rtr.shape != sts.shape:
        raise ValueError(f"per_prompt_sts and per_prompt_rtr must both be [P, prompts], got "
                         f"{sts.shape} and {rtr.shape}")
    if pairs.ndim != 2 or pairs.shape != (sts.shape[0], 2):
        raise ValueError(f"pairs must have shape [{sts.shape[0]}, 2], got {pairs.shape}")
    h = int(n_total_heads)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= h):
        raise ValueError(f"pairs must index heads in [0, n_total_heads={h})")
    if pairs.size and np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError("pairs must not contain a head paired with itself")
    return sts, rtr, pairs.astype(np.int64, copy=False), h


def _check_weights(weights, n_prompts):
    w = np.asarray(weights, dtype=np.float64)
    squeeze = w.ndim == 1
    if squeeze:
        w = w[:, None]
    if w.ndim != 2 or w.shape[0] != n_prompts:
        raise ValueError(f"weights must be [prompts] or [prompts, B] with prompts={n_prompts}, "
                         f"got shape {np.shape(weights)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and nonnegative")
    return w, squeeze


def _check_layer(layer, n_layers, n_total_heads=None):
    layer = np.asarray(layer)
    if layer.ndim != 1 or (n_total_heads is not None and layer.shape[0] != n_total_heads):
        raise ValueError(f"layer must be [H]{'' if n_total_heads is None else f' with H={n_total_heads}'}, "
                         f"got shape {layer.shape}")
    n_layers = int(n_layers)
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    if layer.size and (layer.min() < 0 or layer.max() >= n_layers):
        raise ValueError(f"layer values must lie in [0, n_layers={n_layers})")
    return layer.astype(np.int64, copy=False), n_layers



# --------------------------------------------------------------------------------------
# 1. syn_red under prompt weights
# --------------------------------------------------------------------------------------
def syn_red_from_prompt_weights(per_prompt_sts, per_prompt_rtr, pairs, n_total_heads: int,
                                weights) -> np.ndarray:
    """The pipeline's ``syn_red`` with prompts weighted, for many weight vectors at once.

    Exactly the pipeline's computation (``phiid_all_pairs(aggregation="per_prompt")`` ->
    ``pair_matrix`` -> ``ranking.rank_heads``) with each prompt counted ``weights[n]`` times:
    prompt-weighted NaN-ignoring mean of each pair's per-prompt values, per-head
    NaN-ignoring mean over its pairs, average-tie ascending ranks of synergy and redundancy
    (over the heads valid in both), their difference, min-max normalised.

    Parameters
    ----------
    per_prompt_sts, per_prompt_rtr : array_like, float, shape [P, prompts]
        Per-prompt sts and rtr atoms (nats), NaN for degenerate cells.
    pairs : array_like, int, shape [P, 2]
        Head indices of each pair (``i < j``). Heads pairs not listed are ignored, like the
        NaN entries of the pipeline's pair matrices.
    n_total_heads : int
        Number of heads H (all layers).
    weights : array_like, float, shape [prompts] or [prompts, B]
        Nonnegative prompt weights: bootstrap multiplicities, 0/1 split-half indicators, or
        all ones for the full data.

    Returns
    -------
    np.ndarray, float64, shape [H] or [H, B]
        ``syn_red`` in [0, 1] (unitless) per head and weight vector; NaN for heads without a
        finite synergy or redundancy, and for whole columns whose rank difference is constant.

    Notes
    -----
    With ``weights = ones`` this equals ``rank_heads(pair_matrix(atoms sts), pair_matrix(atoms
    rtr), ...).syn_red`` of the ``per_prompt`` aggregation (up to the rounding of sums in a
    different order, which matters only for exact ties between heads). The ``pooled``
    aggregation cannot be reweighted from per-prompt atoms.

    Cost: two ``[P, prompts] @ [prompts, B]`` products (four if any cell is NaN) and a sparse
    head x pair product, in blocks of 256 resamples; about 1 s per 1,000 resamples for
    8,128 pairs x 60 prompts.
    """
    sts, rtr, pairs, h = _check_per_prompt(per_prompt_sts, per_prompt_rtr, pairs, n_total_heads)
    w, squeeze = _check_weights(weights, sts.shape[1])
    inc = pair_incidence(pairs, h)
    out = np.empty((h, w.shape[1]))
    for b0 in range(0, w.shape[1], _BLOCK):
        wb = w[:, b0:b0 + _BLOCK]
        syn = head_means(weighted_pair_means(sts, wb), inc)
        red = head_means(weighted_pair_means(rtr, wb), inc)
        out[:, b0:b0 + _BLOCK] = rank_difference(syn, red)["syn_red"]
    return out[:, 0] if squeeze else out


# --------------------------------------------------------------------------------------
# 2. Inverted-U scores
# --------------------------------------------------------------------------------------
def layer_means(values, layer, n_layers: int) -> np.ndarray:
    """NaN-ignoring mean of per-head values per layer: ``[H] or [H, B] -> [L] or [L, B]``
    (NaN for layers without a finite value)."""
    v = np.asarray(values, dtype=np.float64)
    squeeze = v.ndim == 1
    v2 = v[:, None] if squeeze else v
    layer, n_layers = _check_layer(layer, n_layers, v2.shape[0])
    onehot = np.zeros((n_layers, v2.shape[0]))
    onehot[layer, np.arange(v2.shape[0])] = 1.0
    finite = np.isfinite(v2)
    total = onehot @ np.where(finite, v2, 0.0)
    count = onehot @ finite.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(count > 0, total / count, np.nan)
    return out[:, 0] if squeeze else out


def _quad_coef(y: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Coefficient of depth^2 of a least-squares quadratic per column of ``y [L, B]`` over the
    layers with a finite value (NaN with fewer than 3 such layers)."""
    out = np.full(y.shape[1], np.nan)
    finite = np.isfinite(y)
    patterns, inverse = np.unique(finite.T, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    for k, pat in enumerate(patterns):
        if pat.sum() < 3:
            continue
        d = depth[pat]
        x = np.stack([np.ones_like(d), d, d * d], axis=1)
        cols = inverse == k
        out[cols] = (np.linalg.pinv(x) @ y[np.ix_(pat, cols)])[2]
    return out


def inverted_u_score(syn_red, layer, n_layers: int) -> dict:
    """Two scores of an inverted-U layer profile (middle layers most synergistic).

    Parameters
    ----------
    syn_red : array_like, float, shape [H] or [H, B]
        Per-head ``syn_red`` (unitless, [0, 1]); NaN heads are skipped.
    layer : array_like, int, shape [H]
        Layer of each head, in ``[0, n_layers)``.
    n_layers : int
        Number of layers L.

    Returns
    -------
    dict
        ``mid_minus_outer`` : float or [B]
            Mean ``syn_red`` of the heads in the middle third of the layers minus the mean of
            the heads in the outer thirds (head-weighted means). The middle third is the closed
            interval ``depth in [1/3, 2/3]`` of normalised depth ``l / (L - 1)``; every other
            layer is outer. E.g. L = 16: layers 5-10 middle (6 layers), 0-4 and 11-15 outer;
            L = 12: layers 4-7; L = 4: layers 1-2; L = 3: layer 1. For L <= 2 no layer is in
            the middle and the score is NaN. Positive = inverted U.
        ``quad_coef`` : float or [B]
            Coefficient of ``depth^2`` of the least-squares quadratic ``a + b d + c d^2``
            fitted to the per-layer mean ``syn_red`` over normalised depth (layers with no
            finite value are left out; NaN with fewer than 3 layers). Negative = inverted U;
            a profile rising from 0 at both ends to 1 at the middle gives about -4.
        ``layer_mean`` : [L] or [L, B]
            Per-layer mean ``syn_red``.
        ``depth`` : [L]
            Normalised depth of each layer.
    """
    v = np.asarray(syn_red, dtype=np.float64)
    squeeze = v.ndim == 1
    v2 = v[:, None] if squeeze else v
    if v2.ndim != 2:
        raise ValueError(f"syn_red must be [H] or [H, B], got shape {v.shape}")
    layer, n_layers = _check_layer(layer, n_layers, v2.shape[0])
    depth = layer_depth(n_layers)
    lm = layer_means(v2, layer, n_layers)
    head_depth = depth[layer]
    middle = (head_depth >= MIDDLE_THIRD[0] - _DEPTH_TOL) & (head_depth <= MIDDLE_THIRD[1] + _DEPTH_TOL)
    with _quiet():
        mid = np.nanmean(v2[middle], axis=0) if middle.any() else np.full(v2.shape[1], np.nan)
        outer = np.nanmean(v2[~middle], axis=0) if (~middle).any() else np.full(v2.shape[1], np.nan)
    mmo = mid - outer
    quad = _quad_coef(lm, depth)
    if squeeze:
        return {"mid_minus_outer": float(mmo[0]), "quad_coef": float(quad[0]),
                "layer_mean": lm[:, 0], "depth": depth}
    return {"mid_minus_outer": mmo, "quad_coef": quad, "layer_mean": lm, "depth": depth}


# --------------------------------------------------------------------------------------
# 3. Bootstrap of the layer profile
# --------------------------------------------------------------------------------------
def bootstrap_profile(per_prompt_sts, per_prompt_rtr, pairs, layer, n_layers: int,
                      n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """Bootstrap over prompts of the inverted-U scores and the per-layer mean ``syn_red``.

    Each resample draws the prompts with replacement; ``syn_red`` is recomputed from scratch
    (pair means, head means, ranks) with the drawn multiplicities as prompt weights.

    Parameters
    ----------
    per_prompt_sts, per_prompt_rtr : array_like, float, shape [P, prompts]
        Per-prompt atoms (nats), NaN for degenerate cells.
    pairs : array_like, int, shape [P, 2]
    layer : array_like, int, shape [H]
        Layer of each head (H = number of heads = ``len(layer)``).
    n_layers : int
    n_boot : int, default 1000
    seed : int, default 0
        Seed of ``np.random.default_rng``.
    ci : float, default 0.95
        Coverage of the percentile intervals.

    Notes
    -----
    ``syn_red`` is a rank statistic. A resample's head means carry the sampling noise twice
    (once from the data, once from the resampling), so when the layer structure is weak the
    bootstrap distribution is pulled towards a flat profile and is narrower than the true
    sampling distribution (pure noise, 8 x 4 heads, 30 prompts: bootstrap sd about 0.67 of
    the true sd, centre shrunk by a similar factor); the two effects roughly cancel for the
    question "does the CI include 0" (measured coverage of 0 under no structure: 55-56 of
    60 data sets). With strong structure ranks are stable and the interval behaves
    normally. Compare ``boot_mean`` with ``estimate`` to see the shrinkage.

    Returns
    -------
    dict
        ``scores`` : DataFrame, one row per score (``mid_minus_outer``, ``quad_coef``) with
        ``estimate`` (all prompts), ``ci_low``, ``ci_high``, ``boot_mean``, ``boot_se`` (sd of
        the resamples) and ``n_valid`` (finite resamples).
        ``layers`` : DataFrame, one row per layer: ``layer``, ``depth``, ``syn_red_mean``
        (estimate), ``ci_low``, ``ci_high``, ``boot_mean``, ``boot_se``, ``n_valid``.
        ``syn_red`` : [H] estimate; ``samples`` : dict of the resampled ``mid_minus_outer``
        [n_boot], ``quad_coef`` [n_boot], ``layer_mean`` [L, n_boot];
        ``n_boot``, ``seed``, ``ci``.
    """
    layer, n_layers = _check_layer(layer, n_layers)
    n_prompts = np.shape(per_prompt_sts)[1]
    rng = np.random.default_rng(seed)
    w = np.concatenate([np.ones((n_prompts, 1)), bootstrap_weights(n_prompts, int(n_boot), rng)],
                       axis=1)
    sr = syn_red_from_prompt_weights(per_prompt_sts, per_prompt_rtr, pairs, len(layer), w)
    sc = inverted_u_score(sr, layer, n_layers)
    rows = [dict(score=name, estimate=sc[name][0], **percentile_ci(sc[name][1:], ci))
            for name in ("mid_minus_outer", "quad_coef")]
    layers = pd.DataFrame({"layer": np.arange(n_layers), "depth": sc["depth"],
                           "syn_red_mean": sc["layer_mean"][:, 0],
                           **percentile_ci(sc["layer_mean"][:, 1:], ci, axis=1)})
    return {"scores": pd.DataFrame(rows), "layers": layers, "syn_red": sr[:, 0],
            "samples": {"mid_minus_outer": sc["mid_minus_outer"][1:],
                        "quad_coef": sc["quad_coef"][1:], "layer_mean": sc["layer_mean"][:, 1:]},
            "n_boot": int(n_boot), "seed": seed, "ci": ci}


# --------------------------------------------------------------------------------------
# 4. Split-half reliability
# --------------------------------------------------------------------------------------
def _spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of ``a[:, k]`` with ``b[:, k]`` over rows finite in both, [K]."""
    out = np.full(a.shape[1], np.nan)
    for k in range(a.shape[1]):
        ok = np.isfinite(a[:, k]) & np.isfinite(b[:, k])
        if ok.sum() < 3:
            continue
        x, y = a[ok, k], b[ok, k]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        out[k] = sps.spearmanr(x, y).statistic
    return out


def split_half_reliability(per_prompt_sts, per_prompt_rtr, pairs, n_total_heads: int,
                           n_splits: int = 100, seed: int = 0) -> dict:
    """Agreement of ``syn_red`` computed on two disjoint halves of the prompts.

    Each split is a random permutation of the prompts; the first ``prompts // 2`` form half A,
    the next ``prompts // 2`` half B (with an odd number of prompts the last one of the
    permutation is left out, so both halves have equal size). ``syn_red`` is computed on each
    half (weights 0/1) and the two are compared by Spearman correlation over the heads finite
    in both.

    Parameters
    ----------
    per_prompt_sts, per_prompt_rtr : array_like, float, shape [P, prompts]
    pairs : array_like, int, shape [P, 2]
    n_total_heads : int
    n_splits : int, default 100
    seed : int, default 0

    Returns
    -------
    dict
        ``mean``, ``sd`` : mean and standard deviation (ddof=1) of the split correlations
        (NaN splits skipped); ``spearman_brown`` : ``2 r / (1 + r)`` of the mean, the
        reliability projected to the full prompt set; ``correlations`` : [n_splits];
        ``n_valid`` : finite splits; ``half_size`` : prompts per half.
    """
    n_prompts = np.shape(per_prompt_sts)[1]
    half = n_prompts // 2
    if half < 1:
        raise ValueError(f"need at least 2 prompts for a split, got {n_prompts}")
    rng = np.random.default_rng(seed)
    w = np.zeros((n_prompts, 2 * n_splits))
    for s in range(n_splits):
        perm = rng.permutation(n_prompts)
        w[perm[:half], 2 * s] = 1.0
        w[perm[half:2 * half], 2 * s + 1] = 1.0
    sr = syn_red_from_prompt_weights(per_prompt_sts, per_prompt_rtr, pairs, n_total_heads, w)
    r = _spearman_columns(sr[:, 0::2], sr[:, 1::2])
    with _quiet():
        mean = float(np.nanmean(r))
        sd = float(np.nanstd(r, ddof=1))
    return {"mean": mean, "sd": sd, "spearman_brown": 2 * mean / (1 + mean),
            "correlations": r, "n_valid": int(np.isfinite(r).sum()), "half_size": half}


# --------------------------------------------------------------------------------------
# 5. Circular-shift surrogate null
# --------------------------------------------------------------------------------------
def circular_shift_surrogate(acts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One surrogate of ``acts [prompts, heads, steps]``: every (prompt, head) series rotated
    by its own offset drawn uniformly from ``0 .. steps - 1`` (``np.roll`` semantics)."""
    n, h, t = acts.shape
    shift = rng.integers(0, t, size=(n, h, 1))
    idx = (np.arange(t)[None, None, :] - shift) % t
    return np.take_along_axis(acts, idx, axis=2)


def surrogate_null(acts, layer, n_layers: int, tau: int = 1, n_surrogates: int = 100,
                   seed: int = 0) -> dict:
    """Null distribution of the inverted-U scores under circularly shifted head series.

    Each surrogate rotates every head's series of every prompt by an independent uniform
    random offset. This keeps each series' values and (up to the one wrap-around join) its
    autocorrelation, hence each head's own predictability, but destroys the timing between
    heads. PhiID is recomputed (``phiid_all_pairs``, per-prompt aggregation), then
    ``syn_red`` (all prompts) and the scores of :func:`inverted_u_score`.

    The test asks whether the layer profile needs cross-head temporal coupling: if the real
    score is no more extreme than the surrogates', the profile can be explained by per-head
    properties (e.g. autocorrelation differing with depth) alone.

    Parameters
    ----------
    acts : array_like, float, shape [prompts, heads, steps]
        Head time series, heads layer-major.
    layer : array_like, int, shape [heads]
    n_layers : int
    tau : int, default 1
        PhiID lag (steps).
    n_surrogates : int, default 100
    seed : int, default 0

    Returns
    -------
    dict
        ``real`` : dict of the real ``mid_minus_outer`` and ``quad_coef``;
        ``null`` : dict of the surrogate scores, each [n_surrogates] (NaN where undefined);
        ``null_layer_mean`` : [L, n_surrogates];
        ``p_value`` : dict of one-sided p-values ``(1 + k) / (1 + n)`` where n counts the finite
        surrogate scores and k those at least as extreme *in the inverted-U direction*:
        ``null >= real`` for ``mid_minus_outer``, ``null <= real`` for ``quad_coef``
        (negative = inverted U). Values lie in (0, 1]; NaN if the real score is NaN.
    """
    from .phiid.all_pairs import phiid_all_pairs

    acts = np.asarray(acts)
    if acts.ndim != 3:
        raise ValueError(f"acts must be [prompts, heads, steps], got shape {acts.shape}")
    layer, n_layers = _check_layer(layer, n_layers, acts.shape[1])
    h = acts.shape[1]
    rng = np.random.default_rng(seed)

    def scores(a):
        res = phiid_all_pairs(a, tau)
        ones = np.ones(res.per_prompt_sts.shape[1])
        sr = syn_red_from_prompt_weights(res.per_prompt_sts, res.per_prompt_rtr, res.pairs, h, ones)
        return inverted_u_score(sr, layer, n_layers)

    real = scores(acts)
    null = {"mid_minus_outer": np.full(n_surrogates, np.nan), "quad_coef": np.full(n_surrogates, np.nan)}
    null_lm = np.full((n_layers, n_surrogates), np.nan)
    for s in range(n_surrogates):
        sc = scores(circular_shift_surrogate(acts, rng))
        null["mid_minus_outer"][s] = sc["mid_minus_outer"]
        null["quad_coef"][s] = sc["quad_coef"]
        null_lm[:, s] = sc["layer_mean"]
    p = {}
    for name, sign in (("mid_minus_outer", 1.0), ("quad_coef", -1.0)):
        r = real[name]
        z = null[name][np.isfinite(null[name])]
        p[name] = float((1 + np.sum(sign * z >= sign * r)) / (1 + z.size)) if np.isfinite(r) else np.nan
    return {"real": {k: real[k] for k in ("mid_minus_outer", "quad_coef")},
            "real_layer_mean": real["layer_mean"], "null": null, "null_layer_mean": null_lm,
            "p_value": p, "n_surrogates": int(n_surrogates), "seed": seed, "tau": tau}


# --------------------------------------------------------------------------------------
# 7. Per-category layer profiles
# --------------------------------------------------------------------------------------
def category_profiles(per_prompt_sts, per_prompt_rtr, pairs, categories, layer,
                      n_layers: int) -> pd.DataFrame:
    """Layer profile of ``syn_red`` computed separately on each prompt category.

    For each category, ``syn_red`` is recomputed from that category's prompts only (weights
    0/1, ranks within the category), then averaged per layer.

    Parameters
    ----------
    per_prompt_sts, per_prompt_rtr : array_like, float, shape [P, prompts]
    pairs : array_like, int, shape [P, 2]
    categories : array_like, shape [prompts]
        Category label of each prompt.
    layer : array_like, int, shape [H]
    n_layers : int

    Returns
    -------
    DataFrame
        Columns ``category`` (in order of first appearance), ``layer``, ``depth``,
        ``syn_red_mean`` (unitless), ``n_prompts``; ``n_categories x L`` rows.
    """
    layer, n_layers = _check_layer(layer, n_layers)
    cats = np.asarray(categories)
    if cats.shape != (np.shape(per_prompt_sts)[1],):
        raise ValueError(f"categories must be [prompts], got shape {cats.shape}")
    codes, names = pd.factorize(cats, sort=False)
    w = np.zeros((len(cats), len(names)))
    w[np.arange(len(cats)), codes] = 1.0
    sr = syn_red_from_prompt_weights(per_prompt_sts, per_prompt_rtr, pairs, len(layer), w)
    lm = layer_means(sr, layer, n_layers)   # [L, C]
    depth = layer_depth(n_layers)
    return pd.DataFrame({
        "category": np.repeat(np.asarray(names, dtype=object), n_layers),
        "layer": np.tile(np.arange(n_layers), len(names)),
        "depth": np.tile(depth, len(names)),
        "syn_red_mean": lm.T.ravel(),
        "n_prompts": np.repeat(w.sum(axis=0).astype(int), n_layers),
    })

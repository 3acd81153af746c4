"""Uncertainty and null models for the head ranking and the layer profile.

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
* the three per-head *quantities* profiled (:data:`QUANTITIES`) are ``syn_red`` and the
  normalised ranks ``synergy`` = ``(synergy_rank - 1) / (n - 1)`` and ``redundancy`` =
  ``(redundancy_rank - 1) / (n - 1)`` (``n`` heads ranked; all in [0, 1], 1 = highest). The
  rank difference can hide a core whose heads are more synergistic *and* more redundant than
  the rest (both ranks rise, the difference does not), so the ranks are profiled on their own;
* normalised depth of layer ``l`` is ``l / (L - 1)`` (0 when ``L == 1``).

What each output means and how it was calibrated (``tests/calib_profile.py``; run it as a
script for the numbers at larger sizes):

* :func:`bootstrap_profile` -- percentile intervals over prompts: *descriptive* (how much the
  profile moves with the prompt sample), not the verdict's test; see its notes for the measured
  rate at which they exclude 0 without any layer structure;
* :func:`layer_permutation_test` -- the verdict's test that a profile is an inverted U in
  depth: whole layers are permuted over depth (null: the layers' values are exchangeable across
  depth, i.e. unrelated to depth, whatever the heads of one layer share); exact by construction;
* :func:`surrogate_null` -- whether the profile needs cross-head *timing*: trimmed non-circular
  shifts of every (prompt, head) series (keeps each series' autocorrelation, destroys timing
  between heads);
* :func:`split_half_reliability` -- Spearman-Brown reliability of the head ranking.

Percentile intervals use ``np.nanpercentile`` over the resamples that gave a finite value;
``n_valid`` columns say how many did. One-sided p-values are ``(1 + k) / (1 + n)`` with ``k``
the null draws at least as extreme *in the inverted-U direction* (``mid_minus_outer`` large,
``quad_coef`` small), resolution ``1 / (1 + n)``.

``seed`` arguments accept anything :func:`numpy.random.default_rng` does (an int, or a child
:class:`numpy.random.SeedSequence`, which is what the stats stage passes: one independent child
stream per analysis).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats as sps

from .ranking import (
    QUANTITIES,
    head_quantities_from_prompt_weights,
    layer_depth,
    syn_red_from_prompt_weights,
)
from .resample import bootstrap_weights, percentile_ci

__all__ = [
    "MIDDLE_THIRD",
    "QUANTITIES",
    "SCORES",
    "DEFAULT_SURROGATE_TRIM",
    "DEFAULT_N_LAYER_PERM",
    "head_quantities_from_prompt_weights",
    "syn_red_from_prompt_weights",
    "layer_means",
    "inverted_u_score",
    "one_sided_p",
    "middle_layers",
    "bootstrap_profile",
    "layer_permutation_test",
    "split_half_reliability",
    "trim_steps",
    "aligned_window",
    "trimmed_shift_surrogate",
    "surrogate_null",
    "category_profiles",
]

#: Closed interval of normalised depth that counts as the middle third of the layers.
MIDDLE_THIRD: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0)
#: Inverted-U scores and the sign that makes "more inverted U" larger.
SCORES: tuple[str, ...] = ("mid_minus_outer", "quad_coef")
_DIRECTION = {"mid_minus_outer": 1.0, "quad_coef": -1.0}
#: Fraction of the steps trimmed by the shift surrogate (shift range ``0 .. D``, window ``T - D``).
DEFAULT_SURROGATE_TRIM: float = 0.4
#: Layer permutations of the verdict's test (p-value resolution 1e-4).
DEFAULT_N_LAYER_PERM: int = 9999

# Tolerance on the third boundaries, so that depths like 5/15 count as exactly 1/3.
_DEPTH_TOL = 1e-9



# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
@contextmanager
def _quiet():
    """Context silencing the RuntimeWarnings of all-NaN reductions and 0/0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


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
# 1. Head quantities under prompt weights
# --------------------------------------------------------------------------------------
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


def middle_layers(n_layers: int) -> np.ndarray:
    """Boolean [L]: layer in the middle third (closed interval of normalised depth)."""
    depth = layer_depth(n_layers)
    return (depth >= MIDDLE_THIRD[0] - _DEPTH_TOL) & (depth <= MIDDLE_THIRD[1] + _DEPTH_TOL)


def inverted_u_score(syn_red, layer, n_layers: int) -> dict:
    """Two scores of an inverted-U layer profile (middle layers highest).

    Applies to any per-head quantity (``syn_red``, or the normalised synergy / redundancy rank).

    Parameters
    ----------
    syn_red : array_like, float, shape [H] or [H, B]
        Per-head values (unitless, [0, 1]); NaN heads are skipped.
    layer : array_like, int, shape [H]
        Layer of each head, in ``[0, n_layers)``.
    n_layers : int
        Number of layers L.

    Returns
    -------
    dict
        ``mid_minus_outer`` : float or [B]
            Mean value of the heads in the middle third of the layers minus the mean of
            the heads in the outer thirds (head-weighted means). The middle third is the closed
            interval ``depth in [1/3, 2/3]`` of normalised depth ``l / (L - 1)``; every other
            layer is outer. E.g. L = 16: layers 5-10 middle (6 layers), 0-4 and 11-15 outer;
            L = 12: layers 4-7; L = 4: layers 1-2; L = 3: layer 1. For L <= 2 no layer is in
            the middle and the score is NaN. Positive = inverted U.
        ``quad_coef`` : float or [B]
            Coefficient of ``depth^2`` of the least-squares quadratic ``a + b d + c d^2``
            fitted to the per-layer mean over normalised depth (layers with no finite value are
            left out; NaN with fewer than 3 layers). Negative = inverted U; a profile rising
            from 0 at both ends to 1 at the middle gives about -4.
        ``layer_mean`` : [L] or [L, B]
            Per-layer mean.
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
    middle = middle_layers(n_layers)[layer]
    with _quiet():
        mid = np.nanmean(v2[middle], axis=0) if middle.any() else np.full(v2.shape[1], np.nan)
        outer = np.nanmean(v2[~middle], axis=0) if (~middle).any() else np.full(v2.shape[1], np.nan)
    mmo = mid - outer
    quad = _quad_coef(lm, depth)
    if squeeze:
        return {"mid_minus_outer": float(mmo[0]), "quad_coef": float(quad[0]),
                "layer_mean": lm[:, 0], "depth": depth}
    return {"mid_minus_outer": mmo, "quad_coef": quad, "layer_mean": lm, "depth": depth}


def one_sided_p(real: float, null, score: str) -> float:
    """``(1 + k) / (1 + n)``: ``n`` finite null draws, ``k`` of them at least as extreme as
    ``real`` in the inverted-U direction (``>=`` for ``mid_minus_outer``, ``<=`` for
    ``quad_coef``). NaN if ``real`` is NaN.

    A draw within ``1e-9 * max(1, |real|)`` of ``real`` counts as a tie: the null scores are computed by
    another summation path than the real one, so an arrangement equal to the real one differs
    from it by rounding, and counting it as less extreme pushed p below its floor (with few
    layers, where most draws tie)."""
    sign = _DIRECTION[score]
    z = np.asarray(null, dtype=np.float64)
    z = z[np.isfinite(z)]
    if not np.isfinite(real):
        return np.nan
    tol = 1e-9 * max(1.0, abs(real))
    return float((1 + np.sum(sign * z >= sign * real - tol)) / (1 + z.size))


# --------------------------------------------------------------------------------------
# 3. Bootstrap of the layer profile (descriptive)
# --------------------------------------------------------------------------------------
def bootstrap_profile(per_prompt_sts, per_prompt_rtr, pairs, layer, n_layers: int,
                      n_boot: int = 1000, seed=0, ci: float = 0.95) -> dict:
    """Bootstrap over prompts of the inverted-U scores and per-layer means of every quantity.

    Each resample draws the prompts with replacement; the quantities (:data:`QUANTITIES`) are
    recomputed from scratch (pair means, head means, ranks) with the drawn multiplicities as
    prompt weights. The same resamples serve all three quantities.

    Parameters
    ----------
    per_prompt_sts, per_prompt_rtr : array_like, float, shape [P, prompts]
        Per-prompt atoms (nats), NaN for degenerate cells.
    pairs : array_like, int, shape [P, 2]
    layer : array_like, int, shape [H]
        Layer of each head (H = number of heads = ``len(layer)``).
    n_layers : int
    n_boot : int, default 1000
    seed : int or SeedSequence, default 0
        Seed of ``np.random.default_rng``.
    ci : float, default 0.95
        Coverage of the percentile intervals.

    Notes
    -----
    The interval is *descriptive*: it shows how far a score moves when the prompt sample
    changes, the model held fixed. It is not the test of an inverted U in depth
    (:func:`layer_permutation_test` is), for two reasons. (1) The quantities are rank
    statistics: a resample's head means carry the sampling noise twice (once from the data,
    once from the resampling), so when the layer structure is weak the bootstrap distribution
    is pulled towards a flat profile and is narrower than the true sampling distribution (pure
    noise, 8 x 4 heads, 30 prompts: bootstrap sd about 0.67 of the true sd, centre shrunk by a
    similar factor). (2) It treats the heads of the model as fixed, so layer effects that are
    real but unrelated to depth count as "structure". Measured (``tests/calib_profile.py``,
    :func:`calib_profile.bootstrap_ci_rates`, 400 data sets per size, 200 resamples, 95%
    intervals, exact binomial 95% intervals in brackets):

    * heads exchangeable across layers (no layer structure; atoms pure noise), 8 x 4 heads /
      30 prompts: the two-sided interval excludes 0 in 4.8-7.5% of data sets over the six
      quantity x score rows (e.g. ``syn_red`` ``quad_coef`` 7.5% [5.1, 10.5],
      ``mid_minus_outer`` 6.2% [4.1, 9.1]); 6 x 3 heads / 12 prompts: 6.2-7.7%. One-sided in the
      inverted-U direction (nominal 2.5%): 1.8-3.3% and 3.0-4.3%. 16 x 8 heads / 60 prompts
      (200 data sets): two-sided 4.5-8.0%, one-sided 2.0-4.0%. So the false-positive rate of
      "interval excludes 0" is above its nominal 5% by up to about 3 points;
    * random layer effects unrelated to depth (sd 0.5, same sizes): 79-96% of intervals
      exclude 0 -- correct for the fixed model, meaningless as evidence of a depth profile;
    * ``layers``: a layer's interval misses the null value 0.5 (heads exchangeable) in
      4.0-5.6% of layers at 8 x 4 / 30, 4.6-8.4% at 6 x 3 / 12 and 4.5-6.3% at 16 x 8 / 60.

    With strong structure ranks are stable and the interval behaves normally. Compare
    ``boot_mean`` with ``estimate`` to see the shrinkage.

    Returns
    -------
    dict
        ``scores`` : DataFrame, one row per quantity and score (``mid_minus_outer``,
        ``quad_coef``): ``quantity``, ``score``, ``estimate`` (all prompts), ``ci_low``,
        ``ci_high``, ``boot_mean``, ``boot_se`` (sd of the resamples), ``n_valid`` (finite
        resamples).
        ``layers`` : DataFrame, one row per quantity and layer: ``quantity``, ``layer``,
        ``depth``, ``estimate`` (the layer mean), ``ci_low``, ``ci_high``, ``boot_mean``,
        ``boot_se``, ``n_valid``.
        ``values`` : dict quantity -> [H] estimate; ``syn_red`` : [H] (= ``values["syn_red"]``);
        ``samples`` : dict quantity -> dict of the resampled ``mid_minus_outer`` [n_boot],
        ``quad_coef`` [n_boot], ``layer_mean`` [L, n_boot]; ``n_boot``, ``seed``, ``ci``.
    """
    layer, n_layers = _check_layer(layer, n_layers)
    n_prompts = np.shape(per_prompt_sts)[1]
    rng = np.random.default_rng(seed)
    w = np.concatenate([np.ones((n_prompts, 1)), bootstrap_weights(n_prompts, int(n_boot), rng)],
                       axis=1)
    quantities = head_quantities_from_prompt_weights(per_prompt_sts, per_prompt_rtr, pairs, len(layer), w)
    rows, layer_rows, samples, values = [], [], {}, {}
    for q, v in quantities.items():
        sc = inverted_u_score(v, layer, n_layers)
        rows += [dict(quantity=q, score=name, estimate=sc[name][0], **percentile_ci(sc[name][1:], ci))
                 for name in SCORES]
        layer_rows.append(pd.DataFrame({"quantity": q, "layer": np.arange(n_layers), "depth": sc["depth"],
                                        "estimate": sc["layer_mean"][:, 0],
                                        **percentile_ci(sc["layer_mean"][:, 1:], ci, axis=1)}))
        samples[q] = {"mid_minus_outer": sc["mid_minus_outer"][1:], "quad_coef": sc["quad_coef"][1:],
                      "layer_mean": sc["layer_mean"][:, 1:]}
        values[q] = v[:, 0]
    return {"scores": pd.DataFrame(rows), "layers": pd.concat(layer_rows, ignore_index=True),
            "values": values, "syn_red": values["syn_red"], "samples": samples,
            "n_boot": int(n_boot), "seed": seed, "ci": ci}


# --------------------------------------------------------------------------------------
# 4. Layer-permutation test (the verdict's test of an inverted U in depth)
# --------------------------------------------------------------------------------------
def layer_permutation_test(values, layer, n_layers: int, n_perm: int = DEFAULT_N_LAYER_PERM, seed=0,
                           unit: str = "layer") -> dict:
    """One-sided permutation p-values of the inverted-U scores of one per-head quantity.

    ``unit="layer"`` (the default, the verdict's test): each permutation moves *whole layers* to
    random depths (a uniform random permutation of the L layer positions; the heads of a layer
    stay together). Null: the layers' values are exchangeable across depth -- the quantity is
    unrelated to depth -- while heads of one layer may share anything (a layer effect, shared
    residual-stream input). Exact under that null for any number of permutations: P(p <= a)
    <= a. For L layers there are L! arrangements and only ``C(L, m)`` distinct middle sets
    (m middle layers), so small models cannot reach small p (L = 4: p >= 1/6 for
    ``mid_minus_outer``).

    ``unit="head"``: each permutation reassigns the layer labels of individual heads. Null:
    heads exchangeable across layers (no layer structure at all). More permutations are
    distinct, but when heads of a layer share a layer effect unrelated to depth it rejects far
    too often, so it is not used for the verdict.

    Measured (``tests/calib_profile.py``, :func:`calib_profile.layer_perm_rates`, 1,000 data
    sets per null and size, 199 permutations, alpha 0.05): whole layers, every quantity and
    score, heads exchangeable or random layer effects (sd 0.5) unrelated to depth, 12 x 2 heads /
    12 prompts and 16 x 8 heads / 60 prompts: false-positive rate 3.7-6.2%, every exact binomial
    interval containing 5%. Head labels: 4.1-6.3% with exchangeable heads, but 12-14% (12 x 2)
    and 28-31% (16 x 8) with layer effects. Power (whole layers, planted inverted U of 0.2 per
    head in synergy and the opposite in redundancy): ``syn_red`` 95% / 100%
    (``mid_minus_outer`` / ``quad_coef``) at 12 x 2, 100% at 16 x 8; the same inverted U in
    synergy *and* redundancy: ``syn_red`` 0-2%, ``synergy`` 82% / 99% and 100% / 100%.

    Parameters
    ----------
    values : array_like, float, shape [H]
        Per-head quantity (NaN heads skipped, as in :func:`inverted_u_score`).
    layer : array_like, int, shape [H]
    n_layers : int
    n_perm : int, default :data:`DEFAULT_N_LAYER_PERM`
    seed : int or SeedSequence, default 0
    unit : {"layer", "head"}

    Returns
    -------
    dict
        ``real`` : dict score -> value; ``null`` : dict score -> [n_perm]; ``p_value`` : dict
        score -> one-sided p (:func:`one_sided_p`, resolution ``1 / (1 + n_perm)``);
        ``n_perm``, ``unit``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be [H], got shape {v.shape}")
    layer, n_layers = _check_layer(layer, n_layers, v.shape[0])
    n_perm = int(n_perm)
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    rng = np.random.default_rng(seed)
    real = inverted_u_score(v, layer, n_layers)
    if unit == "head":
        perms = np.argsort(rng.random((n_perm, v.shape[0])), axis=1)
        sc = inverted_u_score(v[perms.T], layer, n_layers)
        null = {s: sc[s] for s in SCORES}
    elif unit == "layer":
        # pos[b, l]: depth position that original layer l takes in permutation b
        pos = np.argsort(rng.random((n_perm, n_layers)), axis=1)
        finite = np.isfinite(v)
        total = np.bincount(layer[finite], weights=v[finite], minlength=n_layers)
        count = np.bincount(layer[finite], minlength=n_layers).astype(np.float64)
        in_mid = middle_layers(n_layers)[pos].astype(np.float64)          # [n_perm, L]
        with np.errstate(divide="ignore", invalid="ignore"):
            mid = (in_mid @ total) / (in_mid @ count)
            outer = ((1 - in_mid) @ total) / ((1 - in_mid) @ count)
            lm = np.where(count > 0, total / count, np.nan)
        permuted = np.empty((n_layers, n_perm))
        permuted[pos.T, np.arange(n_perm)[None, :]] = lm[:, None]
        null = {"mid_minus_outer": mid - outer, "quad_coef": _quad_coef(permuted, layer_depth(n_layers))}
    else:
        raise ValueError(f"unit must be 'layer' or 'head', got {unit!r}")
    return {"real": {s: real[s] for s in SCORES}, "null": null,
            "p_value": {s: one_sided_p(real[s], null[s], s) for s in SCORES},
            "n_perm": n_perm, "unit": unit}


def permutation_interval(estimate: float, null, ci: float = 0.95) -> tuple[float, float]:
    """``estimate -+ q``, ``q`` the ``ci`` quantile of ``|null|`` (a permutation null centred on
    0, such as :func:`layer_permutation_test`'s for both scores: a random arrangement of the
    layers has expected score 0).

    The interval of a shift model whose spread is the permutation null's: it contains the
    estimate by construction and excludes 0 exactly when ``|estimate|`` exceeds that quantile,
    i.e. when the two-sided permutation test rejects at ``1 - ci``, so it inherits the test's
    calibration (measured in ``tests/calib_profile.py``, :func:`calib_profile.perm_interval_rates`).
    The summary reports it; the prompt-bootstrap percentile interval, which excluded 0 in 5-8% of
    data sets without layer structure, stays in ``profile_scores.tsv`` as ``boot_ci_low`` /
    ``boot_ci_high``, descriptive.
    """
    z = np.abs(np.asarray(null, dtype=np.float64))
    z = z[np.isfinite(z)]
    if not np.isfinite(estimate) or z.size == 0:
        return np.nan, np.nan
    q = float(np.quantile(z, ci))
    return float(estimate) - q, float(estimate) + q


# --------------------------------------------------------------------------------------
# 5. Split-half reliability
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
                           n_splits: int = 100, seed=0) -> dict:
    """Reliability of the ``syn_red`` head ranking from two disjoint halves of the prompts.

    Each split is a random permutation of the prompts; the first ``prompts // 2`` form half A,
    the next ``prompts // 2`` half B (with an odd number of prompts the last one of the
    permutation is left out, so both halves have equal size). ``syn_red`` is computed on each
    half (weights 0/1) and the two are compared by Spearman correlation over the heads finite
    in both. The half-sample correlation ``r`` describes rankings from *half* the prompts; the
    reliability of the ranking from *all* prompts is its Spearman-Brown projection
    ``2 r / (1 + r)`` (of the mean ``r`` over splits).

    Parameters
    ----------
    per_prompt_sts, per_prompt_rtr : array_like, float, shape [P, prompts]
    pairs : array_like, int, shape [P, 2]
    n_total_heads : int
    n_splits : int, default 100
    seed : int or SeedSequence, default 0

    Returns
    -------
    dict
        ``reliability`` : Spearman-Brown ``2 r / (1 + r)`` of the mean half-sample ``r`` (NaN if
        ``r <= -1`` or undefined); ``half_sample_r`` : mean half-sample Spearman ``r`` (NaN
        splits skipped); ``half_sample_r_sd`` : its sd (ddof=1) over splits;
        ``spearman_brown`` (= ``reliability``), ``mean`` (= ``half_sample_r``) and ``sd``
        (= ``half_sample_r_sd``) : older names; ``correlations`` : [n_splits];
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
    sb = 2 * mean / (1 + mean) if mean > -1 else np.nan
    return {"reliability": sb, "half_sample_r": mean, "half_sample_r_sd": sd,
            "spearman_brown": sb, "mean": mean, "sd": sd,
            "correlations": r, "n_valid": int(np.isfinite(r).sum()), "half_size": half}


# --------------------------------------------------------------------------------------
# 6. Trimmed-shift surrogate null (cross-head timing)
# --------------------------------------------------------------------------------------
def trim_steps(n_steps: int, trim: float, tau: int = 1) -> int:
    """Shift half-range ``D = max(1, floor(trim * T / 2 + 0.5))`` of :func:`surrogate_null` for
    ``T`` steps (window ``T - 2 D``; T = 100, trim 0.4: D = 20, window 60); raises if the window
    leaves fewer than the kernel's minimum samples at lag ``tau``."""
    from .phiid.kernel import MIN_SAMPLES

    if not 0 < trim < 1:
        raise ValueError(f"trim must lie in (0, 1), got {trim}")
    d = max(1, int(np.floor(trim * n_steps / 2 + 0.5)))
    if n_steps - 2 * d - tau < MIN_SAMPLES:
        raise ValueError(f"{n_steps} steps trimmed by 2 x {d} leave a window of {n_steps - 2 * d} steps, "
                         f"too short for PhiID at tau={tau} (need window - tau >= {MIN_SAMPLES})")
    return d


def _windows(acts: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
    idx = offsets[..., None] + np.arange(length)
    return np.take_along_axis(acts, idx, axis=2)


def aligned_window(acts: np.ndarray, d: int) -> np.ndarray:
    """The real data of the shift test: every series cut to steps ``d .. T - d - 1`` (all heads
    at the same offset, so their timing is intact)."""
    return acts[:, :, d:acts.shape[2] - d]


def trimmed_shift_surrogate(acts: np.ndarray, d: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One surrogate of ``acts [prompts, heads, steps]`` for :func:`surrogate_null`: every
    (prompt, head) series replaced by its window of ``T - 2 d`` steps starting at
    ``d + b - base``, with ``b`` uniform on ``0 .. d`` drawn independently per series and
    surrogate, and ``base [prompts, heads]`` (uniform on ``0 .. d``) fixed across the surrogates
    of one test.

    No wrap-around: every window is a contiguous stretch of its series, so its autocorrelation
    is the series' own."""
    n, h, t = acts.shape
    return _windows(acts, d + rng.integers(0, d + 1, size=(n, h)) - base, t - 2 * d)


def surrogate_null(acts, layer, n_layers: int, tau: int = 1, n_surrogates: int = 100,
                   seed=0, trim: float = DEFAULT_SURROGATE_TRIM) -> dict:
    """Null distribution of the inverted-U scores under trimmed non-circular shifts.

    Test of whether a layer profile needs cross-head temporal coupling: if the real score is no
    more extreme than the surrogates', it can be explained by per-head properties (e.g.
    autocorrelation differing with depth) alone.

    With ``D = trim_steps(T, trim, tau)`` and window length ``W = T - 2 D``:

    * real statistic: PhiID (``phiid_all_pairs``, per-prompt aggregation) of the *aligned*
      windows, every series cut to steps ``D .. D + W - 1``, then the quantities and their
      scores;
    * surrogates: for every (prompt, head) series draw ``b_0, b_1, ..., b_n`` independently and
      uniformly from ``0 .. D``; surrogate ``k`` replaces the series by its window of ``W``
      steps at offset ``D + b_k - b_0`` (in ``0 .. 2 D``), then the same computation.

    Every window is a contiguous stretch of its series, so each series' autocorrelation is kept
    exactly (a circular shift's wrap-around join lowered lag-1 autocorrelation of real
    activations from 0.84 to 0.75 and made the old test almost never reject under independent
    heads whose autocorrelation varies with depth), and real and surrogate statistics use
    windows of the same length, so they share PhiID's finite-sample bias at ``W`` steps.

    Why ``D + b_k - b_0`` rather than offsets uniform on ``0 .. D`` with the real in the
    middle: for each series the real window sits at ``D + b_0 - b_0`` of the same construction,
    so the offsets of the real and of the ``n`` surrogates are, up to one translation per
    series, ``n + 1`` independent uniform draws. Under the null -- heads independent of each
    other, each series stationary -- translating a series does not change its law, so the real
    and surrogate statistics are exchangeable and the p-value is exact (P(p <= a) <= a). With
    the real window fixed at the centre and surrogate offsets independently uniform around it,
    the real window would overlap every surrogate more than the surrogates overlap each other:
    not exchangeable, so no such guarantee. Stationarity matters: series that drift during
    generation in step with each other (a trend shared by heads) are coupled in time by this
    definition, and shifts show that as real. Two heads keep their real relative timing in a
    surrogate only when their offset differences coincide (probability about
    ``2 / (3 D)`` per pair and prompt).

    Power depends on the time scale of the coupling: the relative shift of two heads in a
    surrogate has sd about ``0.58 D`` steps, so coupling whose cross-correlation lasts that long
    survives partly in the surrogates and is detected less often (a shared drive filtered by an
    AR(0.5), 50 steps: p = 0.1 at ``trim`` 0.4, p = 0.05 with 80 steps). The circular shift used
    before had shifts over the whole series but, through its join, a wrong null. With ties
    (rank statistics of few heads) the p-value is conservative: ties count as "at least as
    extreme".

    Measured (``tests/calib_profile.py``, :func:`calib_profile.surrogate_rates`, 19 surrogates,
    trim 0.4, alpha 0.05; null: independent AR(1) heads, lag-1 autocorrelation rising from 0.2 in
    the outer layers to 0.85 in the middle): 6 x 2 heads, 6 prompts, 30 steps, 1,000 data sets:
    ``syn_red`` 6.7% [5.2, 8.4] (``mid_minus_outer``) and 6.1% [4.7, 7.8] (``quad_coef``) --
    a further 4,000 data sets gave 5.0% and 5.1% for the real score strictly above all 19
    surrogates --, ``synergy`` 2.4% / 1.8%, ``redundancy`` 2.2% / 2.7% (ties make the rank
    quantities conservative); no excess of small p-values (one-sided KS against the discrete
    uniform law, p >= 0.2). 8 x 4 heads, 12 prompts, 60 steps, 300 data sets: 2.0-4.3%; 16 x 8
    heads, 20 prompts, 100 steps, 100 data sets: 0-8% (every exact binomial interval contains
    5%). Power (12 heads, 24 prompts, 60 steps, 100 data sets): middle heads coupled in pairs
    (lag-1 autocorrelation equal at all depths) -- ``synergy`` 80% / 55%, ``redundancy`` 70% /
    44%, ``syn_red`` 1% / 2% (the core it hides); outer layers sharing a drive -- ``syn_red``
    100% / 100%. At 16 x 8 heads (20 data sets each): paired core ``synergy`` 40% / 35% (one
    coupled partner among 127 pairs per head), ``redundancy`` 100% / 95%, ``syn_red`` 0%;
    shared outer drive ``syn_red`` 100% / 100%.

    Parameters
    ----------
    acts : array_like, float, shape [prompts, heads, steps]
        Head time series, heads layer-major.
    layer : array_like, int, shape [heads]
    n_layers : int
    tau : int, default 1
        PhiID lag (steps).
    n_surrogates : int, default 100
        p-value resolution ``1 / (1 + n_surrogates)``.
    seed : int or SeedSequence, default 0
    trim : float, default :data:`DEFAULT_SURROGATE_TRIM`
        Fraction of the steps outside the window (``2 D / T``).

    Returns
    -------
    dict
        ``real`` : dict quantity -> dict score -> value (aligned windows);
        ``real_layer_mean`` : dict quantity -> [L];
        ``null`` : dict quantity -> dict score -> [n_surrogates] (NaN where undefined);
        ``null_layer_mean`` : dict quantity -> [L, n_surrogates];
        ``p_value`` : dict quantity -> dict score -> one-sided p (:func:`one_sided_p`);
        ``n_surrogates``, ``trim``, ``shift_steps`` (D), ``window_steps`` (W), ``seed``, ``tau``.
    """
    from .phiid.all_pairs import phiid_all_pairs

    acts = np.asarray(acts)
    if acts.ndim != 3:
        raise ValueError(f"acts must be [prompts, heads, steps], got shape {acts.shape}")
    layer, n_layers = _check_layer(layer, n_layers, acts.shape[1])
    n, h, t = acts.shape
    d = trim_steps(t, trim, tau)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, d + 1, size=(n, h))

    def scores(a):
        res = phiid_all_pairs(a, tau)
        ones = np.ones(res.per_prompt_sts.shape[1])
        qs = head_quantities_from_prompt_weights(res.per_prompt_sts, res.per_prompt_rtr, res.pairs, h, ones)
        return {q: inverted_u_score(v, layer, n_layers) for q, v in qs.items()}

    real = scores(aligned_window(acts, d))
    null = {q: {s: np.full(n_surrogates, np.nan) for s in SCORES} for q in QUANTITIES}
    null_lm = {q: np.full((n_layers, n_surrogates), np.nan) for q in QUANTITIES}
    for k in range(n_surrogates):
        sc = scores(trimmed_shift_surrogate(acts, d, base, rng))
        for q in QUANTITIES:
            for s in SCORES:
                null[q][s][k] = sc[q][s]
            null_lm[q][:, k] = sc[q]["layer_mean"]
    return {"real": {q: {s: real[q][s] for s in SCORES} for q in QUANTITIES},
            "real_layer_mean": {q: real[q]["layer_mean"] for q in QUANTITIES},
            "null": null, "null_layer_mean": null_lm,
            "p_value": {q: {s: one_sided_p(real[q][s], null[q][s], s) for s in SCORES} for q in QUANTITIES},
            "n_surrogates": int(n_surrogates), "trim": trim, "shift_steps": d,
            "window_steps": t - 2 * d, "seed": seed, "tau": tau}


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

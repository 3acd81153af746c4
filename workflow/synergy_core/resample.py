"""Resampling over prompts: bootstrap multiplicities, prompt-weighted means, percentile intervals.

A bootstrap resample (or a split half, or one category) of the prompts is a vector of nonnegative
*prompt weights*; every statistic built on :func:`weighted_pair_means` is evaluated for many
weight vectors at once with one matrix product.
"""

from __future__ import annotations

import warnings

import numpy as np


def bootstrap_weights(n_prompts: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Prompt multiplicities of ``n_boot`` bootstrap resamples (with replacement).

    Returns
    -------
    np.ndarray, float64, shape [prompts, n_boot]
        Column ``b`` counts how often each prompt was drawn; every column sums to ``prompts``.
    """
    draws = rng.integers(0, n_prompts, size=(n_boot, n_prompts))
    offsets = (np.arange(n_boot) * n_prompts)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_prompts)
    # C-contiguous: matrix products with a transposed view are about 100x slower
    return np.ascontiguousarray(counts.reshape(n_boot, n_prompts).T, dtype=np.float64)


def percentile_ci(samples: np.ndarray, ci: float, axis: int = -1) -> dict:
    """``ci_low``, ``ci_high`` (percentile interval), ``boot_mean``, ``boot_se`` (sd, ddof=1)
    and ``n_valid`` (finite samples) along ``axis``, NaN samples skipped."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    q = [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(samples, q, axis=axis)
        mean = np.nanmean(samples, axis=axis)
        se = np.nanstd(samples, axis=axis, ddof=1)
    n = np.isfinite(samples).sum(axis=axis)
    return {"ci_low": lo, "ci_high": hi, "boot_mean": mean, "boot_se": se, "n_valid": n}


def weighted_pair_means(per_prompt: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Prompt-weighted NaN-ignoring mean of each pair's per-prompt values.

    Parameters
    ----------
    per_prompt : np.ndarray, float, shape [P, prompts]
        Per-prompt values (nats), NaN for degenerate cells.
    weights : np.ndarray, float, shape [prompts, B]
        Nonnegative prompt weights, one column per resample.

    Returns
    -------
    np.ndarray, float64, shape [P, B]
        ``sum_n w[n, b] x[p, n] / sum_n w[n, b] [x[p, n] finite]``; NaN where no prompt with
        positive weight has a finite value.
    """
    x = np.asarray(per_prompt, dtype=np.float64)
    valid = np.isfinite(x)
    if valid.all():
        num = x @ weights
        den = weights.sum(axis=0)[None, :]
    else:
        num = np.where(valid, x, 0.0) @ weights
        den = valid.astype(np.float64) @ weights
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def label_swap_means(per_prompt_a, per_prompt_b, swap) -> tuple[np.ndarray, np.ndarray]:
    """Prompt means of two paired sets of per-prompt values (two networks, two models) after
    swapping their labels in some prompts (the draws of a paired label-swap permutation test).

    Parameters
    ----------
    per_prompt_a, per_prompt_b : array_like, float, shape [P, prompts]
        Per-prompt values of the two networks (same pairs and prompts), NaN for degenerate cells.
    swap : array_like, bool, shape [prompts, B]
        ``swap[n, b]``: in draw ``b`` prompt ``n``'s values of ``a`` and ``b`` trade places.

    Returns
    -------
    (np.ndarray, np.ndarray), float64, each shape [P, B]
        NaN-ignoring prompt means of the relabelled ``a`` and ``b``; NaN where no finite value.
    """
    a = np.asarray(per_prompt_a, dtype=np.float64)
    b = np.asarray(per_prompt_b, dtype=np.float64)
    s = np.asarray(swap, dtype=np.float64)
    keep = 1.0 - s
    va, vb = np.isfinite(a).astype(np.float64), np.isfinite(b).astype(np.float64)
    a0, b0 = np.where(va > 0, a, 0.0), np.where(vb > 0, b, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        den_a = va @ keep + vb @ s
        den_b = vb @ keep + va @ s
        mean_a = np.where(den_a > 0, (a0 @ keep + b0 @ s) / den_a, np.nan)
        mean_b = np.where(den_b > 0, (b0 @ keep + a0 @ s) / den_b, np.nan)
    return mean_a, mean_b

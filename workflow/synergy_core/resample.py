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

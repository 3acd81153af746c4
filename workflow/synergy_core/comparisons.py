"""Differences between two models' layer profiles, tested as differences, paired by prompt.

Two models that saw the same prompts (a trained model and its random-init twin; the final and the
first training checkpoint) give per-prompt PhiID arrays over the same head pairs. The claim "the
trained model has the more pronounced inverted U" is a claim about the difference of their
inverted-U scores, so that difference is what is estimated and tested:

* estimate: score(A) - score(B), each score from all prompts (:func:`stats.inverted_u_score` of
  ``syn_red``);
* p-value: a paired label-swap permutation test. Under the null that the two models' per-prompt
  data are exchangeable (the same process, e.g. training changed nothing), swapping which model
  a prompt's arrays belong to leaves the joint distribution unchanged; each permutation swaps
  every prompt independently with probability 1/2, and the two-sided p-value is
  ``(1 + #{|d*| >= |d|}) / (1 + n_permutations)``. Valid (calibrated) by construction under
  that null; its false-positive rate and power are measured in ``tests/calib_compare.py``;
* interval: ``d +- q``, with ``q`` the ``ci`` quantile of ``|d*|`` over the permutations (the
  interval of a shift model whose spread is the permutation null's). It contains the estimate by
  construction and excludes 0 exactly when ``|d|`` exceeds that quantile, i.e. when the
  permutation test rejects at ``1 - ci``: it inherits the test's calibration. (A bootstrap
  percentile interval of the difference was measured to exclude 0 in 7% [4.4%, 10.5%] of null
  data sets at alpha 0.05, so it is not used.)

Prompt pairing is by prompt id: both models must have the same prompts in the same order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .ranking import head_means, pair_incidence, rank_difference
from .resample import label_swap_means, weighted_pair_means
from .stats import inverted_u_score

SCORES = ("mid_minus_outer", "quad_coef")


def _scores(sts_means, rtr_means, incidence, layer, n_layers) -> dict:
    syn_red = rank_difference(head_means(sts_means, incidence), head_means(rtr_means, incidence))["syn_red"]
    return inverted_u_score(syn_red, layer, n_layers)


def compare_profiles(a: dict, b: dict, pairs, layer, n_layers: int, n_permutations: int = 1000,
                     seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Difference of the inverted-U scores of model A minus model B, paired by prompt.

    Parameters
    ----------
    a, b : dict
        ``per_prompt_sts`` and ``per_prompt_rtr`` of each model, ``[P, prompts]`` (nats), NaN for
        degenerate cells; the same pairs and prompts (in the same order) for both.
    pairs : array_like, int, shape [P, 2]
    layer : array_like, int, shape [H]
    n_layers : int
    n_permutations : int
        Label-swap permutations (p-value and interval).
    seed : int
        Seed of the permutations' random stream.
    ci : float
        Coverage of the interval.

    Returns
    -------
    DataFrame
        One row per score (``mid_minus_outer``, ``quad_coef``): ``estimate_a``, ``estimate_b``,
        ``difference`` (a - b), ``ci_low``, ``ci_high``, ``p`` (two-sided permutation p-value,
        resolution ``1 / (1 + n_permutations)``), ``n_permutations`` (finite ones), ``n_prompts``.
    """
    sts_a, rtr_a = (np.asarray(a[k], dtype=np.float64) for k in ("per_prompt_sts", "per_prompt_rtr"))
    sts_b, rtr_b = (np.asarray(b[k], dtype=np.float64) for k in ("per_prompt_sts", "per_prompt_rtr"))
    if not sts_a.shape == rtr_a.shape == sts_b.shape == rtr_b.shape:
        raise ValueError(f"the two models' per-prompt arrays differ in shape: {sts_a.shape} vs {sts_b.shape}")
    layer = np.asarray(layer)
    n_prompts = sts_a.shape[1]
    inc = pair_incidence(np.asarray(pairs), len(layer))
    perm_rng = np.random.default_rng(seed)
    ones = np.ones((n_prompts, 1))
    sa = _scores(weighted_pair_means(sts_a, ones), weighted_pair_means(rtr_a, ones), inc, layer, n_layers)
    sb = _scores(weighted_pair_means(sts_b, ones), weighted_pair_means(rtr_b, ones), inc, layer, n_layers)

    take_b = perm_rng.integers(0, 2, size=(n_prompts, int(n_permutations))).astype(float)
    sts_pa, sts_pb = label_swap_means(sts_a, sts_b, take_b)
    rtr_pa, rtr_pb = label_swap_means(rtr_a, rtr_b, take_b)
    pa = _scores(sts_pa, rtr_pa, inc, layer, n_layers)
    pb = _scores(sts_pb, rtr_pb, inc, layer, n_layers)
    rows = []
    for score in SCORES:
        diff = sa[score] - sb[score]
        d0 = diff[0]
        null = pa[score] - pb[score]
        null = null[np.isfinite(null)]
        finite = np.isfinite(d0) and null.size > 0
        p = float((1 + np.sum(np.abs(null) >= abs(d0) - 1e-12)) / (1 + null.size)) if finite else np.nan
        half = float(np.quantile(np.abs(null), ci)) if finite else np.nan
        rows.append(dict(score=score, estimate_a=sa[score][0], estimate_b=sb[score][0], difference=d0,
                         ci_low=d0 - half, ci_high=d0 + half, p=p, n_permutations=int(null.size),
                         n_prompts=n_prompts))
    return pd.DataFrame(rows)

"""Calibration of :func:`synergy_core.graphs.graph_statistics` by simulation (not a pytest module).

Every p-value and interval the entry point returns is checked against simulated data sets:

* ``p_null`` (network rows, pair-shuffle null) under ``iid``: every pair's values are drawn from
  one distribution, so the arrangement of the prompt-mean values among the pairs is random;
* ``p`` and "the interval excludes 0" (difference rows) under the nulls where synergy and
  redundancy are exchangeable: ``iid``; ``shared_modules`` (both networks have the same modular
  structure, independent prompt noise, correlation ``rho`` between the two networks' values of a
  pair in a prompt); ``shared_weak`` (the same with a structure comparable to the noise of a
  prompt mean, where thresholded graphs are most sensitive to resampling); ``shared_scaled`` (as
  ``shared_modules`` with the redundancy network multiplied by 3: the same up to scale, which
  every metric ignores); ``shared_headnoise`` (as ``shared_weak`` plus a random effect of each
  head in each prompt, added to all its pairs: prompt noise correlated across pairs, as heads
  that are active in one prompt would make it);
* power under ``planted``: an integrated synergy network (one hub head strongly coupled to all
  heads) against a modular redundancy network (4 blocks of heads coupled within the block), and
  under ``planted_weak``, the same with structures 0.3 x as strong.

Run the larger calibrations (reported numbers; about 20 CPU minutes each) with::

    python tests/calib_graphs.py --n-sims 500 --n-power-sims 100 --n-weak-power-sims 100 \
        --n-boot 100 --n-null 99
    python tests/calib_graphs.py --n-sims 300 --n-power-sims 50 --n-weak-power-sims 50 --n-heads 24 \
        --n-prompts 30 --n-boot 100 --n-null 99 --nulls shared_modules shared_weak shared_scaled
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

if __name__ == "__main__":                      # pragma: no cover - script use
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from synergy_core.graphs import graph_statistics  # noqa: E402
from synergy_core.phiid.chunks import upper_triangle_pairs  # noqa: E402

NULLS = ("iid", "shared_modules", "shared_weak", "shared_scaled", "shared_headnoise")
SCENARIOS = NULLS + ("planted", "planted_weak")
NULL_TEXT = {
    "iid": "all pairs iid, sts and rtr identically distributed (pair shuffle and label swap nulls)",
    "shared_modules": "sts and rtr share a modular structure, noise correlated (rho), exchangeable",
    "shared_weak": "as shared_modules with the structure 0.3 x as strong (comparable to prompt-mean noise)",
    "shared_scaled": "as shared_modules with rtr x 3: exchangeable up to scale",
    "shared_headnoise": "as shared_weak plus per-prompt head effects (noise correlated across pairs of a head)",
}


def pair_structure(n_heads: int, kind: str, n_blocks: int = 4, n_hubs: int = 1) -> np.ndarray:
    """Noise-free pair means ``[P]`` (row-major upper-triangle pairs), mean over pairs 0.

    ``kind``: ``none`` (all 0), ``modules`` (1 within each of ``n_blocks`` equal blocks of
    consecutive heads, 0 between), ``hubs`` (1 for every pair touching one of ``n_hubs`` hub
    heads spread over the heads, 0 otherwise); both then centred to mean 0 over the pairs.
    """
    pairs = upper_triangle_pairs(n_heads)
    i, j = pairs.T
    if kind == "none":
        return np.zeros(len(pairs))
    if kind == "modules":
        block = np.arange(n_heads) * n_blocks // n_heads
        mu = (block[i] == block[j]).astype(float)
    elif kind == "hubs":
        hub = np.zeros(n_heads, bool)
        hub[np.linspace(0, n_heads - 1, n_hubs).round().astype(int)] = True
        mu = (hub[i] | hub[j]).astype(float)
    else:
        raise ValueError(f"unknown structure {kind!r}")
    return mu - mu.mean()


def simulate_networks(n_heads: int, n_prompts: int, scenario: str, rng: np.random.Generator,
                      signal: float = 2.0, noise: float = 1.0, baseline: float = 1.0, rho: float = 0.5,
                      nan_frac: float = 0.05, head_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One simulated data set.

    Parameters
    ----------
    n_heads, n_prompts : int
    scenario : one of ``SCENARIOS``
    rng : numpy.random.Generator
    signal : float
        Size of the planted structure (difference of pair means, value units).
    noise : float
        SD of one prompt's value of a pair around its mean.
    baseline : float
        Mean of every value (keeps most weights of the weighted variant positive).
    rho : float
        Correlation of the sts and rtr noise of a pair in one prompt.
    nan_frac : float
        Fraction of cells set to NaN (the same cells in both networks, as a degenerate pair).
    head_noise : float
        SD of a per-prompt effect of each head, added to all pairs of the head (correlated
        ``rho`` between the networks); ``shared_headnoise`` uses 0.7 when this is 0.

    Returns
    -------
    sts, rtr : np.ndarray, float64, shape [P, prompts]
    pairs : np.ndarray, int64, shape [P, 2]
    """
    pairs = upper_triangle_pairs(n_heads)
    shape = (len(pairs), n_prompts)
    e1 = rng.normal(size=shape)
    e2 = rho * e1 + np.sqrt(1 - rho ** 2) * rng.normal(size=shape)
    if scenario == "shared_headnoise":
        head_noise = head_noise or 0.7
    if head_noise:
        h1 = rng.normal(size=(n_heads, n_prompts))
        h2 = rho * h1 + np.sqrt(1 - rho ** 2) * rng.normal(size=(n_heads, n_prompts))
        i, j = pairs.T
        e1 = e1 + head_noise * (h1[i] + h1[j])
        e2 = e2 + head_noise * (h2[i] + h2[j])
    mu_s = mu_r = pair_structure(n_heads, "none")
    scale_r = 1.0
    if scenario in ("shared_modules", "shared_weak", "shared_scaled", "shared_headnoise"):
        weak = scenario in ("shared_weak", "shared_headnoise")
        mu_s = mu_r = pair_structure(n_heads, "modules") * (0.3 if weak else 1.0)
        scale_r = 3.0 if scenario == "shared_scaled" else 1.0
    elif scenario in ("planted", "planted_weak"):
        k = 0.3 if scenario == "planted_weak" else 1.0
        mu_s, mu_r = k * pair_structure(n_heads, "hubs"), k * pair_structure(n_heads, "modules")
    elif scenario != "iid":
        raise ValueError(f"unknown scenario {scenario!r}")
    sts = baseline + signal * mu_s[:, None] + noise * e1
    rtr = scale_r * (baseline + signal * mu_r[:, None] + noise * e2)
    bad = rng.random(shape) < nan_frac
    sts[bad] = np.nan
    rtr[bad] = np.nan
    return sts, rtr, pairs


def _outcomes(table: pd.DataFrame, alpha: float) -> dict:
    """test name -> rejected (True / False, None when the p-value or interval is NaN) for every
    p-value and interval in one output table."""
    out = {}
    for r in table.itertuples():
        name = f"{r.network}_{r.variant}_{r.metric}"
        if r.network == "synergy_minus_redundancy":
            out[f"{name}_p"] = None if np.isnan(r.p) else bool(r.p <= alpha)
            ok = np.isfinite(r.ci_low) and np.isfinite(r.ci_high)
            out[f"{name}_ci_excludes_0"] = bool(not r.ci_low <= 0 <= r.ci_high) if ok else None
        else:
            out[f"{name}_p_null"] = None if np.isnan(r.p_null) else bool(r.p_null <= alpha)
    return out


def rejection_counts(scenario: str, n_sims: int, n_heads: int = 12, n_prompts: int = 8, n_boot: int = 19,
                     n_null: int = 19, fraction: float = 0.10, alpha: float = 0.05, seed: int = 0,
                     difference_test: str = "folds", **sim_kw) -> dict:
    """Number of rejections of each test over ``n_sims`` simulated data sets of ``scenario``.

    Pair-shuffle nulls are drawn (``n_null``) only where ``p_null`` is of interest (``iid``,
    ``planted``) or needed (``label_swap``), to save time.

    Returns
    -------
    dict
        test name -> int (rejections at level ``alpha``; an interval "rejects" when it
        excludes 0; ``ci = 1 - alpha``); ``<test>:undefined`` -> int (draws where it was NaN).
    """
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    draws = n_null if scenario in ("iid", "planted", "planted_weak") or difference_test == "label_swap" else 0
    counts: dict = {}
    for _ in range(n_sims):
        sts, rtr, pairs = simulate_networks(n_heads, n_prompts, scenario, rng, **sim_kw)
        table = graph_statistics(sts, rtr, pairs, n_heads, fraction, n_boot=n_boot, n_null=draws,
                                 seed=int(rng.integers(2 ** 31 - 1)), ci=1 - alpha,
                                 difference_test=difference_test)
        if not draws:
            table = table[table.network == "synergy_minus_redundancy"]
        for k, v in _outcomes(table, alpha).items():
            counts[k] = counts.get(k, 0) + int(bool(v))
            counts[f"{k}:undefined"] = counts.get(f"{k}:undefined", 0) + int(v is None)
    return counts


def applies(test: str, null: str) -> bool:
    """Whether ``null`` is a null hypothesis of ``test``: the pair-shuffle p-values only under
    ``iid``, the difference tests under every exchangeable null."""
    return null == "iid" if test.endswith("_p_null") else True


def calibration_rows(n_sims: int = 200, n_power_sims: int = 50, nulls=NULLS, n_weak_power_sims: int = 0,
                     n_heads: int = 12, n_prompts: int = 8, n_boot: int = 19, n_null: int = 19, fraction: float = 0.10,
                     alpha: float = 0.05, seed: int = 0, difference_test: str = "folds",
                     **sim_kw) -> list[dict]:
    """False-positive rate (with exact binomial 95% interval) of every test under each null that
    applies to it, and its power under ``planted`` (and ``planted_weak``).

    Returns
    -------
    list of dict
        ``test``, ``null`` (scenario name), ``null_description``, ``alpha``, ``n_sims``,
        ``n_rejected``, ``n_undefined`` (draws with a NaN p-value / interval, not rejections),
        ``false_positive_rate``,
        ``fpr_ci_low``, ``fpr_ci_high`` (Clopper-Pearson), ``p_exceeds_alpha`` (one-sided exact
        binomial p-value of "FPR > alpha"), ``power`` (rejection rate under ``planted``, NaN
        when ``n_power_sims`` is 0), ``n_power_sims``, ``power_weak`` and ``n_weak_power_sims``
        (the same under ``planted_weak``), and the sizes.
    """
    kw = dict(n_heads=n_heads, n_prompts=n_prompts, n_boot=n_boot, n_null=n_null, fraction=fraction,
              alpha=alpha, seed=seed, difference_test=difference_test, **sim_kw)
    power = rejection_counts("planted", n_power_sims, **kw) if n_power_sims else {}
    weak = rejection_counts("planted_weak", n_weak_power_sims, **kw) if n_weak_power_sims else {}
    rows = []
    for null in nulls:
        counts = rejection_counts(null, n_sims, **kw)
        for test, k in counts.items():
            if test.endswith(":undefined") or not applies(test, null):
                continue
            bt = binomtest(k, n_sims, alpha, alternative="greater")
            lo, hi = binomtest(k, n_sims, alpha).proportion_ci(0.95)
            rows.append(dict(test=test, null=null, null_description=NULL_TEXT[null], alpha=alpha,
                             n_sims=n_sims, n_rejected=k, n_undefined=counts[f"{test}:undefined"],
                             false_positive_rate=k / n_sims, fpr_ci_low=lo, fpr_ci_high=hi,
                             p_exceeds_alpha=bt.pvalue,
                             power=power[test] / n_power_sims if n_power_sims else np.nan,
                             n_power_sims=n_power_sims,
                             power_weak=weak[test] / n_weak_power_sims if n_weak_power_sims else np.nan,
                             n_weak_power_sims=n_weak_power_sims, n_heads=n_heads, n_prompts=n_prompts,
                             n_boot=n_boot, n_null=n_null, difference_test=difference_test))
    return rows


def main() -> None:                              # pragma: no cover - script use
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-sims", type=int, default=200)
    ap.add_argument("--n-power-sims", type=int, default=50)
    ap.add_argument("--n-weak-power-sims", type=int, default=0)
    ap.add_argument("--n-heads", type=int, default=12)
    ap.add_argument("--n-prompts", type=int, default=8)
    ap.add_argument("--n-boot", type=int, default=19)
    ap.add_argument("--n-null", type=int, default=19)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nulls", nargs="*", default=list(NULLS))
    ap.add_argument("--difference-test", default="folds", choices=["folds", "bootstrap", "label_swap"])
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    rows = calibration_rows(a.n_sims, a.n_power_sims, a.nulls, a.n_weak_power_sims, n_heads=a.n_heads,
                            n_prompts=a.n_prompts, n_boot=a.n_boot, n_null=a.n_null, seed=a.seed,
                            difference_test=a.difference_test)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    short = df.drop(columns=["alpha", "n_heads", "n_prompts", "n_boot", "n_null", "difference_test",
                             "null_description"])
    short["test"] = short.test.str.replace("synergy_minus_redundancy", "diff")
    print(short.to_string(
        index=False, float_format=lambda x: f"{x:.3g}"))
    if a.out:
        df.to_csv(a.out, sep="\t", index=False)


if __name__ == "__main__":                       # pragma: no cover - script use
    main()

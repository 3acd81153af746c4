"""Ablation curves and their areas: the one AUC definition (trapezoid rule over the fraction of
heads removed), per-order summaries, and the bootstrap of AUC ratios over prompts.

Pure numpy/pandas (no torch): the ablation statistics and figures run on CPU from
``kl_long.tsv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .resample import bootstrap_weights, percentile_ci, weighted_pair_means


def trapezoid_weights(x: np.ndarray) -> np.ndarray:
    """Weights ``w`` with ``sum(w * y) == np.trapezoid(y, x)`` for increasing ``x`` [K]."""
    w = np.zeros(len(x))
    if len(x) > 1:
        dx = np.diff(x)
        w[:-1] += dx / 2
        w[1:] += dx / 2
    return w


def summarise_curves(long):
    """Mean curve per order: ``order, n_removed, fraction_removed, kl_mean, kl_std, n``.

    Ranked orders: mean over prompts, std over prompts. Random: each seed's prompt-mean curve
    first, then mean and std over seeds (the spread of random orders, as in the paper).
    """
    per_seed = (long.groupby(["order", "seed", "n_removed", "fraction_removed"], as_index=False)
                .kl.mean())
    ranked = long[long.order != "random"].groupby(
        ["order", "n_removed", "fraction_removed"], as_index=False).kl.agg(["mean", "std", "count"])
    rand = per_seed[per_seed.order == "random"].groupby(
        ["order", "n_removed", "fraction_removed"], as_index=False).kl.agg(["mean", "std", "count"])
    out = pd.concat([ranked, rand], ignore_index=True)
    return out.rename(columns={"mean": "kl_mean", "std": "kl_std", "count": "n"})


def curve_auc(fraction: np.ndarray, kl: np.ndarray) -> float:
    """Area under a KL curve over the fraction of heads removed (trapezoid rule), nats."""
    order = np.argsort(fraction)
    return float(trapezoid_weights(np.asarray(fraction, dtype=float)[order]) @ np.asarray(kl)[order])


def auc_table(long):
    """Area under each order's prompt-mean curve, and the ratios to the mean random AUC.

    One row per order (random: mean and std over seeds) with ``auc``, ``auc_std``,
    ``ratio_to_random`` (NaN when there are no random orders).
    """
    per_seed = (long.groupby(["order", "seed", "fraction_removed"], as_index=False).kl.mean())
    aucs = (per_seed.groupby(["order", "seed"])
            .apply(lambda g: curve_auc(g.fraction_removed.to_numpy(), g.kl.to_numpy()),
                   include_groups=False)
            .rename("auc").reset_index())
    rows = []
    for order, g in aucs.groupby("order", sort=False):
        rows.append(dict(order=order, auc=g.auc.mean(),
                         auc_std=g.auc.std() if len(g) > 1 else np.nan, n_orders=len(g)))
    out = pd.DataFrame(rows)
    random_auc = out.loc[out.order == "random", "auc"]
    ref = float(random_auc.iloc[0]) if len(random_auc) else np.nan
    out["ratio_to_random"] = out.auc / ref if ref and np.isfinite(ref) else np.nan
    order_rank = {"synergistic_first": 0, "redundant_first": 1, "random": 2}
    return out.sort_values("order", key=lambda s: s.map(order_rank)).reset_index(drop=True)


def ablation_auc_stats(long: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                       ci: float = 0.95) -> dict:
    """AUCs of the ablation curves, their ratios to random orders, with bootstrap CIs.

    An order's AUC is the trapezoid area (nats x fraction of heads) under its prompt-mean KL
    curve over ``fraction_removed``, as in :func:`auc_table`; the random reference is
    the mean AUC of the random orders (seeds). Bootstrap: prompts are resampled with
    replacement and every curve's AUC is recomputed from the same resample (paired). Since the
    AUC is linear in the prompt-mean curve, all resamples are two matrix products.

    Parameters
    ----------
    long : DataFrame
        The long ablation table: ``order`` (``synergistic_first``, ``redundant_first``,
        ``random``), ``seed``, ``n_removed``, ``fraction_removed``, ``prompt``, ``kl`` (nats).
        Duplicate rows of one (order, seed, fraction, prompt) are averaged; missing or NaN
        cells are skipped in the prompt means; a fraction with no finite value for a curve is
        left out of that curve.
    n_boot : int, default 1000
    seed : int, default 0
    ci : float, default 0.95

    Returns
    -------
    dict
        ``summary`` : DataFrame with one row per quantity (``auc_synergistic_first``,
        ``auc_redundant_first``, ``auc_random``, ``ratio_synergistic_random``,
        ``ratio_redundant_random``) and columns ``estimate``, ``ci_low``, ``ci_high``,
        ``boot_mean``, ``boot_se``, ``n_valid``; missing orders give NaN.
        ``frac_random_beaten`` : fraction of the random orders whose AUC (all prompts) is
        below the synergistic-first AUC.
        ``random_auc`` : [R] AUC of each random order (seeds in ascending order);
        ``samples`` : dict quantity -> [n_boot]; ``n_random``, ``n_prompts``.
    """
    need = {"order", "seed", "fraction_removed", "prompt", "kl"}
    if missing := need - set(long.columns):
        raise ValueError(f"long table lacks columns {sorted(missing)}")
    g = long.groupby(["order", "seed", "fraction_removed", "prompt"], sort=True).kl.mean()
    curve_codes, curves = pd.MultiIndex.from_arrays(
        [g.index.get_level_values(0), g.index.get_level_values(1)]).factorize(sort=True)
    frac_codes, fracs = pd.factorize(g.index.get_level_values(2), sort=True)
    prompt_codes, prompts = pd.factorize(g.index.get_level_values(3), sort=True)
    c, k, n = len(curves), len(fracs), len(prompts)
    cube = np.full((c, k, n), np.nan)
    cube[curve_codes, frac_codes, prompt_codes] = g.to_numpy(dtype=np.float64)

    rng = np.random.default_rng(seed)
    w = np.concatenate([np.ones((n, 1)), bootstrap_weights(n, int(n_boot), rng)], axis=1)
    valid = np.isfinite(cube)
    mean = weighted_pair_means(cube.reshape(c * k, n), w).reshape(c, k, -1)   # [C, K, 1+B]
    avail = valid.any(axis=2)                                                  # [C, K]
    fr = np.asarray(fracs, dtype=np.float64)
    tw = np.zeros((c, k))
    for i in range(c):
        tw[i, avail[i]] = trapezoid_weights(fr[avail[i]])
    auc = np.einsum("ck,ckb->cb", tw, np.where(avail[:, :, None], mean, 0.0))  # [C, 1+B]

    order_of = np.array([o for o, _ in curves])
    seed_of = np.array([s for _, s in curves])

    def order_auc(name):
        sel = order_of == name
        if not sel.any():
            return np.full(auc.shape[1], np.nan)
        return auc[sel].mean(axis=0)

    syn = order_auc("synergistic_first")
    red = order_auc("redundant_first")
    rnd = order_auc("random")
    with np.errstate(divide="ignore", invalid="ignore"):
        quantities = {"auc_synergistic_first": syn, "auc_redundant_first": red, "auc_random": rnd,
                      "ratio_synergistic_random": syn / rnd, "ratio_redundant_random": red / rnd}
    rows = [dict(quantity=name, estimate=v[0], **percentile_ci(v[1:], ci))
            for name, v in quantities.items()]
    rand_sel = order_of == "random"
    rand_idx = np.flatnonzero(rand_sel)[np.argsort(seed_of[rand_sel], kind="stable")]
    random_auc = auc[rand_idx, 0]
    beaten = float(np.mean(random_auc < syn[0])) if random_auc.size and np.isfinite(syn[0]) else np.nan
    return {"summary": pd.DataFrame(rows), "frac_random_beaten": beaten, "random_auc": random_auc,
            "samples": {name: v[1:] for name, v in quantities.items()},
            "n_random": int(random_auc.size), "n_prompts": n, "n_boot": int(n_boot), "seed": seed,
            "ci": ci}

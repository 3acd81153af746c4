"""Ablation grids, head orders, curves and their areas, and the test of a ranked order against
random orders.

Pure numpy/pandas (no torch): the ablation statistics and figures run on CPU from
``kl_long.tsv``, and the calibration simulations use the same functions.

The verdict (:func:`ablation_auc_stats`) compares a ranked order's area under the curve (AUC)
with the AUCs of random head orders computed on the same grid of removal counts: a rank p-value
over the random orders, the ratio to the median random AUC, and an interval for that ratio from
pairs (bootstrap resample of prompts, random order) whose levels invert the rank test.

Non-finite KL values (inf or NaN, e.g. from a half-precision model whose ablated logits
overflow) are never dropped silently: :func:`paired_finite_prompts` excludes every prompt that
has one from every curve, so all orders stay paired on the same prompts, counts them, and logs
a warning; :func:`summarise_curves`, :func:`auc_table` and :func:`ablation_auc_stats` all apply
it. A random reference AUC that is not positive gives NaN ratios (with a warning), never inf.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from .head_counts import last_removal_count, min_max_fraction
from .resample import bootstrap_weights, percentile_ci, weighted_pair_means

RANKED = ("synergistic_first", "redundant_first")
LONG_COLUMNS = ("order", "seed", "fraction_removed", "prompt", "kl")

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------- grids and orders
def removal_counts(n_total_heads: int, max_fraction: float = 1.0, step: int = 1) -> np.ndarray:
    """Numbers of removed heads evaluated: 0, step, 2*step, ... up to floor(max_fraction * H),
    always including that last count."""
    last = last_removal_count(n_total_heads, max_fraction)
    counts = list(range(0, last + 1, step))
    if counts[-1] != last:
        counts.append(last)
    return np.array(counts)


def grid_counts(n_total_heads: int, max_fraction: float, n_points: int | None) -> np.ndarray:
    """``n_points`` evenly spaced removal counts from 0 to floor(max_fraction * H) (rounded to
    integers, duplicates dropped, both ends always included); ``None``: every count."""
    last = last_removal_count(n_total_heads, max_fraction)
    if n_points is None:
        return np.arange(last + 1)
    if n_points < 2:
        raise ValueError(f"a grid needs at least 2 points (0 and the last count), got {n_points}")
    return np.unique(np.rint(np.linspace(0, last, n_points)).astype(np.int64))


def ablation_grids(n_total_heads: int, max_fraction: float = 1.0, step: int = 1,
                   random_grid: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Removal counts of the ranked orders (every ``step``-th count, plus every point of the
    random grid) and of the random orders (:func:`grid_counts`; ``None`` = the ranked grid).
    The random grid is a subset of the ranked grid, so the two are compared on it. Raises
    ``ValueError`` when ``max_fraction`` removes no head (the config check refuses this at parse
    time for models whose head count is known then)."""
    if last_removal_count(n_total_heads, max_fraction) < 1:
        raise ValueError(f"ablation.max_fraction: {max_fraction} of {n_total_heads} heads removes no "
                         f"head; use at least {min_max_fraction(n_total_heads)}")
    full = removal_counts(n_total_heads, max_fraction, step)
    if random_grid is None:
        return full, full
    coarse = grid_counts(n_total_heads, max_fraction, random_grid)
    return np.union1d(full, coarse), coarse


def ablation_orders(syn_red: np.ndarray, n_random: int, seed: int = 0,
                    stream: int | None = None) -> list[tuple[str, int, np.ndarray]]:
    """Head orders ``(name, seed, order)``: synergistic-first (descending syn_red), redundant-first
    (ascending), and ``n_random`` random permutations (seeds ``seed .. seed + n_random - 1``;
    ``stream`` draws another independent set of permutations with the same seed labels, e.g. one
    per half of the prompts).

    Ties and NaN syn_red are broken deterministically by head index; NaN heads go last in both
    ranked orders (they carry no evidence either way).
    """
    h = len(syn_red)
    key = np.where(np.isnan(syn_red), -np.inf, syn_red)
    syn_first = np.lexsort((np.arange(h), -key))
    key_red = np.where(np.isnan(syn_red), np.inf, syn_red)
    red_first = np.lexsort((np.arange(h), key_red))
    orders = [("synergistic_first", -1, syn_first), ("redundant_first", -1, red_first)]
    for k in range(n_random):
        rng = np.random.default_rng([seed, k] if stream is None else [seed, k, 1 + stream])
        orders.append(("random", seed + k, rng.permutation(h)))
    return orders


# ------------------------------------------------------------------------------- curves
def trapezoid_weights(x: np.ndarray) -> np.ndarray:
    """Weights ``w`` with ``sum(w * y) == np.trapezoid(y, x)`` for increasing ``x`` [K]."""
    w = np.zeros(len(x))
    if len(x) > 1:
        dx = np.diff(x)
        w[:-1] += dx / 2
        w[1:] += dx / 2
    return w


def paired_finite_prompts(long: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The paired policy for non-finite KL values: drop every prompt that has a non-finite
    ``kl`` (inf, -inf or NaN) in any row, from every curve.

    All orders (ranked and random, every seed and fraction) are then averaged over the same
    prompts, so their curves and AUCs stay paired; a value is never skipped in one curve's
    prompt mean while the prompt still counts in another. The exclusion is logged as a warning
    with the counts and a few example prompts. (Rows that are absent, e.g. random orders on a
    coarser grid, are not values and are not affected.)

    Parameters
    ----------
    long : DataFrame
        The long ablation table; needs :data:`LONG_COLUMNS` (``n_removed`` is optional).

    Returns
    -------
    (DataFrame, dict)
        The rows of the kept prompts, and ``n_nonfinite_kl`` (rows of ``long`` whose ``kl`` is
        not finite), ``n_prompts_excluded`` (prompts dropped because of them),
        ``prompts_excluded`` (those prompts, sorted) and ``n_prompts`` (prompts kept).

    Raises
    ------
    ValueError
        When a column is missing, the table has no rows, or no prompt is left.
    """
    if missing := set(LONG_COLUMNS) - set(long.columns):
        raise ValueError(f"ablation long table lacks columns {sorted(missing)}")
    if long.empty:
        raise ValueError("ablation long table is empty (no rows): there is no KL value to "
                         "summarise; check that the ablation ran on at least one prompt")
    bad = ~np.isfinite(long.kl.to_numpy(dtype=np.float64))
    n_bad = int(bad.sum())
    excluded = pd.unique(long.prompt[bad]).tolist() if n_bad else []
    try:
        excluded.sort()
    except TypeError:        # prompts of mixed types
        excluded.sort(key=str)
    kept = long[~long.prompt.isin(excluded)] if n_bad else long
    n_all = long.prompt.nunique()
    info = dict(n_nonfinite_kl=n_bad, n_prompts_excluded=len(excluded),
                prompts_excluded=excluded, n_prompts=n_all - len(excluded))
    if n_bad:
        examples = ", ".join(map(str, excluded[:5])) + (", ..." if len(excluded) > 5 else "")
        if kept.empty:
            raise ValueError(f"ablation long table: every prompt ({n_all}) has a non-finite KL "
                             f"value (inf or NaN; {n_bad} of {len(long)} rows), so no prompt is "
                             "left for the ablation curves")
        log.warning("ablation long table: %d non-finite KL value(s) (inf or NaN) in %d of %d "
                    "prompts; those prompts are excluded from every curve so all orders stay "
                    "paired (e.g. %s)", n_bad, len(excluded), n_all, examples)
    return kept, info


def _positive_reference(ref: float, where: str) -> float:
    """The median random AUC if it is positive; NaN (with a warning) if it is zero or negative,
    so that no ratio to it is infinite or of the wrong sign. NaN stays NaN (no random orders)."""
    if np.isfinite(ref) and ref <= 0:
        log.warning("%s: the median random AUC is %r (not positive), so the ratios to it are "
                    "undefined and reported as NaN", where, float(ref))
        return np.nan
    return ref


def summarise_curves(long):
    """Mean curve per order: ``order, n_removed, fraction_removed, kl_mean, kl_std, n``.

    Ranked orders: mean over prompts, std over prompts. Random: each seed's prompt-mean curve
    first, then mean and std over seeds (the spread of random orders, as in the paper). Prompts
    with a non-finite KL value are excluded from every curve (:func:`paired_finite_prompts`);
    ``n`` counts the prompts (ranked) or seeds (random) averaged.
    """
    long, _ = paired_finite_prompts(long)
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


def _curve_cube(long: pd.DataFrame):
    """Per-prompt values ``[C, K, N]`` (NaN where absent; duplicates averaged), the curves
    ``(order, seed)``, the fractions and the prompts, all sorted, and the exclusion counts of
    :func:`paired_finite_prompts` (which it applies first: every value in the cube is finite)."""
    long, info = paired_finite_prompts(long)
    g = long.groupby(["order", "seed", "fraction_removed", "prompt"], sort=True).kl.mean()
    curve_codes, curves = pd.MultiIndex.from_arrays(
        [g.index.get_level_values(0), g.index.get_level_values(1)]).factorize(sort=True)
    frac_codes, fracs = pd.factorize(g.index.get_level_values(2), sort=True)
    prompt_codes, prompts = pd.factorize(g.index.get_level_values(3), sort=True)
    cube = np.full((len(curves), len(fracs), len(prompts)), np.nan)
    cube[curve_codes, frac_codes, prompt_codes] = g.to_numpy(dtype=np.float64)
    return cube, list(curves), np.asarray(fracs, dtype=np.float64), list(prompts), info


def _grid(avail: np.ndarray, is_random: np.ndarray, order_of: np.ndarray) -> np.ndarray:
    """Boolean [K]: the fractions every random curve has (the comparison grid); every fraction
    any curve has when there are no random orders. A ranked curve lacking a grid point is an
    error (it could not be compared with the random orders on the same grid)."""
    if not is_random.any():
        return avail.any(axis=0)
    grid = avail[is_random].all(axis=0)
    for i in np.flatnonzero(~is_random):
        if lacking := int((grid & ~avail[i]).sum()):
            raise ValueError(f"{order_of[i]} lacks {lacking} fraction(s) of the random orders' "
                             "grid; the ranked grid must contain the random grid")
    return grid


def _trapezoid_matrix(fracs: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """Trapezoid weights ``[C, K]`` of each curve over the fractions it has."""
    tw = np.zeros(avail.shape)
    for i in range(len(avail)):
        tw[i, avail[i]] = trapezoid_weights(fracs[avail[i]])
    return tw


def auc_table(long):
    """Area under each order's prompt-mean curve, and the ratios to the median random AUC.

    One row per order: ``auc`` (on the order's own grid; random: mean over seeds), ``auc_std``
    (random: std over seeds), ``n_orders``, ``auc_grid`` (on the random orders' grid, which the
    ranked orders also have; random: median over seeds) and ``ratio_to_random`` = ``auc_grid``
    / the random median (NaN when there are no random orders, and NaN with a warning when the
    random median is zero or negative). Same numbers as :func:`ablation_auc_stats`.

    Prompts with a non-finite KL value are excluded from every curve
    (:func:`paired_finite_prompts`); every row also carries ``n_prompts`` (prompts used),
    ``n_nonfinite_kl`` (rows of ``long`` with inf/NaN KL) and ``n_prompts_excluded``. An empty
    table, or one with no prompt left, raises ValueError.
    """
    cube, curves, fracs, _, info = _curve_cube(long)
    order_of = np.array([o for o, _ in curves])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(cube, axis=2)                                      # [C, K]
    avail = np.isfinite(mean)
    is_random = order_of == "random"
    grid = _grid(avail, is_random, order_of)
    own = np.einsum("ck,ck->c", _trapezoid_matrix(fracs, avail), np.where(avail, mean, 0.0))
    on_grid = np.einsum("ck,ck->c", _trapezoid_matrix(fracs, np.broadcast_to(grid, avail.shape)),
                        np.where(grid, mean, 0.0))
    ref = float(np.median(on_grid[is_random])) if is_random.any() else np.nan
    ref = _positive_reference(ref, "auc_table")
    names = [o for o in (*RANKED, "random") if o in order_of]
    rows = []
    for order in names + sorted(set(order_of) - set(names)):
        sel = order_of == order
        rows.append(dict(order=order, auc=own[sel].mean(),
                         auc_std=own[sel].std(ddof=1) if sel.sum() > 1 else np.nan,
                         n_orders=int(sel.sum()),
                         auc_grid=float(np.median(on_grid[sel])) if sel.any() else np.nan))
    out = pd.DataFrame(rows)
    out["ratio_to_random"] = out.auc_grid / ref if np.isfinite(ref) else np.nan
    for key in ("n_prompts", "n_nonfinite_kl", "n_prompts_excluded"):
        out[key] = info[key]
    return out


# ---------------------------------------------------------------------------- inference
def ratio_interval_levels(n_random: int, ci: float) -> tuple[float, float] | None:
    """Quantile levels ``(q, 1 - q)`` of the pair ratios that make the ratio interval invert the
    two-sided rank test at level ``1 - ci``.

    With ``k* = floor((1 - ci) / 2 * (R + 1)) - 1``, the largest count of random AUCs at or
    above the ranked AUC for which the one-sided p-value ``(1 + k) / (1 + R)`` is at most
    ``(1 - ci) / 2``, ``q = (k* + 1/2) / R``: without prompt noise (every bootstrap pair on the
    side of its random order) the interval excludes 1 from below exactly when ``k <= k*``, i.e.
    when the rank test rejects, and from above likewise; with prompt noise a random order whose
    AUC ties the ranked one within the bootstrap spread counts about half. ``None`` when R
    random orders cannot reach the level (``k* < 0``, ``R < 2 / (1 - ci) - 1``, i.e. 39 at
    ci = 0.95): no ratio can then be excluded.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    if n_random < 1:
        return None
    k_star = int(np.floor((1 - ci) / 2 * (n_random + 1) + 1e-9)) - 1
    if k_star < 0:
        return None
    q = (k_star + 0.5) / n_random
    return q, 1 - q


def rank_test(ranked: np.ndarray, random: np.ndarray, ci: float = 0.95) -> dict:
    """A ranked order's AUC against random orders' AUCs on the same grid and prompt resamples.

    Parameters
    ----------
    ranked : array, shape [1 + B]
        The ranked order's AUC on all prompts (column 0), then on B bootstrap resamples.
    random : array, shape [R, 1 + B]
        Each random order's AUC on the same prompt sets; orders with a non-finite column 0 are
        dropped.
    ci : float

    Returns
    -------
    dict
        ``ratio`` = AUC / median random AUC (all prompts; NaN, and NaN interval, when that
        median is zero or negative: the ratio is undefined); ``ci_low``, ``ci_high``: quantiles
        of the R x B pair ratios ``ranked[b] / random[r, b]`` at :func:`ratio_interval_levels`
        (order-to-order and prompt variability together; ``[0, inf]`` when R is too small);
        ``p`` = (1 + #{random >= ranked}) / (1 + R), one-sided, "more damaging than random";
        ``p_less`` = (1 + #{random <= ranked}) / (1 + R), "less damaging"; ``frac_beaten``
        = share of random AUCs below the ranked AUC; ``n_random`` = R; ``samples`` [R, B].

    Calibration (tests/calib_ablation.py): under the null the ranked order is exchangeable
    with the random ones, so ``P(p <= alpha) <= alpha`` exactly; the interval excludes 1 about
    as often as the two-sided rank test at ``1 - ci`` (a little less: prompt noise smooths the
    count of random orders).
    """
    ranked = np.asarray(ranked, dtype=np.float64)
    random = np.asarray(random, dtype=np.float64).reshape(-1, len(ranked))
    random = random[np.isfinite(random[:, 0])]
    r = len(random)
    out = dict(ratio=np.nan, ci_low=np.nan, ci_high=np.nan, p=np.nan, p_less=np.nan,
               frac_beaten=np.nan, n_random=r, samples=np.empty((r, max(len(ranked) - 1, 0))))
    a0 = ranked[0]
    if r == 0 or not np.isfinite(a0):
        return out
    ref = random[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = slice(1, None) if len(ranked) > 1 else slice(0, 1)
        pairs = ranked[None, boot] / random[:, boot]
    out.update(p=(1 + np.sum(ref >= a0)) / (1 + r), p_less=(1 + np.sum(ref <= a0)) / (1 + r),
               frac_beaten=float(np.mean(ref < a0)), samples=pairs)
    median = float(np.median(ref))
    if median <= 0:          # the rank test stands; ratios to a non-positive AUC do not
        return out
    out["ratio"] = a0 / median
    levels = ratio_interval_levels(r, ci)
    if levels is None:
        out.update(ci_low=0.0, ci_high=np.inf)
    elif np.isfinite(pairs).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["ci_low"], out["ci_high"] = np.nanquantile(pairs, levels)
    return out


SUMMARY_COLUMNS = ["quantity", "estimate", "ci_low", "ci_high", "p", "p_less", "n_random",
                   "n_prompts", "n_grid"]


def ablation_auc_stats(long: pd.DataFrame, n_boot: int = 1000,
                       seed: int | np.random.Generator = 0, ci: float = 0.95) -> dict:
    """AUCs of the ablation curves and the test of each ranked order against the random orders.

    An AUC is the trapezoid area (nats x fraction of heads) under a prompt-mean KL curve over
    ``fraction_removed``. Random orders may be evaluated on a coarser grid of removal counts
    than the ranked orders; the comparison grid is the set of fractions every random order has,
    and ranked orders are compared on that grid (they must contain it). The random reference
    is the median random AUC. Bootstrap: prompts resampled with replacement, every curve
    recomputed from the same resample (paired); all resamples are two matrix products.

    Parameters
    ----------
    long : DataFrame
        The long ablation table: ``order`` (``synergistic_first``, ``redundant_first``,
        ``random``), ``seed``, ``fraction_removed``, ``prompt``, ``kl`` (nats); optional
        ``prompt_half`` (>= 0 when the ranked orders were cross-validated: each prompt's ranked
        curves then come from the other half's ranking, which the pooled statistics need not
        know). Duplicate rows of one (order, seed, fraction, prompt) are averaged; missing rows
        are skipped in the prompt means; a fraction with no row for a curve is left out of that
        curve. Non-finite KL values (inf, NaN) are not skipped: a prompt with any of them is
        excluded from every curve (:func:`paired_finite_prompts`; paired policy), and counted.
    n_boot : int, default 1000
    seed : int or numpy Generator, default 0
    ci : float, default 0.95

    Returns
    -------
    dict
        ``summary``: DataFrame, columns :data:`SUMMARY_COLUMNS`, one row per quantity:

        * ``auc_synergistic_first``, ``auc_redundant_first``: AUC on the order's full grid up
          to max_fraction, percentile bootstrap interval over prompts;
        * ``auc_random``: median random AUC (comparison grid); interval: percentiles of the
          pairs (random order, resample), i.e. where one random order's AUC falls;
        * ``ratio_synergistic_random``, ``ratio_redundant_random``: AUC on the comparison grid
          / median random AUC, interval and one-sided rank p-values from :func:`rank_test`
          (``p``: more damaging than random, ``p_less``: less damaging); NaN ratio and interval
          (with a warning) when the median random AUC is zero or negative, NaN everything when
          there are no random orders;
        * ``frac_random_beaten_synergistic``, ``frac_random_beaten_redundant``: share of the
          random orders whose AUC is below the ranked order's (no interval).

        Missing orders give NaN. Also ``frac_random_beaten`` (synergistic), ``random_auc`` [R]
        (comparison grid, seeds ascending), ``samples`` (AUC quantities -> [B], ratios -> [R, B]
        pairs), ``grid_fractions``, ``ratio_levels``, ``n_random``, ``n_prompts`` (prompts
        used, after the exclusion), ``n_boot``, ``ci``, ``seed`` (None for a Generator),
        ``cross_validated``, ``n_nonfinite_kl`` (rows of ``long`` whose KL is inf or NaN),
        ``n_prompts_excluded`` and ``prompts_excluded`` (the prompts dropped for them).

    Raises
    ------
    ValueError
        An empty table, a missing column, no prompt left after the exclusion, or a ranked order
        lacking a point of the random orders' grid.
    """
    cube, curves, fracs, prompts, info = _curve_cube(long)
    c, k, n = cube.shape
    rng = np.random.default_rng(seed)
    # C-contiguous: a matrix product with the transposed bootstrap counts is 100x slower
    w = np.ascontiguousarray(np.concatenate([np.ones((n, 1)), bootstrap_weights(n, int(n_boot), rng)],
                                            axis=1))
    mean = weighted_pair_means(cube.reshape(c * k, n), w).reshape(c, k, -1)   # [C, K, 1+B]
    avail = np.isfinite(cube).any(axis=2)                                      # [C, K]
    order_of = np.array([o for o, _ in curves])
    seed_of = np.array([s for _, s in curves])
    is_random = order_of == "random"
    grid = _grid(avail, is_random, order_of)
    own = np.einsum("ck,ckb->cb", _trapezoid_matrix(fracs, avail),
                    np.where(avail[:, :, None], mean, 0.0))                    # [C, 1+B]
    grid_tw = trapezoid_weights(fracs[grid])
    on_grid = np.einsum("k,ckb->cb", grid_tw, mean[:, grid])                   # [C, 1+B]
    rand_idx = np.flatnonzero(is_random)[np.argsort(seed_of[is_random], kind="stable")]
    random = on_grid[rand_idx]
    n_random = int(np.isfinite(random[:, 0]).sum())
    if n_random:
        _positive_reference(float(np.median(random[np.isfinite(random[:, 0]), 0])),
                            "ablation_auc_stats")
    rows, samples, beaten = [], {}, {}
    nan_row = dict(estimate=np.nan, ci_low=np.nan, ci_high=np.nan)
    for name in RANKED:
        sel = np.flatnonzero(order_of == name)
        if len(sel):
            v = own[sel].mean(axis=0)
            samples[f"auc_{name}"] = v[1:]
            rows.append(dict(quantity=f"auc_{name}", estimate=v[0],
                             **{q: percentile_ci(v[1:], ci)[q] for q in ("ci_low", "ci_high")},
                             n_grid=int(avail[sel[0]].sum())))
        else:
            rows.append(dict(quantity=f"auc_{name}", **nan_row, n_grid=0))
    if n_random:
        ok = random[np.isfinite(random[:, 0])]
        boot = ok[:, 1:] if ok.shape[1] > 1 else ok[:, :1]
        spread = percentile_ci(boot.ravel(), ci)
        rows.append(dict(quantity="auc_random", estimate=float(np.median(ok[:, 0])),
                         ci_low=spread["ci_low"], ci_high=spread["ci_high"], n_random=n_random,
                         n_grid=int(grid.sum())))
        samples["auc_random"] = boot
    else:
        rows.append(dict(quantity="auc_random", **nan_row, n_random=0, n_grid=int(grid.sum())))
    for name in RANKED:
        short = name.removesuffix("_first")
        sel = np.flatnonzero(order_of == name)
        if len(sel):
            t = rank_test(on_grid[sel].mean(axis=0), random, ci)
        else:
            t = rank_test(np.full(on_grid.shape[1], np.nan), random, ci)
        samples[f"ratio_{short}_random"] = t["samples"]
        beaten[short] = t["frac_beaten"]
        rows.append(dict(quantity=f"ratio_{short}_random", estimate=t["ratio"], ci_low=t["ci_low"],
                         ci_high=t["ci_high"], p=t["p"], p_less=t["p_less"],
                         n_random=t["n_random"], n_grid=int(grid.sum())))
    for short, value in beaten.items():
        rows.append(dict(quantity=f"frac_random_beaten_{short}", estimate=value, **{
            q: np.nan for q in ("ci_low", "ci_high")}, n_random=n_random, n_grid=int(grid.sum())))
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    summary["n_prompts"] = n
    summary["n_random"] = summary.n_random.fillna(n_random).astype(int)
    summary["n_grid"] = summary.n_grid.astype(int)
    cv = "prompt_half" in long.columns and bool((long.prompt_half >= 0).any())
    return {"summary": summary, "frac_random_beaten": beaten["synergistic"],
            "random_auc": random[:, 0], "samples": samples, "grid_fractions": fracs[grid],
            "ratio_levels": ratio_interval_levels(n_random, ci), "n_random": n_random,
            "n_prompts": n, "n_boot": int(n_boot), "ci": ci,
            "seed": seed if isinstance(seed, (int, np.integer)) else None, "cross_validated": cv,
            "n_nonfinite_kl": info["n_nonfinite_kl"],
            "n_prompts_excluded": info["n_prompts_excluded"],
            "prompts_excluded": info["prompts_excluded"]}

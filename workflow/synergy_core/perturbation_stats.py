"""Statistics of the perturbation stage (paper Fig 4b): task accuracy per condition and noise scale
with intervals, and the one-sided tests that noising the synergistic core costs more accuracy than
noising random or redundant head sets (pure numpy/pandas: no torch, no file I/O).

Input
-----
The merged per-problem long table (``problems.tsv``; :data:`LONG_COLUMNS` are the ones used): one
row per (unit, problem), a *unit* being one (condition, set, alpha, repeat) -- the model with one
Gaussian noise draw of scale ``alpha`` on one head set, or the unperturbed ``baseline`` (set 0,
alpha 0, repeat 0) -- and ``correct`` 0/1. Every unit answers the same problems exactly once
(:func:`accuracy_cube` checks it). Conditions: ``synergistic`` (one fixed set, the top
``core_fraction`` of heads by ``syn_red``), ``redundant`` (one fixed set, the bottom), ``random``
(``n_random_sets`` random sets of the same size); each noised set has ``n_repeats`` independent
noise draws per alpha.

Why problems are not the independent units
------------------------------------------
A noise draw and a head set are shared by every problem a unit answers: a draw (or a random set)
that happens to hit important weights lowers the accuracy on all problems at once. The
observations of one unit are therefore correlated through the draw and the set, and a test that
treats problems as the independent replicates (a paired sign-flip or McNemar test over per-problem
differences) answers "would these very draws and sets differ on new problems?", not "is the
synergistic core more harmful than random head sets?". Its standard error leaves out the
between-set and between-draw variance, and its false-positive rate for the claim about head sets
grows with the number of problems. ``tests/calib_perturbation.py`` measures it under a null in
which the synergistic set is just another random set (logistic model: problem logits N(-0.3, 1.5),
set effects sd 0.3 and draw effects sd 0.2 logits; 19 random sets, 3 repeats): a one-sided
sign-flip test over 200 problems rejects at 0.05 in 32% of 10,000 simulations (41% with 500
problems), and holds its level (4.5%) only when sets and draws have no effect at all. Under the
same null the set-rank test below rejects in 5.1% (10,000 simulations; exact: at most 5% up to
Monte Carlo error). The tests used here take the sets and repeats as the replicates instead:

1. ``synergistic_vs_random`` (H1: synergistic accuracy *lower* than the random sets') and
   ``redundant_vs_random`` (H1: redundant accuracy *higher*): exact **set-rank test**
   (:func:`set_rank_p`). Statistic per set: its accuracy averaged over its repeats and the problems
   (all sets of one alpha have the same number of repeats and the same problems, so the core set
   and the random sets are exchangeable under the null "the core is as harmful as a random set").
   ``p = (1 + #{random sets at least as extreme}) / (1 + n_random_sets)``, ties counted as
   extreme (tolerance ``1e-9 * max(1, |x|)``); floor ``1 / (1 + n_random_sets)`` (0.05 with 19
   sets); NaN without random sets. Effect size: Glass's delta (:func:`glass_delta`). Measured
   power (model above): 0.99 with the synergistic set 1.5 logits more harmful, 0.64 with 0.75.
2. ``synergistic_vs_redundant`` (H1: synergistic *lower* than redundant): exact **repeat
   permutation test** (:func:`repeat_permutation_p`) on the repeat-level accuracies (each draw's
   accuracy averaged over the problems): the two fixed sets are compared through their independent
   noise draws, so the null is "the two sets are equally harmful on these problems" (the draws are
   exchangeable between them). Every split of the 2 x n_repeats draws into two groups is
   enumerated while there are at most 200,000 (n_repeats <= 10); floor ``1 / C(2n, n)`` (0.05 with
   3 repeats: only complete separation reaches it). Effect size: Hedges' g (:func:`hedges_g`).
   Measured false-positive rate 0.049 (10,000 simulations, 3 repeats; 0.042 with 5), power 0.85
   with 5 repeats and the synergistic set 0.5 logits more harmful.
3. ``diff`` = ``accuracy_a - accuracy_b`` (accuracy in [0, 1]) of the conditions' accuracies,
   with a percentile interval from the bootstrap replicates of item 4 (paired: the same problem
   resample on both sides). Note what it is about: the *mean* of the random sets. A synergistic
   core below that mean can have a diff interval excluding 0 and still an unremarkable set-rank
   p (it lies within the spread of the random sets); the set-rank p is the verdict.
4. ``accuracy`` per (condition, alpha): the mean over its units and the problems, with a
   **two-stage bootstrap** interval (:func:`two_stage_bootstrap`): each replicate resamples the
   problems with replacement -- the same resample for every condition, so differences are paired
   -- and, independently per condition, its units: a condition with several sets (``random``)
   resamples sets, each with all its repeats; a condition with one set (``synergistic``,
   ``redundant``, the baseline) resamples its repeats (the baseline's single unit stays). With few
   repeats (3) the resampled draw variance is too small by ``(n - 1) / n`` and has few distinct
   values, so the fixed-set intervals under-cover when draws matter. Measured coverage of the
   95% synergistic interval (truth: the fixed set's expected accuracy over problems and draws;
   200 problems, 3 repeats): 0.956 with draw effects sd 0.2 logits, 0.875 with sd 0.5 (0.944
   with 10 repeats); the random condition's interval (resampled sets): 0.958.

One-sided p-values are reported per alpha without a correction for the number of alphas; all
numbers are numeric (NaN where undefined -- never a silent 0; undefined effect sizes are counted
in a log warning).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from itertools import chain, combinations
from typing import NamedTuple

import numpy as np
import pandas as pd

from .perturbation_plan import CONDITIONS
from .resample import bootstrap_weights, percentile_ci

log = logging.getLogger(__name__)

#: Columns of the long table the statistics read (``answer`` and ``n_tokens`` are not needed).
LONG_COLUMNS = ("problem_id", "condition", "set", "alpha", "repeat", "correct")
UNIT_KEYS = ("condition", "set", "alpha", "repeat")
_CONDITION_RANK = {c: i for i, c in enumerate(CONDITIONS)}

#: Repeat-permutation test: enumerate every split while there are at most this many, else sample.
MAX_EXACT_SPLITS = 200_000
#: Monte Carlo splits (plus the identity) when there are too many to enumerate.
N_MC_SPLITS = 20_000


class Comparison(NamedTuple):
    """One directional comparison: H1 ``accuracy(a) < accuracy(b)`` (``direction == "less"``) or
    ``>`` (``"greater"``), tested by ``test`` (``"set_rank"`` or ``"repeat_permutation"``)."""

    a: str
    b: str
    direction: str
    test: str

    @property
    def text(self) -> str:
        return f"{self.a} {'<' if self.direction == 'less' else '>'} {self.b}"


#: The one-sided alternatives, as in the paper: noising the synergistic core costs more accuracy
#: (lower accuracy) than noising random sets or the redundant core; the redundant core costs less
#: (higher accuracy) than random sets.
ALTERNATIVES: dict[str, Comparison] = {
    "synergistic_vs_random": Comparison("synergistic", "random", "less", "set_rank"),
    "synergistic_vs_redundant": Comparison("synergistic", "redundant", "less", "repeat_permutation"),
    "redundant_vs_random": Comparison("redundant", "random", "greater", "set_rank"),
}

ACCURACY_COLUMNS = ["condition", "alpha", "accuracy", "ci_low", "ci_high", "n_problems", "n_sets", "n_repeats",
                    "unit_sd"]
SETS_COLUMNS = ["condition", "set", "alpha", "accuracy"]
TESTS_COLUMNS = ["comparison", "alpha", "alternative", "test", "diff", "diff_ci_low", "diff_ci_high", "effect_size",
                 "effect_size_kind", "p", "p_floor", "n_a", "n_b"]
_EFFECT_SIZE_KIND = {"set_rank": "glass_delta", "repeat_permutation": "hedges_g"}


class OneSidedP(NamedTuple):
    """A one-sided p-value, the smallest value its test can give (``p_floor``), the number of null
    draws behind it (random sets, or label splits) and whether it is exact."""

    p: float
    p_floor: float
    n_null: int
    exact: bool


class UnitGroup(NamedTuple):
    """The units of one (condition, alpha): ``sets`` [S] set labels (ascending) and ``units``
    [S, R] row indices into :attr:`AccuracyCube.correct` (set ``sets[s]``, its ``r``-th repeat in
    ascending repeat label)."""

    sets: np.ndarray
    units: np.ndarray


@dataclass(frozen=True)
class AccuracyCube:
    """The long table as arrays.

    ``problem_ids`` [P] (str, sorted); ``units`` [U] DataFrame of :data:`UNIT_KEYS` (baseline first,
    then by alpha, condition order of :data:`perturbation_plan.CONDITIONS`, set, repeat);
    ``correct`` [U, P] float64 0/1 (``correct[u, p]``: unit ``u`` answered problem ``p``
    correctly); ``groups``: (condition, alpha) -> :class:`UnitGroup`, in the same order.
    """

    problem_ids: np.ndarray
    units: pd.DataFrame
    correct: np.ndarray
    groups: dict

    def repeat_accuracies(self, condition: str, alpha: float) -> np.ndarray:
        """[S, R] accuracy of each unit of the group (mean over problems)."""
        return self.correct[self.groups[(condition, alpha)].units].mean(axis=-1)


def _unit_label(condition, set_, alpha, repeat) -> str:
    return f"{condition}/set{set_}/alpha{alpha:g}/repeat{repeat}"


def _integral(column: pd.Series, name: str) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(float)) | (values != np.round(values))
    if bad.any():
        raise ValueError(f"column {name!r} must hold integers; found {column[bad].iloc[0]}")
    return values.astype(np.int64)


def accuracy_cube(long: pd.DataFrame) -> AccuracyCube:
    """Check the long table and return it as arrays (:class:`AccuracyCube`).

    Refused (``ValueError`` naming the problem): missing columns; an empty table; an unknown
    condition; ``correct`` not 0/1 (or missing); non-integer ``set``/``repeat`` or non-finite
    ``alpha``; a (unit, problem) row present twice; a unit that did not answer every problem of the
    table; a baseline unit at alpha != 0 or set != 0; a synergistic/redundant condition with more
    than one set at an alpha; sets of one alpha with different numbers of repeats (the set-rank test
    needs every set's accuracy averaged over the same number of draws to make them exchangeable).
    """
    missing = [c for c in LONG_COLUMNS if c not in long.columns]
    if missing:
        raise ValueError(f"perturbation table lacks column(s) {missing}")
    if not len(long):
        raise ValueError("perturbation table is empty")
    df = pd.DataFrame({"problem_id": long["problem_id"].astype(str), "condition": long["condition"].astype(str)})
    unknown = sorted(set(df.condition) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; known: {list(CONDITIONS)}")
    df["set"] = _integral(long["set"], "set").to_numpy()
    df["repeat"] = _integral(long["repeat"], "repeat").to_numpy()
    alpha = pd.to_numeric(long["alpha"], errors="coerce").to_numpy(float)
    if not np.isfinite(alpha).all():
        raise ValueError(f"column 'alpha' must be finite numbers; found {long['alpha'][~np.isfinite(alpha)].iloc[0]}")
    df["alpha"] = alpha
    correct = pd.to_numeric(long["correct"], errors="coerce").to_numpy(float)
    bad = ~np.isin(correct, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"column 'correct' must be 0 or 1; found {long['correct'][bad].iloc[0]} "
                         f"in {int(bad.sum())} row(s)")

    base = df[df.condition == "baseline"]
    if ((base.alpha != 0) | (base.set != 0)).any():
        raise ValueError("baseline units must have alpha 0 and set 0")

    units = (df[list(UNIT_KEYS)].drop_duplicates()
             .assign(_base=lambda u: u.condition != "baseline", _rank=lambda u: u.condition.map(_CONDITION_RANK))
             .sort_values(["_base", "alpha", "_rank", "set", "repeat"])
             .drop(columns=["_base", "_rank"]).reset_index(drop=True))
    unit_of_row = pd.MultiIndex.from_frame(units).get_indexer(pd.MultiIndex.from_frame(df[list(UNIT_KEYS)]))
    problem_ids = np.unique(df.problem_id.to_numpy())
    problem_of_row = np.searchsorted(problem_ids, df.problem_id.to_numpy())
    n_units, n_problems = len(units), len(problem_ids)

    cell = unit_of_row * n_problems + problem_of_row
    seen = np.bincount(cell, minlength=n_units * n_problems).reshape(n_units, n_problems)
    if (seen > 1).any():
        u, p = np.argwhere(seen > 1)[0]
        raise ValueError(f"duplicate rows: unit {_unit_label(*units.iloc[u])} answered problem "
                         f"{problem_ids[p]!r} {seen[u, p]} times ({int((seen > 1).sum())} duplicated cells)")
    if (seen == 0).any():
        u = int(np.flatnonzero((seen == 0).any(axis=1))[0])
        lacking = problem_ids[seen[u] == 0]
        raise ValueError(f"unit {_unit_label(*units.iloc[u])} answered {int(seen[u].sum())} of the "
                         f"{n_problems} problems; missing {list(lacking[:5])}{' ...' if len(lacking) > 5 else ''} "
                         f"({int((seen == 0).any(axis=1).sum())} incomplete units); every unit must answer "
                         "the same problems")
    table = np.zeros((n_units, n_problems))
    table[unit_of_row, problem_of_row] = correct

    groups = {}
    for (condition, alpha_value), g in units.groupby(["condition", "alpha"], sort=False):
        set_labels = np.unique(g.set.to_numpy())
        # units are sorted by repeat within a set, so row r of a set is its r-th repeat
        per_set = [g.index.to_numpy()[g.set.to_numpy() == s] for s in set_labels]
        n_rep = {int(s): len(rows) for s, rows in zip(set_labels, per_set)}
        if len(set(n_rep.values())) != 1:
            raise ValueError(f"{condition} at alpha {alpha_value:g}: sets have different numbers of "
                             f"repeats ({n_rep}); every set needs the same")
        if condition in ("synergistic", "redundant") and len(set_labels) != 1:
            raise ValueError(f"{condition} at alpha {alpha_value:g} has {len(set_labels)} sets "
                             f"({set_labels.tolist()}); it is one fixed set")
        groups[(condition, float(alpha_value))] = UnitGroup(set_labels.astype(np.int64), np.stack(per_set))
    for alpha_value in sorted({a for (c, a) in groups if c != "baseline"}):
        n_rep = {c: g.units.shape[1] for (c, a), g in groups.items() if a == alpha_value and c != "baseline"}
        if len(set(n_rep.values())) > 1:
            raise ValueError(f"at alpha {alpha_value:g} the conditions have different numbers of repeats "
                             f"({n_rep}); the set-rank test needs the same for every set")
    return AccuracyCube(problem_ids, units, table, groups)


def _tolerance(x: float) -> float:
    return 1e-9 * max(1.0, abs(x))


def _check_direction(direction: str) -> None:
    if direction not in ("less", "greater"):
        raise ValueError(f"direction must be 'less' or 'greater', got {direction!r}")


def set_rank_p(core: float, random_sets, direction: str = "less") -> OneSidedP:
    """Exact one-sided set-rank p-value of one core set against random sets of the same size.

    Parameters
    ----------
    core : float
        The core set's accuracy (mean over its repeats and the problems).
    random_sets : array_like, float, shape [n]
        Each random set's accuracy, computed the same way.
    direction : "less" | "greater"
        H1: the core's accuracy is lower ("less") or higher ("greater") than random sets'.

    Returns
    -------
    OneSidedP
        ``p = (1 + k) / (1 + n)``, ``k`` the random sets at least as extreme as the core (``<=``
        for "less", ``>=`` for "greater", within ``1e-9 * max(1, |core|)``: ties count against
        the core, so the test stays exact with discrete accuracies); ``p_floor = 1 / (1 + n)``.
        Exact when the core and the random sets are exchangeable. ``n == 0``: p and floor NaN.
    """
    _check_direction(direction)
    x = np.asarray(random_sets, dtype=float).ravel()
    n = len(x)
    if n == 0 or not np.isfinite(core):
        return OneSidedP(np.nan, np.nan if n == 0 else 1 / (1 + n), n, True)
    tol = _tolerance(core)
    k = int(np.sum(x <= core + tol)) if direction == "less" else int(np.sum(x >= core - tol))
    return OneSidedP((1 + k) / (1 + n), 1 / (1 + n), n, True)


def _split_statistics(values: np.ndarray, first: np.ndarray, n_a: int) -> np.ndarray:
    """mean(values[first]) - mean(the rest), for each row of ``first`` [N, n_a]."""
    n_b = len(values) - n_a
    sum_a = values[first].sum(axis=1)
    return sum_a / n_a - (values.sum() - sum_a) / n_b


def repeat_permutation_p(a, b, direction: str = "less", *, seed: int = 0, max_exact: int = MAX_EXACT_SPLITS,
                         n_mc: int = N_MC_SPLITS) -> OneSidedP:
    """Exact one-sided permutation p-value of ``mean(a) - mean(b)`` over the labels of the repeats.

    Parameters
    ----------
    a, b : array_like, float, shape [n_a], [n_b]
        Repeat-level accuracies (one noise draw each, mean over the problems) of two fixed sets.
    direction : "less" | "greater"
        H1: ``mean(a) < mean(b)`` ("less") or ``>`` ("greater").
    seed, max_exact, n_mc
        Every one of the ``C(n_a + n_b, n_a)`` splits is enumerated while there are at most
        ``max_exact``; otherwise ``n_mc`` random splits (from ``seed``) plus the observed one.

    Returns
    -------
    OneSidedP
        Exact: ``p`` = the fraction of all splits (the observed one included) whose statistic is
        ``<=`` the observed (``>=`` for "greater"; tolerance ``1e-9 * max(1, |observed|)``),
        ``p_floor = 1 / C(n_a + n_b, n_a)``. Monte Carlo: ``p = (1 + k) / (1 + n_mc)``, floor
        ``1 / (1 + n_mc)``. NaN when either side is empty.
    """
    _check_direction(direction)
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return OneSidedP(np.nan, np.nan, 0, True)
    values = np.concatenate([a, b])
    n = n_a + n_b
    observed = _split_statistics(values, np.arange(n_a)[None, :], n_a)[0]
    tol = _tolerance(observed)
    n_splits = math.comb(n, n_a)
    if n_splits <= max_exact:
        first = np.fromiter(chain.from_iterable(combinations(range(n), n_a)), dtype=np.intp,
                            count=n_splits * n_a).reshape(n_splits, n_a)
        null = _split_statistics(values, first, n_a)
        hits = np.sum(null <= observed + tol) if direction == "less" else np.sum(null >= observed - tol)
        return OneSidedP(float(hits / n_splits), 1 / n_splits, n_splits, True)
    rng = np.random.default_rng(seed)
    first = rng.permuted(np.tile(np.arange(n), (n_mc, 1)), axis=1)[:, :n_a]
    null = _split_statistics(values, first, n_a)
    hits = np.sum(null <= observed + tol) if direction == "less" else np.sum(null >= observed - tol)
    return OneSidedP(float((1 + hits) / (1 + n_mc)), 1 / (1 + n_mc), n_mc + 1, False)


def glass_delta(core: float, random_sets) -> float:
    """Glass's delta ``(core - mean(random_sets)) / sd(random_sets, ddof=1)``: how many random-set
    standard deviations the core set lies from their mean (negative: lower accuracy). NaN with
    fewer than 2 random sets or when they all have the same accuracy (sd 0)."""
    x = np.asarray(random_sets, dtype=float).ravel()
    if len(x) < 2 or not np.isfinite(core):
        return np.nan
    sd = float(np.std(x, ddof=1))
    if not sd > 1e-12 * max(1.0, abs(float(np.mean(x)))):
        return np.nan
    return float((core - np.mean(x)) / sd)


def hedges_g(a, b) -> float:
    """Hedges' g of ``a`` against ``b``: ``J (mean(a) - mean(b)) / s_pooled``, ``s_pooled =
    sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2))`` (variances ddof=1) and the
    small-sample correction ``J = 1 - 3 / (4 (n_a + n_b) - 9)``. NaN with fewer than 2 values on a
    side or a pooled sd of 0."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        return np.nan
    pooled = math.sqrt(((n_a - 1) * np.var(a, ddof=1) + (n_b - 1) * np.var(b, ddof=1)) / (n_a + n_b - 2))
    if not pooled > 1e-12:
        return np.nan
    j = 1 - 3 / (4 * (n_a + n_b) - 9)
    return float(j * (np.mean(a) - np.mean(b)) / pooled)


def two_stage_bootstrap(correct: np.ndarray, groups: dict, n_boot: int, rng: np.random.Generator) -> dict:
    """Bootstrap replicates of each group's accuracy, resampling problems and then units.

    Parameters
    ----------
    correct : np.ndarray, shape [U, P]
        0/1 (or any per-problem score) of each unit on each problem.
    groups : dict
        key -> int array [S, R]: the rows of ``correct`` of one group (condition, alpha), ``S``
        sets of ``R`` repeats.
    n_boot : int
        Replicates.
    rng : np.random.Generator

    Returns
    -------
    dict
        key -> float64 [n_boot]: the group's accuracy in each replicate. Replicate ``b`` draws one
        problem resample (multiplicities ``w_b``, shared by every group: differences between
        groups are paired over problems) and gives every unit the accuracy ``correct[u] @ w_b /
        P``; then, per group independently, it resamples the sets with replacement (each with all
        its repeats) when ``S > 1``, else the repeats of the single set, and averages.
    """
    correct = np.asarray(correct, dtype=np.float64)
    n_problems = correct.shape[1]
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    weights = bootstrap_weights(n_problems, n_boot, rng)                      # [P, B]
    unit_acc = correct @ weights / n_problems                                 # [U, B]
    out = {}
    for key, index in groups.items():
        index = np.asarray(index)
        level = unit_acc[index].mean(axis=1) if index.shape[0] > 1 else unit_acc[index[0]]   # [k, B]
        k = level.shape[0]
        counts = rng.multinomial(k, np.full(k, 1 / k), size=n_boot)           # [B, k]
        out[key] = np.einsum("bk,kb->b", counts, level) / k
    return out


def perturbation_statistics(long: pd.DataFrame, n_boot: int = 1000, ci: float = 0.95, seed: int = 0):
    """Accuracy per condition with intervals, each set's accuracy, and the tests (module docstring).

    Returns
    -------
    (accuracy, sets, tests) : three DataFrames
        ``accuracy`` (:data:`ACCURACY_COLUMNS`): one row per (condition, alpha), baseline first,
        then by alpha, conditions synergistic, redundant, random; ``accuracy`` is the mean over
        units and problems, ``ci_low``/``ci_high`` the two-stage bootstrap percentile interval,
        ``n_sets``/``n_repeats`` the sets and repeats per set, ``unit_sd`` the sd of the unit
        accuracies (ddof=1; NaN with one unit).
        ``sets`` (:data:`SETS_COLUMNS`): one row per (condition, set, alpha), accuracy averaged over
        the repeats and problems.
        ``tests`` (:data:`TESTS_COLUMNS`): one row per (alpha, comparison of :data:`ALTERNATIVES`)
        for every noised alpha; ``diff`` = accuracy_a - accuracy_b with its bootstrap interval,
        ``effect_size`` Glass's delta (set rank) or Hedges' g (repeat permutation), ``n_a``/``n_b``
        the sets (set rank) or repeats (repeat permutation) compared; NaN and 0 counts where a
        side is missing.
    """
    cube = accuracy_cube(long)
    rng = np.random.default_rng(seed)
    boot = two_stage_bootstrap(cube.correct, {k: g.units for k, g in cube.groups.items()}, n_boot, rng)
    n_problems = len(cube.problem_ids)

    accuracy_rows, set_rows = [], []
    point = {}
    for (condition, alpha), group in cube.groups.items():
        unit_acc = cube.correct[group.units].mean(axis=-1)                    # [S, R]
        point[(condition, alpha)] = float(unit_acc.mean())
        interval = percentile_ci(boot[(condition, alpha)], ci)
        accuracy_rows.append(dict(condition=condition, alpha=alpha, accuracy=point[(condition, alpha)],
                                  ci_low=float(interval["ci_low"]), ci_high=float(interval["ci_high"]),
                                  n_problems=n_problems, n_sets=unit_acc.shape[0], n_repeats=unit_acc.shape[1],
                                  unit_sd=float(np.std(unit_acc, ddof=1)) if unit_acc.size > 1 else np.nan))
        set_rows += [dict(condition=condition, set=int(s), alpha=alpha, accuracy=float(a))
                     for s, a in zip(group.sets, unit_acc.mean(axis=1))]

    test_rows = []
    for alpha in sorted({a for (c, a) in cube.groups if c != "baseline"}):
        for name, comp in ALTERNATIVES.items():
            test_rows.append(_test_row(cube, boot, point, name, comp, alpha, ci, seed))
    tests = pd.DataFrame(test_rows, columns=TESTS_COLUMNS)
    undefined = int(tests.effect_size.isna().sum())
    if undefined:
        log.warning("%d of %d effect sizes are undefined (NaN): fewer than 2 random sets or repeats, "
                    "or no spread among them", undefined, len(tests))
    accuracy = pd.DataFrame(accuracy_rows, columns=ACCURACY_COLUMNS)
    sets = pd.DataFrame(set_rows, columns=SETS_COLUMNS)
    return accuracy, sets, tests.astype({"n_a": np.int64, "n_b": np.int64})


def _test_row(cube: AccuracyCube, boot: dict, point: dict, name: str, comp: Comparison, alpha: float,
              ci: float, seed: int) -> dict:
    row = dict(comparison=name, alpha=alpha, alternative=comp.text, test=comp.test, diff=np.nan,
               diff_ci_low=np.nan, diff_ci_high=np.nan, effect_size=np.nan,
               effect_size_kind=_EFFECT_SIZE_KIND[comp.test], p=np.nan, p_floor=np.nan, n_a=0, n_b=0)
    key_a, key_b = (comp.a, alpha), (comp.b, alpha)
    if key_a not in cube.groups or key_b not in cube.groups:
        return row
    interval = percentile_ci(boot[key_a] - boot[key_b], ci)
    row.update(diff=point[key_a] - point[key_b], diff_ci_low=float(interval["ci_low"]),
               diff_ci_high=float(interval["ci_high"]))
    acc_a, acc_b = cube.repeat_accuracies(*key_a), cube.repeat_accuracies(*key_b)   # [S, R] each
    if comp.test == "set_rank":
        core, random_sets = float(acc_a.mean()), acc_b.mean(axis=1)
        result = set_rank_p(core, random_sets, comp.direction)
        row.update(effect_size=glass_delta(core, random_sets), n_a=acc_a.shape[0], n_b=len(random_sets))
    else:
        repeats_a, repeats_b = acc_a.ravel(), acc_b.ravel()
        result = repeat_permutation_p(repeats_a, repeats_b, comp.direction, seed=seed)
        row.update(effect_size=hedges_g(repeats_a, repeats_b), n_a=len(repeats_a), n_b=len(repeats_b))
    row.update(p=result.p, p_floor=result.p_floor)
    return row

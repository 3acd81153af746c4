"""Statistics of the fine-tuning stage (paper Fig 5): best- and final-checkpoint accuracy per run,
summaries per (method, region), two-sample tests of the regions over runs, and the RL-vs-SFT
contrast (pure numpy/scipy/pandas: no torch, no file I/O).

Input
-----
``accuracy`` (``finetune/accuracy.tsv``; :data:`INPUT_COLUMNS` are the ones used): one row per
evaluated checkpoint: ``method`` (str: "grpo", "sft"), ``region`` (str: "synergistic",
"redundant", "random": the half of the attention heads that was trained), ``seed`` (int),
``step`` (int), ``accuracy`` (float in [0, 1]: the share of the evaluation problems answered
correctly; NaN where the checkpoint has no score) and ``n_problems`` (int). The base model before
training is method ``"base"`` (region "none", seed 0, step 0): it is reported in ``runs`` and
``groups`` and kept out of every comparison. A *run* is one (method, region, seed).

The unit is the run
-------------------
Every checkpoint answers the same evaluation problems, so problems are not independent replicates
of a comparison of regions (a problem-level test would answer "would these very runs differ on
new problems?"); the runs (seeds) are. Per method and checkpoint choice the tests compare the
``n_a`` runs of one region with the ``n_b`` runs of another (paper: 5 seeds each).

The test: unpaired exact permutation test (:func:`permutation_p`)
----------------------------------------------------------------
Statistic: ``mean(a) - mean(b)`` of the runs' accuracies. Every one of the ``C(n_a + n_b, n_a)``
relabellings of the runs is enumerated while there are at most :data:`EXACT_LIMIT` (100,000);
otherwise :data:`N_MONTE_CARLO` (99,999) seeded random relabellings with ``p = (1 + k) / (1 + B)``.
Two-sided ``p``: relabellings with ``|stat| >= |observed| - 1e-12``; ``p_one_sided`` (H1: the
first region higher) with ``stat >= observed - 1e-12``, from the same null distribution. Ties
count against rejection, so accuracies on a grid of 1/n_problems (many ties; float rounding splits
some of them, which scipy's relative tolerance misses) never make the test liberal.
It is exact when the runs are exchangeable between the two regions under the null -- the null is
"the two regions' runs have the same distribution", not only "the same mean": runs that differ
only in spread are rejected too often (measured two-sided 0.057 at 0.05 with a 2x sd ratio, 0.078
with 4x; the Welch interval keeps its coverage there, 0.951 and 0.945, and is the cross-check).

* **Why unpaired.** Runs of different regions with the same seed share the data order and the
  sampling seed, so they may be positively correlated. The unpaired test ignores that pairing; a
  positive correlation makes it conservative, never liberal (the permutation null spreads over
  the between-seed variance that the difference of means has cancelled): measured false-positive
  rate 0.0135 at 0.05 with rho 0.5, against 0.047 independent (``tests/calib_finetune.py``;
  0.031 with accuracies on a 1/500 grid, the ties counted against rejection). The paired
  alternative, a sign-flip test over the seeds, has only 2^5 = 32 sign patterns with 5 pairs: its
  two-sided floor is 2/32 = 0.0625, so it could never reach 0.05.
* **What an exact test can give.** With 5 against 5 runs the smallest two-sided p is
  ``2 / C(10, 5) = 2/252 = 0.0079`` (``p_floor``: complete separation and its mirror image; one-
  sided ``1/252 = 0.0040``). The paper's p < 0.001 for synergistic vs redundant under RL is below
  what an exact test on 5 runs per region can give; it must come from a parametric test (a
  t-test reaches it with Hedges' g ~ 5). Here such an effect gives ``p = p_floor``. Measured
  power at 0.05 (normal runs): 0.27 two-sided (0.41 one-sided) for a difference of 1 run sd,
  0.78 (0.89) for 2 sd; the paper's synergistic-vs-random g ~ 1.4 lies between.

Effect size and interval
------------------------
``hedges_g`` (:func:`hedges_g`, the paper's): ``J (mean(a) - mean(b)) / s_pooled``, pooled sd
with ddof 1 and ``J = 1 - 3 / (4 (n_a + n_b) - 9)``; NaN with the reason in ``g_note`` when a
side has fewer than 2 runs or the pooled sd is 0 (counted in a log warning). ``diff_lo`` /
``diff_hi``: Welch t interval of the difference (:func:`welch_interval`, level ``ci``); NaN when a
side has fewer than 2 runs or both have no spread.

Checkpoint selection
--------------------
``best``: each run's highest accuracy over its evaluated steps ``>= best_from_step`` (ties: the
earliest step; NaN accuracies skipped). That is the paper's choice, and it picks the checkpoint on
the evaluation set itself: best accuracies are optimistically biased (the maximum of several noisy
evaluations). The selection is applied to every region alike, so under the null the runs stay
exchangeable and the tests stay calibrated; the bias is in the accuracies, not the p-values
(measured with the best of 10 noisy checkpoints: false-positive rate 0.048, the best accuracy
1.5 evaluation-noise sds above the run's level).
``final``: the last evaluated step, free of selection -- the honest one.

RL vs SFT (:func:`interaction_table`)
-------------------------------------
The paper's "RL shows the advantage, SFT does not" is a claim about a difference of differences,
tested as one: ``contrast = diff(grpo) - diff(sft)`` (each diff = first region minus second) of
four independent group means, ``se = sqrt(sum_i s_i^2 / n_i)``, Welch-Satterthwaite
``df = se^4 / sum_i (s_i^2 / n_i)^2 / (n_i - 1)``, a t interval and a two-sided t p-value
(:func:`welch_contrast`). "SFT: no significant difference" alone would not show that the methods
differ. Measured: false-positive rate 0.046 at 0.05 and coverage 0.955 (equal spreads; 0.048 and
0.952 with SFT runs twice as noisy; 0.032 skewed), power 0.30 for a contrast of 1.4 run sds (the
paper's RL g with nothing under SFT) and 0.87 for 3 sds: with 5 seeds only a large difference
between the methods is detectable. Runs of one method with the same seed may be positively
correlated, which (as above) makes this contrast conservative (0.008 with rho 0.5).

Everything is numeric (NaN where undefined -- never a silent 0; undefined values are counted in a
log warning); no correction for the number of comparisons, methods and selections.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import lru_cache
from itertools import chain, combinations
from math import comb
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

log = logging.getLogger(__name__)

#: Columns of the per-checkpoint table the statistics read.
INPUT_COLUMNS = ("method", "region", "seed", "step", "accuracy", "n_problems")
REGIONS = ("synergistic", "redundant", "random")
BASE_METHOD, BASE_REGION = "base", "none"
#: Comparison name -> (first region, second region); every difference is first minus second.
COMPARISONS: dict[str, tuple[str, str]] = {
    "synergistic_vs_random": ("synergistic", "random"),
    "synergistic_vs_redundant": ("synergistic", "redundant"),
    "redundant_vs_random": ("redundant", "random"),
}
SELECTIONS = ("best", "final")
#: The two methods of the RL-vs-SFT contrast: diff(INTERACTION_METHODS[0]) - diff([1]).
INTERACTION_METHODS = ("grpo", "sft")

#: Enumerate every relabelling while there are at most this many, else sample.
EXACT_LIMIT = 100_000
#: Monte Carlo relabellings (the observed one is added: p = (1 + k) / (1 + B)).
N_MONTE_CARLO = 99_999
#: A relabelling's statistic counts as at least as extreme within this (ties against rejection).
TIE_TOLERANCE = 1e-12
#: A pooled sd or standard error at most this is treated as 0 (no spread).
ZERO_SPREAD = 1e-12
TEST_EXACT, TEST_MONTE_CARLO = "exact_permutation", "monte_carlo_permutation"

RUN_COLUMNS = ["method", "region", "seed", "n_steps", "n_missing", "best_step", "best_accuracy", "final_step",
               "final_accuracy"]
GROUP_COLUMNS = ["method", "region", "selection", "n_runs", "n_missing", "mean", "sd", "median", "min", "max",
                 "ci_lo", "ci_hi"]
TEST_COLUMNS = ["method", "selection", "comparison", "test", "n_a", "n_b", "mean_a", "mean_b", "diff", "diff_lo",
                "diff_hi", "hedges_g", "g_note", "p", "p_one_sided", "p_floor", "p_one_sided_floor",
                "n_relabellings"]
INTERACTION_COLUMNS = ["selection", "comparison", "diff_grpo", "diff_sft", "contrast", "se", "df", "lo", "hi", "p",
                       "note"]

NOTE_FEW = "fewer than 2 runs in a group"
NOTE_NO_SPREAD = "no spread between runs (sd 0)"
NOTE_NOT_FINITE = "non-finite accuracy"


# ------------------------------------------------------------------------------ two-sample pieces

class PermutationP(NamedTuple):
    """Result of :func:`permutation_p`: two-sided ``p``, one-sided ``p_one_sided`` (H1: mean(a) >
    mean(b)), the smallest value each can take, the relabellings behind them and whether exact."""

    p: float
    p_one_sided: float
    p_floor: float
    p_one_sided_floor: float
    n_relabellings: int
    exact: bool


class EffectSize(NamedTuple):
    """Hedges' g and ``note``: "" when defined, else why it is NaN."""

    g: float
    note: str


class Contrast(NamedTuple):
    """A linear contrast of independent group means (:func:`welch_contrast`): ``estimate``, its
    ``se``, Satterthwaite ``df``, t interval ``lo``/``hi``, two-sided ``p``; ``note`` "" when
    defined, else why the interval and p are NaN."""

    estimate: float
    se: float
    df: float
    lo: float
    hi: float
    p: float
    note: str


def _values(x) -> np.ndarray:
    return np.asarray(x, dtype=float).ravel()


@lru_cache(maxsize=32)
def _all_splits(n: int, n_a: int) -> np.ndarray:
    """[C(n, n_a), n_a] every choice of the first group's positions, the identity first."""
    count = comb(n, n_a)
    out = np.fromiter(chain.from_iterable(combinations(range(n), n_a)), dtype=np.intp, count=count * n_a)
    out = out.reshape(count, n_a)
    out.flags.writeable = False
    return out


def _split_differences(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """mean(values[first]) - mean(the rest) for each row of ``first`` [N, n_a]."""
    n_a, n_b = first.shape[1], len(values) - first.shape[1]
    sum_a = values[first].sum(axis=1)
    return sum_a / n_a - (values.sum() - sum_a) / n_b


def _random_splits(n: int, n_a: int, n_draws: int, seed: int, chunk: int = 10_000):
    """Yield [m, n_a] blocks of uniformly random first-group positions, ``n_draws`` rows in all."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_draws, chunk):
        m = min(chunk, n_draws - start)
        yield np.argsort(rng.random((m, n)), axis=1)[:, :n_a]


def permutation_p(a, b, *, seed: int = 0, exact_limit: int = EXACT_LIMIT,
                  n_monte_carlo: int = N_MONTE_CARLO) -> PermutationP:
    """Permutation test of ``mean(a) - mean(b)`` over the relabellings of the runs.

    Parameters
    ----------
    a, b : array_like, float, shape [n_a], [n_b]
        The runs' accuracies of two regions.
    seed, exact_limit, n_monte_carlo
        All ``C(n_a + n_b, n_a)`` relabellings are enumerated while there are at most
        ``exact_limit``; otherwise ``n_monte_carlo`` random ones drawn from ``seed``.

    Returns
    -------
    PermutationP
        Exact: ``p`` = share of relabellings (the observed included) with ``|stat| >= |observed| -
        1e-12``, ``p_one_sided`` with ``stat >= observed - 1e-12``; floors ``2 / C`` two-sided
        when ``n_a == n_b`` (a split and its mirror image), else ``1 / C``, and ``1 / C`` one-sided.
        Monte Carlo: ``(1 + k) / (1 + B)``, floors ``1 / (1 + B)``. All NaN (0 relabellings) when
        a side is empty or holds a non-finite value.
    """
    a, b = _values(a), _values(b)
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return PermutationP(np.nan, np.nan, np.nan, np.nan, 0, True)
    values, n = np.concatenate([a, b]), n_a + n_b
    observed = _split_differences(values, np.arange(n_a)[None, :])[0]
    n_splits = comb(n, n_a)
    if n_splits <= exact_limit:
        null = _split_differences(values, _all_splits(n, n_a))
        k_two = int(np.sum(np.abs(null) >= abs(observed) - TIE_TOLERANCE))
        k_one = int(np.sum(null >= observed - TIE_TOLERANCE))
        floor_two = min(1.0, (2 if n_a == n_b else 1) / n_splits)
        return PermutationP(k_two / n_splits, k_one / n_splits, floor_two, 1 / n_splits, n_splits, True)
    k_two = k_one = 0
    for first in _random_splits(n, n_a, n_monte_carlo, seed):
        null = _split_differences(values, first)
        k_two += int(np.sum(np.abs(null) >= abs(observed) - TIE_TOLERANCE))
        k_one += int(np.sum(null >= observed - TIE_TOLERANCE))
    total = 1 + n_monte_carlo
    return PermutationP((1 + k_two) / total, (1 + k_one) / total, 1 / total, 1 / total, n_monte_carlo, False)


def hedges_g(a, b) -> EffectSize:
    """Hedges' g of ``a`` against ``b``: ``J (mean(a) - mean(b)) / s_pooled``, ``s_pooled =
    sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2))`` (ddof 1), ``J = 1 - 3 / (4 (n_a
    + n_b) - 9)``. NaN with a note when a side has fewer than 2 values, a value is not finite, or
    the pooled sd is <= 1e-12."""
    a, b = _values(a), _values(b)
    n_a, n_b = len(a), len(b)
    if n_a < 2 or n_b < 2:
        return EffectSize(np.nan, NOTE_FEW)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return EffectSize(np.nan, NOTE_NOT_FINITE)
    pooled = np.sqrt(((n_a - 1) * np.var(a, ddof=1) + (n_b - 1) * np.var(b, ddof=1)) / (n_a + n_b - 2))
    if not pooled > ZERO_SPREAD:
        return EffectSize(np.nan, NOTE_NO_SPREAD)
    j = 1 - 3 / (4 * (n_a + n_b) - 9)
    return EffectSize(float(j * (np.mean(a) - np.mean(b)) / pooled), "")


def welch_contrast(groups, ci: float = 0.95) -> Contrast:
    """Contrast ``sum_i w_i mean(x_i)`` of independent groups with a Welch-Satterthwaite t.

    Parameters
    ----------
    groups : sequence of (array_like [n_i], float w_i)
        Each group's values and weight.
    ci : float
        Level of the interval.

    Returns
    -------
    Contrast
        ``se = sqrt(sum w_i^2 s_i^2 / n_i)`` (ddof 1), ``df = se^4 / sum (w_i^2 s_i^2 / n_i)^2 /
        (n_i - 1)``, ``estimate -+ t_{df, (1 + ci)/2} se`` and ``p = 2 P(T_df >= |estimate| / se)``.
        NaN (estimate too, if a group is empty) with a note when a group has fewer than 2 values
        or a non-finite one; interval and p NaN when ``se <= 1e-12`` (no spread anywhere).
    """
    _check_ci(ci)
    groups = [(_values(x), float(w)) for x, w in groups]
    if any(len(x) == 0 for x, _ in groups):
        return Contrast(np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, NOTE_FEW)
    if not all(np.isfinite(x).all() for x, _ in groups):
        return Contrast(np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, NOTE_NOT_FINITE)
    estimate = float(sum(w * x.mean() for x, w in groups))
    if any(len(x) < 2 for x, _ in groups):
        return Contrast(estimate, np.nan, np.nan, np.nan, np.nan, np.nan, NOTE_FEW)
    parts = np.array([w * w * np.var(x, ddof=1) / len(x) for x, w in groups])
    dof = np.array([len(x) - 1 for x, _ in groups], dtype=float)
    se = float(np.sqrt(parts.sum()))
    if not se > ZERO_SPREAD:
        return Contrast(estimate, se, np.nan, np.nan, np.nan, np.nan, NOTE_NO_SPREAD)
    df = float(parts.sum() ** 2 / np.sum(parts**2 / dof))
    half = float(sps.t.ppf(0.5 + ci / 2, df)) * se
    p = float(2 * sps.t.sf(abs(estimate) / se, df))
    return Contrast(estimate, se, df, estimate - half, estimate + half, min(p, 1.0), "")


def welch_interval(a, b, ci: float = 0.95) -> Contrast:
    """Welch t interval of ``mean(a) - mean(b)``: :func:`welch_contrast` with weights +1, -1
    (``lo``, ``hi``, ``df``; its ``p`` is Welch's two-sided t-test)."""
    return welch_contrast([(a, 1.0), (b, -1.0)], ci)


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


# ------------------------------------------------------------------------------ input and runs

def _integral(column: pd.Series, name: str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        raise ValueError(f"column {name!r} must hold integers; found {column[bad].iloc[0]!r}")
    return values.astype(np.int64)


def _accuracy_values(column: pd.Series) -> np.ndarray:
    """Floats in [0, 1] or NaN (an empty cell, as a table with text columns reads it, is NaN)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(float)
    text = column.astype(str).str.strip().str.lower()
    not_numeric = np.isnan(values) & column.notna().to_numpy() & ~text.isin(("", "nan")).to_numpy()
    out_of_range = np.isfinite(values) & ((values < 0) | (values > 1))
    bad = not_numeric | out_of_range | np.isinf(values)
    if bad.any():
        raise ValueError(f"column 'accuracy' must be a number in [0, 1] or NaN; found {column[bad].iloc[0]!r} "
                         f"in {int(bad.sum())} row(s)")
    return values


def checked_accuracy(accuracy: pd.DataFrame) -> pd.DataFrame:
    """The input table with checked types: ``method``/``region`` str, ``seed``/``step`` int64,
    ``accuracy`` float64 (NaN kept), ``n_problems`` int64. Refused (``ValueError``): missing
    columns, no rows, a trained run in an unknown region, non-integer seed/step/n_problems, an
    accuracy outside [0, 1], a (method, region, seed, step) twice."""
    missing = [c for c in INPUT_COLUMNS if c not in accuracy.columns]
    if missing:
        raise ValueError(f"accuracy table lacks column(s) {missing}")
    if not len(accuracy):
        raise ValueError("accuracy table is empty")
    df = pd.DataFrame({"method": accuracy["method"].astype(str).to_numpy(),
                       "region": accuracy["region"].astype(str).to_numpy(),
                       "seed": _integral(accuracy["seed"], "seed"), "step": _integral(accuracy["step"], "step"),
                       "accuracy": _accuracy_values(accuracy["accuracy"]),
                       "n_problems": _integral(accuracy["n_problems"], "n_problems")})
    trained = df.method != BASE_METHOD
    unknown = sorted(set(df.region[trained]) - set(REGIONS))
    if unknown:
        raise ValueError(f"unknown region(s) {unknown} of trained runs; known: {list(REGIONS)}")
    keys = ["method", "region", "seed", "step"]
    twice = df.duplicated(keys, keep=False)
    if twice.any():
        r = df[twice].iloc[0]
        raise ValueError(f"checkpoint {_run_label(r.method, r.region, r.seed)} step {r.step} appears "
                         f"{int((df[keys] == r[keys]).all(axis=1).sum())} times ({int(twice.sum())} duplicated rows)")
    return df


def _run_label(method, region, seed) -> str:
    return f"{method}/{region}/seed{seed}"


def _method_order(method: str) -> tuple:
    return (method != BASE_METHOD, method)


def _region_order(region: str) -> int:
    return REGIONS.index(region) if region in REGIONS else -1


def _run_row(method: str, region: str, seed: int, run: pd.DataFrame, best_from_step: int) -> dict:
    """One run's row (:data:`RUN_COLUMNS`); ``run`` sorted by step. The base model's best is its
    last step (it is not trained, ``best_from_step`` does not apply)."""
    steps, acc = run.step.to_numpy(), run.accuracy.to_numpy(float)
    known = np.isfinite(acc)
    if method == BASE_METHOD:
        eligible = np.flatnonzero(steps == steps[-1])
    else:
        eligible = np.flatnonzero(steps >= best_from_step)
        if not len(eligible):
            raise ValueError(f"run {_run_label(method, region, seed)}: no evaluated step >= best_from_step "
                             f"{best_from_step} (its steps: {steps.tolist()})")
    eligible = eligible[known[eligible]]
    if not len(eligible):
        raise ValueError(f"run {_run_label(method, region, seed)}: every step >= best_from_step {best_from_step} "
                         f"has a NaN accuracy (its steps: {steps.tolist()})")
    best = eligible[int(np.argmax(acc[eligible]))]                     # first maximum: the earliest step
    return dict(method=method, region=region, seed=int(seed), n_steps=len(steps), n_missing=int((~known).sum()),
                best_step=int(steps[best]), best_accuracy=float(acc[best]), final_step=int(steps[-1]),
                final_accuracy=float(acc[-1]))


def run_table(accuracy: pd.DataFrame, best_from_step: int) -> pd.DataFrame:
    """One row per run (:data:`RUN_COLUMNS`), the base model first, then by method, region
    (:data:`REGIONS` order) and seed: ``n_steps`` evaluated checkpoints, ``n_missing`` of them
    with a NaN accuracy, ``best_step``/``best_accuracy`` (the highest accuracy over the steps
    ``>= best_from_step``, NaN skipped; ties: the earliest step), ``final_step`` (the largest
    step) and ``final_accuracy`` (NaN if that checkpoint has none). ``accuracy`` as checked by
    :func:`checked_accuracy`. ``ValueError`` naming a run without an eligible step."""
    df = accuracy.sort_values("step", kind="stable")
    rows = [_run_row(method, region, seed, run, best_from_step)
            for (method, region, seed), run in df.groupby(["method", "region", "seed"], sort=False)]
    rows.sort(key=lambda r: (_method_order(r["method"]), _region_order(r["region"]), r["region"], r["seed"]))
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return runs.astype({c: np.int64 for c in ("seed", "n_steps", "n_missing", "best_step", "final_step")})


# ------------------------------------------------------------------------------ summaries and tests

def _selected(runs: pd.DataFrame, method: str, region: str, selection: str) -> np.ndarray:
    """[n] the runs' accuracies at ``selection`` (NaN included)."""
    rows = (runs.method == method) & (runs.region == region)
    return runs.loc[rows, f"{selection}_accuracy"].to_numpy(float)


def summarize(x, ci: float = 0.95) -> dict:
    """``n_runs`` (finite values), ``n_missing`` (NaN), mean, sd (ddof 1), median, min, max and the
    t interval ``ci_lo``/``ci_hi`` of the mean (``mean -+ t_{n-1} sd / sqrt(n)``); NaN where
    undefined (no value; sd and interval with fewer than 2)."""
    x = _values(x)
    finite = x[np.isfinite(x)]
    n = len(finite)
    out = dict(n_runs=n, n_missing=len(x) - n, mean=np.nan, sd=np.nan, median=np.nan, min=np.nan, max=np.nan,
               ci_lo=np.nan, ci_hi=np.nan)
    if n:
        out.update(mean=float(finite.mean()), median=float(np.median(finite)), min=float(finite.min()),
                   max=float(finite.max()))
    if n > 1:
        sd = float(np.std(finite, ddof=1))
        half = float(sps.t.ppf(0.5 + ci / 2, n - 1)) * sd / np.sqrt(n)
        out.update(sd=sd, ci_lo=out["mean"] - half, ci_hi=out["mean"] + half)
    return out


def group_table(runs: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """Per (method, region, selection) (:data:`GROUP_COLUMNS`, in the order of ``runs``; selection
    "best" then "final"): :func:`summarize` of the runs' accuracies."""
    _check_ci(ci)
    rows = []
    for method, region in runs[["method", "region"]].drop_duplicates().itertuples(index=False):
        for selection in SELECTIONS:
            rows.append(dict(method=method, region=region, selection=selection,
                             **summarize(_selected(runs, method, region, selection), ci)))
    return pd.DataFrame(rows, columns=GROUP_COLUMNS).astype({"n_runs": np.int64, "n_missing": np.int64})


def compare(a, b, ci: float = 0.95, seed: int = 0) -> dict:
    """The test columns of one comparison (:data:`TEST_COLUMNS` from ``test`` on) of the finite
    values of ``a`` (first region) and ``b``."""
    a, b = _values(a), _values(b)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    perm = permutation_p(a, b, seed=seed)
    effect = hedges_g(a, b)
    interval = welch_interval(a, b, ci)
    mean_a, mean_b = (float(a.mean()) if len(a) else np.nan), (float(b.mean()) if len(b) else np.nan)
    return dict(test=TEST_EXACT if perm.exact else TEST_MONTE_CARLO, n_a=len(a), n_b=len(b), mean_a=mean_a,
                mean_b=mean_b, diff=mean_a - mean_b, diff_lo=interval.lo, diff_hi=interval.hi, hedges_g=effect.g,
                g_note=effect.note, p=perm.p, p_one_sided=perm.p_one_sided, p_floor=perm.p_floor,
                p_one_sided_floor=perm.p_one_sided_floor, n_relabellings=perm.n_relabellings)


def _trained_methods(runs: pd.DataFrame) -> list[str]:
    return [m for m in dict.fromkeys(runs.method) if m != BASE_METHOD]


def _has_runs(runs: pd.DataFrame, method: str, region: str, selection: str) -> bool:
    return bool(np.isfinite(_selected(runs, method, region, selection)).any())


def comparison_table(runs: pd.DataFrame, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per (method, selection, comparison of :data:`COMPARISONS`) (:data:`TEST_COLUMNS`): the
    regions' runs compared by :func:`compare`. A comparison whose method lacks one of its regions
    (no run with a finite accuracy at that selection) is left out; the base model never enters."""
    _check_ci(ci)
    rows = []
    for method in _trained_methods(runs):
        for selection in SELECTIONS:
            for name, (first, second) in COMPARISONS.items():
                if not (_has_runs(runs, method, first, selection) and _has_runs(runs, method, second, selection)):
                    continue
                rows.append(dict(method=method, selection=selection, comparison=name,
                                 **compare(_selected(runs, method, first, selection),
                                           _selected(runs, method, second, selection), ci, seed)))
    return pd.DataFrame(rows, columns=TEST_COLUMNS).astype({"n_a": np.int64, "n_b": np.int64,
                                                            "n_relabellings": np.int64})


def interaction_table(runs: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """Per (selection, comparison) (:data:`INTERACTION_COLUMNS`) when both methods of
    :data:`INTERACTION_METHODS` have runs: ``diff_grpo``/``diff_sft`` (first region minus second,
    means of the finite accuracies) and ``contrast = diff_grpo - diff_sft`` with ``se``, ``df``,
    ``lo``/``hi`` and ``p`` of :func:`welch_contrast` over the four groups; ``note`` "" or why they
    are NaN. A comparison for which a method lacks a region is left out."""
    _check_ci(ci)
    rows = []
    grpo, sft = INTERACTION_METHODS
    if not set(INTERACTION_METHODS) <= set(runs.method):
        return pd.DataFrame(rows, columns=INTERACTION_COLUMNS)
    for selection in SELECTIONS:
        for name, (first, second) in COMPARISONS.items():
            cells = [(m, r) for m in (grpo, sft) for r in (first, second)]
            if not all(_has_runs(runs, m, r, selection) for m, r in cells):
                continue
            x = {cell: _values(_selected(runs, *cell, selection)) for cell in cells}
            x = {cell: v[np.isfinite(v)] for cell, v in x.items()}
            c = welch_contrast([(x[grpo, first], 1.0), (x[grpo, second], -1.0), (x[sft, first], -1.0),
                                (x[sft, second], 1.0)], ci)
            rows.append(dict(selection=selection, comparison=name,
                             diff_grpo=float(x[grpo, first].mean() - x[grpo, second].mean()),
                             diff_sft=float(x[sft, first].mean() - x[sft, second].mean()), contrast=c.estimate,
                             se=c.se, df=c.df, lo=c.lo, hi=c.hi, p=c.p, note=c.note))
    return pd.DataFrame(rows, columns=INTERACTION_COLUMNS)


def _log_undefined(accuracy: pd.DataFrame, tables: dict) -> None:
    nan_checkpoints = accuracy[~np.isfinite(accuracy.accuracy)]
    if len(nan_checkpoints):
        labels = sorted({_run_label(*k) for k in nan_checkpoints[["method", "region", "seed"]].itertuples(index=False)})
        log.warning("%d of %d checkpoint accuracies are NaN (runs %s); skipped when choosing the best checkpoint, "
                    "a NaN final accuracy leaves the run out of the 'final' comparisons", len(nan_checkpoints),
                    len(accuracy), ", ".join(labels[:10]) + (" ..." if len(labels) > 10 else ""))
    tests, inter = tables["tests"], tables["interaction"]
    for what, frame, value, note in (("Hedges' g", tests, "hedges_g", "g_note"),
                                     ("Welch intervals", tests, "diff_lo", None),
                                     ("interaction contrasts (interval and p)", inter, "p", "note")):
        undefined = frame[frame[value].isna()]
        if len(undefined):
            reasons = Counter(undefined[note]) if note else Counter()
            log.warning("%d of %d %s are undefined (NaN)%s", len(undefined), len(frame), what,
                        ": " + ", ".join(f"{k} x{v}" for k, v in reasons.items()) if reasons else "")


def finetune_statistics(accuracy: pd.DataFrame, best_from_step: int, ci: float = 0.95) -> dict[str, pd.DataFrame]:
    """The fine-tuning stage's tables from the per-checkpoint accuracy (module docstring).

    Parameters
    ----------
    accuracy : pd.DataFrame
        One row per evaluated checkpoint, columns :data:`INPUT_COLUMNS` (others ignored).
    best_from_step : int
        The best checkpoint of a run is chosen among its steps ``>= best_from_step``.
    ci : float
        Level of every interval.

    Returns
    -------
    dict
        ``runs`` (:func:`run_table`), ``groups`` (:func:`group_table`), ``tests``
        (:func:`comparison_table`) and ``interaction`` (:func:`interaction_table`).
    """
    _check_ci(ci)
    checked = checked_accuracy(accuracy)
    runs = run_table(checked, best_from_step)
    tables = dict(runs=runs, groups=group_table(runs, ci), tests=comparison_table(runs, ci),
                  interaction=interaction_table(runs, ci))
    _log_undefined(checked, tables)
    return tables

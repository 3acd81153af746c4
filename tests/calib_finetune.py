"""Calibration of the fine-tuning statistics (:mod:`synergy_core.finetune_stats`): false-positive
rates under nulls, power under planted effects and coverage of the intervals, on run accuracies
simulated at the paper's design (5 runs per region) and analysed with the package's own functions
(:func:`permutation_p`, :func:`welch_interval`, :func:`welch_contrast`).

Model: a run's accuracy is ``0.40 + shift + 0.005 * e`` (``SD`` 0.005 between seeds; the
permutation test, Hedges' g and the t intervals are scale invariant, so only the ``grid`` scenario
depends on that value), ``e`` per scenario:

* ``normal``: ``e ~ N(0, 1)``, independent runs;
* ``grid``: the same, rounded to multiples of 1/500 (MATH-500 accuracies: ties are common);
* ``rho0.5``: the runs of the two regions with the same seed correlated 0.5 (shared data order):
  ``e = sqrt(rho) z_seed + sqrt(1 - rho) e_run``;
* ``skewed``: ``e = Exp(1) - 1`` (skewness 2);
* ``sd_x2``, ``sd_x4``: the second region's runs 2x (4x) as spread as the first's, same means
  (the permutation test's null of exchangeability is then false, Welch's is true);
* ``best_of_10``: each run evaluated at 10 checkpoints, accuracy ``run + 0.005 N(0, 1)`` each
  (evaluation noise around a run level ``0.40 + 0.005 N(0, 1)``), the best kept (the paper's
  selection on the evaluation set); the truth of the difference is still ``shift``.

Two-sample rows (5 vs 5): ``permutation`` two-sided and one-sided (H1 first > second) rejection
rate at 0.05 (FPR at ``shift = 0``, power at 1 and 2 sd), ``welch`` coverage of the 95% interval
of the true difference. Interaction rows: four groups of 5 runs (GRPO and SFT, two regions each),
the contrast ``diff(grpo) - diff(sft)`` of :func:`welch_contrast`: FPR of its two-sided t at 0.05
and coverage of its 95% interval, with GRPO and SFT equally noisy, with SFT twice as noisy, with
seed correlation 0.5 within each method, skewed; power for contrasts of 1.4 sd (the paper's RL
effect with none under SFT) and 3 sd.

Measured (``python tests/calib_finetune.py``: 10,000 simulated data sets per null row, 4,000 per
power row, 24 s; exact 95% binomial interval about +-0.0043 at a rate of 0.05, +-0.004 at 0.95;
with 5 vs 5 runs the largest two-sided p <= 0.05 is 12/252 = 0.0476, the test's exact level)::

    test         scenario    shift  two-sided  one-sided  Welch coverage
    permutation  normal      0      0.0474     0.0453     0.9571
    permutation  grid        0      0.0313     0.0353     0.9574
    permutation  rho0.5      0      0.0135     0.0158     0.9882
    permutation  skewed      0      0.0459     0.0462     0.9732
    permutation  sd_x2       0      0.0565     0.0487     0.9507
    permutation  sd_x4       0      0.0775     0.0588     0.9454
    permutation  best_of_10  0      0.0479     0.0511     0.9537
    permutation  normal      1 sd   0.2740     0.4135     0.9600
    permutation  normal      2 sd   0.7820     0.8898     0.9555
    permutation  rho0.5      2 sd   0.8237     0.9373     0.9888
    interaction  equal_sd    0      0.0455                0.9545
    interaction  sft_sd_x2   0      0.0483                0.9517
    interaction  rho0.5      0      0.0077                0.9923
    interaction  skewed      0      0.0323                0.9677
    interaction  equal_sd    1.4 sd 0.3018                0.9557
    interaction  equal_sd    3 sd   0.8712                0.9557

(rejection rates at 0.05: false-positive rates at shift 0, power otherwise.) Best of 10
checkpoints: 1.54 evaluation-noise sds above the run's level on average (E max of 10 N(0, 1)).
So: the exact test holds its level with normal, tied, skewed and best-checkpoint accuracies, is
conservative with seed correlation, and is liberal only when the regions differ in spread alone
(its null is "same distribution"); the Welch interval covers at or above 0.95 except 0.945 at a
4x sd ratio; the interaction contrast is calibrated (conservative when skewed or correlated) but
has little power with 5 seeds (0.30 for a contrast of 1.4 sd).

Rows: ``dict(test, quantity, scenario, shift_sd, nominal, n_sims, hits, rate, rate_ci_low,
rate_ci_high, mc_se)``; ``rate_ci_*`` exact (Clopper-Pearson) 95%, ``mc_se`` the binomial standard
error at the nominal rate for a false-positive rate (the observed one for power and coverage).

    python tests/calib_finetune.py            # every row at the sizes above
    python tests/calib_finetune.py --quick    # the test suite's sizes
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from synergy_core.finetune_stats import permutation_p, welch_contrast, welch_interval

MEAN, SD, N_RUNS = 0.40, 0.005, 5
ALPHA, CI = 0.05, 0.95
GRID = 500
N_CHECKPOINTS = 10
TWO_SAMPLE_SCENARIOS = ("normal", "grid", "rho0.5", "skewed", "sd_x2", "sd_x4", "best_of_10")
SD_RATIO = {"sd_x2": 2.0, "sd_x4": 4.0}
INTERACTION_SCENARIOS = ("equal_sd", "sft_sd_x2", "rho0.5", "skewed")


def _errors(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    """Standardised errors (mean 0, sd 1): normal, or ``Exp(1) - 1`` for "skewed"."""
    return rng.exponential(1.0, shape) - 1.0 if kind == "skewed" else rng.normal(0.0, 1.0, shape)


def two_samples(rng: np.random.Generator, scenario: str, shift_sd: float = 0.0,
                n_runs: int = N_RUNS) -> tuple[np.ndarray, np.ndarray]:
    """One data set: ``a`` [n_runs] (the first region, mean shifted by ``shift_sd * SD``) and ``b``
    [n_runs] run accuracies under ``scenario`` (module docstring); run i of a and b share seed i."""
    if scenario == "best_of_10":
        level = MEAN + SD * rng.normal(0.0, 1.0, (2, n_runs, 1))
        best = (level + SD * rng.normal(0.0, 1.0, (2, n_runs, N_CHECKPOINTS))).max(axis=2)
        return best[0] + shift_sd * SD, best[1]
    if scenario == "rho0.5":
        rho = 0.5
        e = np.sqrt(rho) * rng.normal(0.0, 1.0, (1, n_runs)) + np.sqrt(1 - rho) * rng.normal(0.0, 1.0, (2, n_runs))
    else:
        e = _errors(rng, (2, n_runs), scenario)
    sd = np.array([[1.0], [SD_RATIO[scenario]]]) * SD if scenario in SD_RATIO else SD
    x = MEAN + sd * e
    x[0] += shift_sd * SD
    if scenario == "grid":
        x = np.round(x * GRID) / GRID
    return x[0], x[1]


def four_groups(rng: np.random.Generator, scenario: str, contrast_sd: float = 0.0,
                n_runs: int = N_RUNS) -> list[np.ndarray]:
    """[grpo first, grpo second, sft first, sft second], each [n_runs]; GRPO's first region is
    ``0.01 + contrast_sd * SD`` above its second, SFT's ``0.01`` (a true contrast of
    ``contrast_sd * SD``). ``rho0.5``: the runs of one method with the same seed correlated."""
    sds = [SD, SD, 2 * SD, 2 * SD] if scenario == "sft_sd_x2" else [SD] * 4
    means = [MEAN + 0.01 + contrast_sd * SD, MEAN, MEAN + 0.01, MEAN]
    if scenario == "rho0.5":
        shared = rng.normal(0.0, 1.0, (2, n_runs))                   # one per (method, seed)
        e = np.sqrt(0.5) * np.repeat(shared, 2, axis=0) + np.sqrt(0.5) * rng.normal(0.0, 1.0, (4, n_runs))
    else:
        e = _errors(rng, (4, n_runs), scenario)
    return [m + s * row for m, s, row in zip(means, sds, e)]


def rate_row(test: str, quantity: str, scenario: str, shift_sd: float, hits: int, n: int, nominal: float) -> dict:
    """A row: rate ``hits / n`` with its exact 95% interval; ``mc_se`` at ``nominal`` for a
    false-positive rate, at the observed rate otherwise."""
    hits, n = int(hits), int(n)
    rate = hits / n
    ci = sps.binomtest(hits, n).proportion_ci(0.95, method="exact")
    se_at = nominal if quantity.startswith("fpr") else rate
    return dict(test=test, quantity=quantity, scenario=scenario, shift_sd=shift_sd, nominal=nominal, n_sims=n,
                hits=hits, rate=rate, rate_ci_low=ci.low, rate_ci_high=ci.high,
                mc_se=float(np.sqrt(se_at * (1 - se_at) / n)))


def two_sample_rates(scenario: str, n_sims: int, shift_sd: float = 0.0, seed: int = 0) -> list[dict]:
    """Rejection rates (two- and one-sided) of :func:`permutation_p` at ``ALPHA`` and coverage
    of :func:`welch_interval` at ``CI`` of the true difference ``shift_sd * SD``."""
    rng = np.random.default_rng(seed)
    two = one = covered = 0
    for _ in range(n_sims):
        a, b = two_samples(rng, scenario, shift_sd)
        r = permutation_p(a, b)
        two += r.p <= ALPHA
        one += r.p_one_sided <= ALPHA
        w = welch_interval(a, b, CI)
        covered += w.lo <= shift_sd * SD <= w.hi
    kind = "fpr" if shift_sd == 0 else "power"
    return [rate_row("permutation", f"{kind}_two_sided", scenario, shift_sd, two, n_sims, ALPHA),
            rate_row("permutation", f"{kind}_one_sided", scenario, shift_sd, one, n_sims, ALPHA),
            rate_row("welch", "coverage", scenario, shift_sd, covered, n_sims, CI)]


def interaction_rates(scenario: str, n_sims: int, contrast_sd: float = 0.0, seed: int = 1) -> list[dict]:
    """Rejection rate of the contrast's two-sided t at ``ALPHA`` and coverage of its ``CI``
    interval of the true contrast ``contrast_sd * SD`` (:func:`welch_contrast`)."""
    rng = np.random.default_rng(seed)
    rejected = covered = 0
    for _ in range(n_sims):
        g = four_groups(rng, scenario, contrast_sd)
        c = welch_contrast([(g[0], 1.0), (g[1], -1.0), (g[2], -1.0), (g[3], 1.0)], CI)
        rejected += c.p <= ALPHA
        covered += c.lo <= contrast_sd * SD <= c.hi
    kind = "fpr" if contrast_sd == 0 else "power"
    return [rate_row("interaction", f"{kind}_two_sided", scenario, contrast_sd, rejected, n_sims, ALPHA),
            rate_row("interaction", "coverage", scenario, contrast_sd, covered, n_sims, CI)]


def best_of_checkpoints_bias(n_sims: int, seed: int = 50) -> float:
    """Mean of (best of ``N_CHECKPOINTS`` evaluations - the run's level), in run sds, in the
    ``best_of_10`` model: the optimism of the best-checkpoint accuracy (the same for every region)."""
    rng = np.random.default_rng(seed)
    level = MEAN + SD * rng.normal(0.0, 1.0, (n_sims, 1))
    best = (level + SD * rng.normal(0.0, 1.0, (n_sims, N_CHECKPOINTS))).max(axis=1)
    return float(np.mean(best - level[:, 0]) / SD)


def all_rates(n_null: int, n_power: int) -> list[dict]:
    """Every row: the nulls of every scenario, power at 1 and 2 sd (normal) and 2 sd (rho 0.5),
    the interaction's nulls and its power at 1.4 and 3 sd."""
    rows = []
    for i, scenario in enumerate(TWO_SAMPLE_SCENARIOS):
        rows += two_sample_rates(scenario, n_null, seed=10 + i)
    for i, (scenario, shift) in enumerate((("normal", 1.0), ("normal", 2.0), ("rho0.5", 2.0))):
        rows += two_sample_rates(scenario, n_power, shift_sd=shift, seed=20 + i)
    for i, scenario in enumerate(INTERACTION_SCENARIOS):
        rows += interaction_rates(scenario, n_null, seed=30 + i)
    for i, contrast in enumerate((1.4, 3.0)):
        rows += interaction_rates("equal_sd", n_power, contrast_sd=contrast, seed=40 + i)
    return rows


SHOWN = ["test", "quantity", "scenario", "shift_sd", "nominal", "n_sims", "rate", "rate_ci_low", "rate_ci_high"]


def print_rows(rows: list[dict]) -> None:
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(table[SHOWN].to_string(index=False))
    print(f"{N_RUNS} runs per region, run sd {SD}, alpha {ALPHA}, interval level {CI}; shift_sd: planted "
          "difference (contrast for the interaction) in run sds")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the test suite's sizes")
    args = ap.parse_args(argv)
    start = time.time()
    rows = all_rates(2000, 1000) if args.quick else all_rates(10_000, 4000)
    print_rows(rows)
    print(f"best_of_10: the best checkpoint's accuracy exceeds the run's level by "
          f"{best_of_checkpoints_bias(100_000):.2f} run sds on average (every region alike)")
    print(f"[{time.time() - start:.0f} s]")


if __name__ == "__main__":
    main()

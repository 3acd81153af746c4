"""Calibration of the perturbation statistics (:mod:`synergy_core.perturbation_stats`): false-positive
rates under nulls, power under planted effects and coverage of the bootstrap interval, on tables
simulated from a logistic model and analysed with the package's own functions (on arrays: the
tests' inputs are the per-unit correctness matrices :func:`perturbation_stats.accuracy_cube` builds).

Model: problem ``p`` has a difficulty logit ``z_p ~ N(mu, problem_sd)``; a head set ``s`` has a
random effect ``u_s ~ N(0, s_set)`` (how much noising it costs), a noise draw ``r`` of that set
``d_sr ~ N(0, s_draw)``; unit (s, r) answers problem p correctly with probability
``sigmoid(z_p - u_s - d_sr - planted_s)``. Every unit answers the same problems, so a set's and a
draw's effects are shared by all of them -- the situation the module docstring describes.

* (a) ``set_rank`` FPR, null: the synergistic set's effect is drawn like the random sets';
* (b) ``repeat_permutation`` FPR, null: the synergistic and redundant sets are two fixed sets with
  the same effect (only the draws differ);
* (c) the NAIVE problem-level test (implemented here only, :func:`naive_sign_flip_p`: sign flips of
  the per-problem differences synergistic - mean(random)) under the null of (a): inflated as soon
  as sets (or draws) have effects -- the counterexample of the module docstring;
* (d) power: the synergistic set ``planted`` logits more harmful (set rank against random sets;
  repeat permutation against the redundant set);
* (e) coverage of the two-stage bootstrap interval of one condition's accuracy. Truth for the
  synergistic condition (one fixed set, effect ``u``): ``E sigmoid(z - u - d)`` over the problem
  population and the noise draws, ``= E sigmoid(N(mu - u, sqrt(problem_sd^2 + s_draw^2)))``
  (Gauss-Hermite, :func:`expected_accuracy`); for the random condition the set effect is
  integrated too. With 3 repeats the draw variance is under-resampled, so the synergistic
  interval can cover less than nominal when draws matter: the measured rate is reported as it is.

Rows: ``dict(test, quantity, condition, nominal, n_sims, hits, rate, rate_ci_low, rate_ci_high,
mc_se, <model settings>)``; ``rate_ci_*`` exact (Clopper-Pearson) 95%, ``mc_se`` the binomial
standard error ``sqrt(r (1 - r) / n)`` at the nominal rate (the observed one for power/coverage).

    python tests/calib_perturbation.py            # every row at the README's sizes (about 1 min)
    python tests/calib_perturbation.py --quick    # the test suite's sizes
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from synergy_core.perturbation_stats import repeat_permutation_p, set_rank_p, two_stage_bootstrap
from synergy_core.resample import percentile_ci

#: The model's default settings (logits): accuracy about 0.45 at mu -0.3; a set's effect varies by
#: 0.3 logits between random sets, a draw's by 0.2; the stage's demo design (19 random sets, 3 repeats).
MODEL = dict(n_problems=200, mu=-0.3, problem_sd=1.5, s_set=0.3, s_draw=0.2, n_random_sets=19, n_repeats=3)
ALPHA = 0.05
NULL_SET = "synergistic set effect drawn like the random sets'"
NULL_PAIR = "synergistic and redundant: two fixed sets with the same effect"


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def simulate_units(rng: np.random.Generator, logits: np.ndarray, set_effects, n_repeats: int,
                   s_draw: float) -> np.ndarray:
    """Correctness of every unit of some head sets.

    ``logits`` [P] problem logits, ``set_effects`` [S] (logits subtracted, planted effects included).
    Returns float64 [S, R, P] of 0/1: unit (s, r) on problem p ~ Bernoulli(sigmoid(logit_p - u_s - d_sr)).
    """
    set_effects = np.asarray(set_effects, dtype=float)
    draws = rng.normal(0.0, s_draw, (len(set_effects), n_repeats))
    p = sigmoid(logits[None, None, :] - set_effects[:, None, None] - draws[:, :, None])
    return (rng.random(p.shape) < p).astype(np.float64)


def simulate_experiment(rng: np.random.Generator, *, planted: float = 0.0, syn_red_same_set: bool = False,
                        n_problems=MODEL["n_problems"], mu=MODEL["mu"], problem_sd=MODEL["problem_sd"],
                        s_set=MODEL["s_set"], s_draw=MODEL["s_draw"], n_random_sets=MODEL["n_random_sets"],
                        n_repeats=MODEL["n_repeats"]) -> dict:
    """One model's noised conditions at one alpha: ``synergistic`` [R, P], ``redundant`` [R, P] and
    ``random`` [S, R, P] (0/1), plus the problem ``logits`` [P] and the ``set_effects`` used.

    Set effects ~ N(0, s_set) each; ``syn_red_same_set``: the redundant set gets the synergistic
    set's effect (null (b)); ``planted`` is added to the synergistic set's effect (more harmful)."""
    logits = rng.normal(mu, problem_sd, n_problems)
    effects = rng.normal(0.0, s_set, n_random_sets + 2)          # synergistic, redundant, random...
    if syn_red_same_set:
        effects[1] = effects[0]
    effects[0] += planted
    units = simulate_units(rng, logits, effects, n_repeats, s_draw)
    return dict(synergistic=units[0], redundant=units[1], random=units[2:], logits=logits, set_effects=effects)


def naive_sign_flip_p(synergistic: np.ndarray, random_sets: np.ndarray, n_flips: int,
                      rng: np.random.Generator) -> float:
    """The NAIVE test (not used by the package): problems as the independent units. Per-problem
    difference ``d_p`` = synergistic accuracy on p (mean over repeats) - random sets' accuracy on p
    (mean over sets and repeats); one-sided (synergistic lower) sign-flip test of ``mean(d)``,
    ``p = (1 + #{flips with mean <= observed}) / (1 + n_flips)``. ``synergistic`` [R, P],
    ``random_sets`` [S, R, P]."""
    d = synergistic.mean(axis=0) - random_sets.mean(axis=(0, 1))                 # [P]
    observed = d.mean()
    signs = rng.integers(0, 2, (n_flips, len(d))) * 2.0 - 1.0
    null = signs @ d / len(d)
    return float((1 + np.sum(null <= observed + 1e-9)) / (1 + n_flips))


def expected_accuracy(center: float, sd: float, n_nodes: int = 101) -> float:
    """``E sigmoid(X)``, ``X ~ N(center, sd)``, by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite.hermgauss(n_nodes)
    return float(np.sum(w * sigmoid(center + np.sqrt(2.0) * sd * x)) / np.sqrt(np.pi))


def rate_row(test: str, quantity: str, hits: int, n: int, nominal: float, condition: str = "", **settings) -> dict:
    """A row: rate ``hits / n`` with its exact 95% interval. ``mc_se``: the binomial standard error
    at ``nominal`` for a false-positive rate, at the observed rate otherwise."""
    hits, n = int(hits), int(n)
    rate = hits / n
    ci = sps.binomtest(hits, n).proportion_ci(0.95, method="exact")
    se_at = nominal if quantity == "false_positive_rate" else rate
    return dict(test=test, quantity=quantity, condition=condition, nominal=nominal, n_sims=n, hits=hits, rate=rate,
                rate_ci_low=ci.low, rate_ci_high=ci.high, mc_se=float(np.sqrt(se_at * (1 - se_at) / n)), **settings)


def _settings(model: dict) -> dict:
    return {**MODEL, **model}


def set_rank_rates(n_sims: int = 2000, n_planted: int = 500, planted: float = 1.5, n_flips: int = 999,
                   seed: int = 0, **model) -> list[dict]:
    """(a) set-rank FPR and (c) the naive sign-flip FPR on the same null simulations; (d) set-rank
    power with the synergistic set ``planted`` logits more harmful."""
    rng = np.random.default_rng(seed)
    set_rank_hits = naive_hits = power_hits = 0
    for _ in range(n_sims):
        sim = simulate_experiment(rng, **model)
        core, random_sets = sim["synergistic"].mean(), sim["random"].mean(axis=(1, 2))
        set_rank_hits += set_rank_p(core, random_sets, "less").p <= ALPHA
        naive_hits += naive_sign_flip_p(sim["synergistic"], sim["random"], n_flips, rng) <= ALPHA
    for _ in range(n_planted):
        sim = simulate_experiment(rng, planted=planted, **model)
        power_hits += set_rank_p(sim["synergistic"].mean(), sim["random"].mean(axis=(1, 2)), "less").p <= ALPHA
    settings = _settings(model)
    rows = []
    if n_sims:
        rows += [rate_row("set_rank", "false_positive_rate", set_rank_hits, n_sims, ALPHA, null=NULL_SET,
                          **settings),
                 rate_row("naive_problem_sign_flip", "false_positive_rate", naive_hits, n_sims, ALPHA,
                          null=NULL_SET, n_flips=n_flips, **settings)]
    if n_planted:
        rows.append(rate_row("set_rank", "power", power_hits, n_planted, ALPHA, planted=planted, **settings))
    return rows


def repeat_permutation_rates(n_sims: int = 2000, n_planted: int = 500, planted: float = 1.5, seed: int = 1,
                             **model) -> list[dict]:
    """(b) repeat-permutation FPR (synergistic vs redundant, two fixed sets with the same effect)
    and (d) its power with the synergistic set ``planted`` logits more harmful than the redundant."""
    rng = np.random.default_rng(seed)
    hits = {0.0: 0, planted: 0}
    for plant, n in ((0.0, n_sims), (planted, n_planted)):
        for _ in range(n):
            sim = simulate_experiment(rng, planted=plant, syn_red_same_set=True, **model)
            p = repeat_permutation_p(sim["synergistic"].mean(axis=1), sim["redundant"].mean(axis=1), "less").p
            hits[plant] += p <= ALPHA
    settings = _settings(model)
    return [rate_row("repeat_permutation", "false_positive_rate", hits[0.0], n_sims, ALPHA, null=NULL_PAIR,
                     **settings),
            rate_row("repeat_permutation", "power", hits[planted], n_planted, ALPHA, planted=planted, **settings)]


def bootstrap_coverage(n_sims: int = 500, n_boot: int = 400, ci: float = 0.95, condition: str = "synergistic",
                       seed: int = 2, **model) -> list[dict]:
    """(e) How often the two-stage bootstrap interval (:func:`two_stage_bootstrap`, percentile)
    of ``condition``'s accuracy contains the truth: for ``synergistic``, its fixed set's expected
    accuracy over problems and draws; for ``random``, the expected accuracy over sets too."""
    settings = _settings(model)
    rng = np.random.default_rng(seed)
    problem_sd, s_draw, s_set = settings["problem_sd"], settings["s_draw"], settings["s_set"]
    hits = 0
    for _ in range(n_sims):
        sim = simulate_experiment(rng, **model)
        if condition == "synergistic":
            units = sim["synergistic"][None]                                           # [1, R, P]
            truth = expected_accuracy(settings["mu"] - sim["set_effects"][0], np.hypot(problem_sd, s_draw))
        else:
            units = sim["random"]
            truth = expected_accuracy(settings["mu"], np.sqrt(problem_sd**2 + s_draw**2 + s_set**2))
        n_sets, n_repeats, _ = units.shape
        index = np.arange(n_sets * n_repeats).reshape(n_sets, n_repeats)
        boot = two_stage_bootstrap(units.reshape(n_sets * n_repeats, -1), {condition: index}, n_boot, rng)
        interval = percentile_ci(boot[condition], ci)
        hits += interval["ci_low"] <= truth <= interval["ci_high"]
    return [rate_row("two_stage_bootstrap", "coverage", hits, n_sims, ci, condition=condition, n_boot=n_boot,
                     **settings)]


def quick_rates() -> list[dict]:
    """The sizes of tests/test_calibration_perturbation.py."""
    return (set_rank_rates(n_sims=1500, n_planted=300, n_flips=499)
            + repeat_permutation_rates(n_sims=1500, n_planted=300)
            + bootstrap_coverage(n_sims=400, n_boot=300))


def full_rates() -> list[dict]:
    """Every row quoted in the README: the default model at more simulations, the naive test
    without set/draw effects (where it is fine) and with more problems (where it gets worse), and
    the coverage with more draw variance, more repeats and for the random condition."""
    rows = set_rank_rates(n_sims=10000, n_planted=2000)
    rows += set_rank_rates(n_sims=2000, n_planted=0, seed=10, s_set=0.0, s_draw=0.0)
    rows += set_rank_rates(n_sims=2000, n_planted=0, seed=11, n_problems=500)
    rows += set_rank_rates(n_sims=0, n_planted=1000, planted=0.75, seed=12)
    rows += repeat_permutation_rates(n_sims=10000, n_planted=2000)
    rows += repeat_permutation_rates(n_sims=2000, n_planted=1000, seed=13, n_repeats=5, planted=0.5)
    rows += bootstrap_coverage(n_sims=2000, n_boot=500)
    rows += bootstrap_coverage(n_sims=1000, n_boot=500, seed=14, s_draw=0.5)
    rows += bootstrap_coverage(n_sims=1000, n_boot=500, seed=15, s_draw=0.5, n_repeats=10)
    rows += bootstrap_coverage(n_sims=1000, n_boot=500, seed=16, condition="random")
    return rows


SHOWN = ["test", "quantity", "condition", "nominal", "n_sims", "rate", "rate_ci_low", "rate_ci_high", "planted",
         "n_problems", "mu", "problem_sd", "s_set", "s_draw", "n_random_sets", "n_repeats"]


def print_rows(rows: list[dict]) -> None:
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
        print(table.reindex(columns=SHOWN).to_string(index=False))
    print(f"alpha {ALPHA}; nulls: (a, c) {NULL_SET}; (b) {NULL_PAIR}; naive test: {rows[1].get('n_flips')} sign "
          "flips; coverage: percentile interval of the two-stage bootstrap (n_boot "
          f"{next(r['n_boot'] for r in rows if 'n_boot' in r)})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the test suite's sizes")
    args = ap.parse_args(argv)
    start = time.time()
    rows = quick_rates() if args.quick else full_rates()
    print_rows(rows)
    print(f"[{time.time() - start:.0f} s]")


if __name__ == "__main__":
    main()

"""Calibration of the ablation verdict: false-positive rates under a null and power on planted
effects, by simulating ``kl_long`` tables and running the package's own functions on them.

Model of a simulated model: every head h has an importance ``imp[h]`` (log-normal, sd
``head_sd``: a few heads matter much more than the rest), shared by all prompts, times a
per-prompt log-normal factor (sd ``prompt_sd``). Removing a set S of heads from prompt p gives
``KL = scale[p] * (x + x^2) * exp(kl_noise * e)``, x the share of prompt p's importance in S.
So random orders differ a lot from each other (whether they remove the big heads early), and
prompts differ too: the setting in which a bootstrap over prompts with a few fixed random orders
excluded ratio 1 in 85-93% of null simulations.

* null: the "synergistic" ranking is a random permutation (so is the redundant-first order,
  its reverse);
* planted: the ranking is ``log imp`` plus Gaussian noise (sd ``rank_noise * head_sd``), so the
  synergistic-first order removes the most important heads first.

With ``cross_validate`` the prompts are split by :func:`synergy_core.ranking.prompt_halves`;
each half is ordered by the ranking estimated on the other half (an independent ranking: a
random permutation under the null, another noisy estimate when planted) and gets its own random
permutations (``ablation_orders(..., stream=h)``), exactly as ``stages.ablate.plan_ablation``.

Entry points: :func:`simulate_long` (one table), :func:`ablation_rates` (rows ``dict(test,
null, alpha, n_sims, false_positive_rate, fpr_ci_low, fpr_ci_high, power, ...)``). The test
suite runs them small (tests/test_calibration_ablation.py); a benchmark can pass larger sizes:

    python tests/calib_ablation.py --n-sims 2000 --n-random 99 --n-heads 128 --n-prompts 60
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy import stats as sps

from synergy_core.ablation_curves import ablation_auc_stats, ablation_grids, ablation_orders
from synergy_core.ranking import prompt_halves

NULL = "synergistic order = random permutation"
N_CATEGORIES = 6


def simulate_long(rng: np.random.Generator, *, planted: bool = False, n_heads: int = 24,
                  n_prompts: int = 12, n_random: int = 39, max_fraction: float = 0.4,
                  random_grid: int | None = 6, head_sd: float = 1.0, prompt_sd: float = 0.5,
                  kl_noise: float = 0.1, rank_noise: float = 0.5,
                  cross_validate: bool = False) -> pd.DataFrame:
    """One simulated ``kl_long`` table (columns as ``stages.ablate.LONG_COLUMNS``)."""
    imp = rng.lognormal(0.0, head_sd, n_heads)
    share = imp[:, None] * rng.lognormal(0.0, prompt_sd, (n_heads, n_prompts))
    share /= share.sum(axis=0)
    scale = rng.lognormal(0.0, 0.5, n_prompts)
    full, coarse = ablation_grids(n_heads, max_fraction, 1, random_grid)

    def ranking():
        if planted:
            return np.log(imp) + rank_noise * head_sd * rng.normal(size=n_heads)
        return rng.random(n_heads)

    if cross_validate:
        halves = prompt_halves(np.arange(n_prompts) % N_CATEGORIES)
        groups = [(h, np.flatnonzero(halves == h), ranking(), h) for h in (0, 1)]
    else:
        groups = [(-1, np.arange(n_prompts), ranking(), None)]
    seed = int(rng.integers(2**31))
    cols = {c: [] for c in ("order", "seed", "n_removed", "prompt", "prompt_half", "kl")}
    for half, prompts, syn_red, stream in groups:
        for name, s, order in ablation_orders(syn_red, n_random, seed, stream):
            counts = coarse if name == "random" else full
            cum = np.concatenate([np.zeros((1, len(prompts))),
                                  np.cumsum(share[order][:, prompts], axis=0)])
            x = cum[counts]                                                    # [K, prompts]
            kl = scale[prompts] * (x + x**2) * np.exp(kl_noise * rng.normal(size=x.shape))
            size = kl.size
            cols["order"].append(np.full(size, name, dtype=object))
            cols["seed"].append(np.full(size, s))
            cols["n_removed"].append(np.repeat(counts, len(prompts)))
            cols["prompt"].append(np.tile(prompts, len(counts)))
            cols["prompt_half"].append(np.full(size, half))
            cols["kl"].append(kl.ravel())
    long = pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})
    long.insert(3, "fraction_removed", long.n_removed / n_heads)
    return long


def _verdicts(long: pd.DataFrame, rng, n_boot: int, ci: float) -> dict:
    t = ablation_auc_stats(long, n_boot, rng, ci)["summary"].set_index("quantity")
    syn, red = t.loc["ratio_synergistic_random"], t.loc["ratio_redundant_random"]
    return dict(p=syn.p, p_less_red=red.p_less, ci_low=syn.ci_low, ci_high=syn.ci_high,
                red_ci_high=red.ci_high)


def _rate_row(test: str, alpha: float, hits_null: np.ndarray, hits_planted: np.ndarray,
              **extra) -> dict:
    k, n = int(hits_null.sum()), len(hits_null)
    lo, hi = sps.binomtest(k, n, alpha).proportion_ci(0.95, method="exact") if n else (np.nan,) * 2
    return dict(test=test, null=NULL, alpha=alpha, n_sims=n, false_positives=k,
                false_positive_rate=k / n if n else np.nan, fpr_ci_low=lo, fpr_ci_high=hi,
                binom_p_above_alpha=sps.binomtest(k, n, alpha, alternative="greater").pvalue
                if n else np.nan,
                power=float(np.mean(hits_planted)) if len(hits_planted) else np.nan, **extra)


def ablation_rates(n_sims: int = 300, n_sims_planted: int | None = None, seed: int = 0,
                   alpha: float = 0.05, ci: float = 0.95, n_boot: int = 200, **sizes) -> list[dict]:
    """False-positive rates (null) and power (planted) of the ablation verdict.

    ``sizes`` go to :func:`simulate_long` (``n_heads``, ``n_prompts``, ``n_random``,
    ``random_grid``, ``cross_validate``, noise levels). Rows:

    * ``ablation_rank_p``: synergistic-first ``p <= alpha`` (one-sided, more damaging);
    * ``ablation_rank_p_less_redundant``: redundant-first ``p_less <= alpha`` (less damaging;
      power: the planted redundant-first order removes the least important heads first);
    * ``ablation_ratio_interval``: the synergistic ratio interval at ``ci`` excludes 1 on either
      side (nominal ``1 - ci``; power: lower end above 1);
    * ``ablation_ratio_interval_above_1``: lower end above 1 (nominal ``(1 - ci) / 2``).

    ``fpr_ci_low``/``fpr_ci_high``: exact (Clopper-Pearson) 95% interval of the rate;
    ``binom_p_above_alpha``: exact one-sided binomial p-value of "rate > alpha".
    """
    rng = np.random.default_rng(seed)
    n_planted = n_sims if n_sims_planted is None else n_sims_planted
    null = [_verdicts(simulate_long(rng, **sizes), rng, n_boot, ci) for _ in range(n_sims)]
    planted = [_verdicts(simulate_long(rng, planted=True, **sizes), rng, n_boot, ci)
               for _ in range(n_planted)]
    null, planted = pd.DataFrame(null), pd.DataFrame(planted)
    if not len(planted):
        planted = pd.DataFrame(columns=null.columns, dtype=float)
    info = dict(n_random=sizes.get("n_random", 39), n_heads=sizes.get("n_heads", 24),
                n_prompts=sizes.get("n_prompts", 12), cross_validate=sizes.get("cross_validate", False),
                n_boot=n_boot, ci=ci)
    excl = (null.ci_low > 1) | (null.ci_high < 1)
    return [
        _rate_row("ablation_rank_p", alpha, null.p <= alpha, planted.p <= alpha, **info),
        _rate_row("ablation_rank_p_less_redundant", alpha, null.p_less_red <= alpha,
                  planted.p_less_red <= alpha, **info),
        _rate_row("ablation_ratio_interval", 1 - ci, excl, planted.ci_low > 1, **info),
        _rate_row("ablation_ratio_interval_above_1", (1 - ci) / 2, null.ci_low > 1,
                  planted.ci_low > 1, **info),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-sims", type=int, default=300)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--n-random", type=int, default=39)
    ap.add_argument("--n-heads", type=int, default=24)
    ap.add_argument("--n-prompts", type=int, default=12)
    ap.add_argument("--random-grid", type=int, default=6)
    ap.add_argument("--cross-validate", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rows = ablation_rates(a.n_sims, seed=a.seed, n_boot=a.n_boot, n_random=a.n_random,
                          n_heads=a.n_heads, n_prompts=a.n_prompts, random_grid=a.random_grid,
                          cross_validate=a.cross_validate)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(pd.DataFrame(rows).drop(columns="null").to_string(index=False))


if __name__ == "__main__":
    main()

"""Calibration of the paired model comparison (synergy_core.comparisons.compare_profiles).

Simulated per-prompt PhiID arrays of two models over the same prompts and head pairs. Each pair
has a fixed level shared by both models (heads differ, as in a real architecture) plus prompt
noise. Null: both models are draws of the same process. Planted: model A's pairs among the
middle layers get extra synergy, a genuinely stronger inverted U.

    python tests/benchmarks/calibration.py    # prints every calibration row, larger sizes
"""
import numpy as np
from calib_profile import binom_row

from synergy_core.comparisons import compare_profiles
from synergy_core.phiid.chunks import upper_triangle_pairs


def simulate_pair(rng, n_layers=4, heads_per_layer=3, n_prompts=10, effect=0.0, noise=1.0):
    """Per-prompt sts/rtr of two models, ``[P, prompts]`` each; ``effect`` > 0 adds synergy to
    model A's pairs whose heads both lie in the middle layers."""
    layer = np.repeat(np.arange(n_layers), heads_per_layer)
    pairs = upper_triangle_pairs(len(layer))
    mid = (layer >= n_layers // 4 + (n_layers % 4 > 0)) & (layer < n_layers - n_layers // 4)
    level_sts = rng.normal(0, 0.5, len(pairs))
    level_rtr = rng.normal(0, 0.5, len(pairs))
    both_mid = mid[pairs[:, 0]] & mid[pairs[:, 1]]

    def model(extra):
        sts = level_sts[:, None] + extra * both_mid[:, None] + noise * rng.standard_normal((len(pairs), n_prompts))
        rtr = level_rtr[:, None] + noise * rng.standard_normal((len(pairs), n_prompts))
        return dict(per_prompt_sts=sts, per_prompt_rtr=rtr)

    return model(effect), model(0.0), pairs, layer, n_layers


def comparison_rates(n_sims=200, n_permutations=99, effect=2.0, alpha=0.05, seed=0, **size):
    """False-positive rates (null) and power (planted) of the difference's p-value and of its
    interval excluding 0, for both inverted-U scores."""
    rng = np.random.default_rng(seed)
    hits = {(kind, s, what): 0 for kind in ("null", "planted") for s in ("mid_minus_outer", "quad_coef")
            for what in ("p", "ci")}
    for kind, eff in (("null", 0.0), ("planted", effect)):
        for k in range(n_sims):
            a, b, pairs, layer, n_layers = simulate_pair(rng, effect=eff, **size)
            df = compare_profiles(a, b, pairs, layer, n_layers, n_permutations, seed=k)
            for row in df.itertuples():
                hits[(kind, row.score, "p")] += row.p <= alpha
                hits[(kind, row.score, "ci")] += not (row.ci_low <= 0 <= row.ci_high)
    rows = []
    for score in ("mid_minus_outer", "quad_coef"):
        for what, name in (("p", "permutation p"), ("ci", "interval excludes 0")):
            rows.append(binom_row(f"difference_{score} ({name})", "two models from the same process",
                                   hits[("null", score, what)], n_sims, alpha,
                                   power=hits[("planted", score, what)] / n_sims))
    return rows

"""Statistics of the ranking, layer profile and ablation curves on synthetic data with known answers."""
import warnings

import numpy as np
import pandas as pd
import pytest

from synergy_core import stats as S
from synergy_core.ablation_curves import ablation_auc_stats, auc_table
from synergy_core.phiid.all_pairs import phiid_all_pairs
from synergy_core.phiid.chunks import pair_matrix, upper_triangle_pairs
from synergy_core.ranking import rank_heads
from synergy_core.resample import bootstrap_weights

L, NH, N_PROMPTS = 8, 4, 30
H = L * NH
LAYER = np.repeat(np.arange(L), NH)
PAIRS = upper_triangle_pairs(H)


def synthetic(planted: bool, seed: int = 0, noise: float = 1.0, nan_frac: float = 0.0):
    """Per-prompt sts/rtr [P, prompts]: pair value = head effect of both heads + iid noise.

    planted: synergy effect peaks in the middle layers (1 - (2 d - 1)^2), redundancy effect is
    its negative, so syn_red has an inverted U. Otherwise pure noise (no layer structure)."""
    rng = np.random.default_rng(seed)
    depth = LAYER / (L - 1)
    a = (1 - (2 * depth - 1) ** 2) if planted else np.zeros(H)
    i, j = PAIRS.T
    sts = (a[i] + a[j])[:, None] + noise * rng.normal(size=(len(PAIRS), N_PROMPTS))
    rtr = (-a[i] - a[j])[:, None] + noise * rng.normal(size=(len(PAIRS), N_PROMPTS))
    if nan_frac:
        bad = rng.random(sts.shape) < nan_frac
        sts[bad] = np.nan
        rtr[bad] = np.nan
    return sts, rtr


def pipeline_syn_red(sts, rtr, pairs, n_layers, n_heads):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m_sts = np.nanmean(sts, axis=1)
        m_rtr = np.nanmean(rtr, axis=1)
    h = n_layers * n_heads
    return rank_heads(pair_matrix(m_sts, pairs, h), pair_matrix(m_rtr, pairs, h),
                      n_layers, n_heads).syn_red.to_numpy()


# ---------------------------------------------------------------------------------- syn_red
def test_ones_weights_equal_pipeline_with_nan_cells():
    sts, rtr = synthetic(True, seed=1, noise=2.0, nan_frac=0.1)
    sts[5] = np.nan                         # a pair NaN for every prompt
    rtr[5] = np.nan
    got = S.syn_red_from_prompt_weights(sts, rtr, PAIRS, H, np.ones(N_PROMPTS))
    np.testing.assert_allclose(got, pipeline_syn_red(sts, rtr, PAIRS, L, NH), rtol=0, atol=1e-12)


def test_ones_weights_equal_pipeline_on_phiid_output():
    rng = np.random.default_rng(2)
    acts = rng.normal(size=(6, 12, 30)).cumsum(axis=2)
    acts[0, 3] = 1.0                        # a constant head: degenerate cells
    res = phiid_all_pairs(acts, 1)
    got = S.syn_red_from_prompt_weights(res.per_prompt_sts, res.per_prompt_rtr, res.pairs, 12,
                                        np.ones(6))
    want = rank_heads(pair_matrix(res.sts, res.pairs, 12), pair_matrix(res.rtr, res.pairs, 12),
                      4, 3).syn_red.to_numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_weights_columns_and_multiplicities():
    sts, rtr = synthetic(True, seed=3, noise=2.0, nan_frac=0.05)
    rng = np.random.default_rng(0)
    w = bootstrap_weights(N_PROMPTS, 5, rng)
    assert w.shape == (N_PROMPTS, 5) and np.all(w.sum(axis=0) == N_PROMPTS)
    got = S.syn_red_from_prompt_weights(sts, rtr, PAIRS, H, w)
    assert got.shape == (H, 5)
    for b in range(5):                      # weight = repeat the prompt that many times
        idx = np.repeat(np.arange(N_PROMPTS), w[:, b].astype(int))
        want = pipeline_syn_red(sts[:, idx], rtr[:, idx], PAIRS, L, NH)
        np.testing.assert_allclose(got[:, b], want, atol=1e-12)
        np.testing.assert_allclose(
            S.syn_red_from_prompt_weights(sts, rtr, PAIRS, H, w[:, b]), got[:, b], atol=1e-12)


def test_nan_heads_and_degenerate_columns():
    sts, rtr = synthetic(False, seed=4)
    dead = np.any(PAIRS == 7, axis=1)       # head 7 NaN in every pair
    sts[dead] = np.nan
    w = np.zeros((N_PROMPTS, 2))
    w[:, 0] = 1.0                           # column 1: no prompt at all -> all NaN
    out = S.syn_red_from_prompt_weights(sts, rtr, PAIRS, H, w)
    assert np.isnan(out[7, 0]) and np.isfinite(np.delete(out[:, 0], 7)).all()
    assert np.nanmin(out[:, 0]) == 0 and np.nanmax(out[:, 0]) == 1
    assert np.isnan(out[:, 1]).all()
    with pytest.raises(ValueError, match="nonnegative"):
        S.syn_red_from_prompt_weights(sts, rtr, PAIRS, H, -np.ones(N_PROMPTS))
    with pytest.raises(ValueError, match="weights"):
        S.syn_red_from_prompt_weights(sts, rtr, PAIRS, H, np.ones(N_PROMPTS + 1))


# ---------------------------------------------------------------------------- inverted U
def test_inverted_u_known_values_and_thirds_rule():
    n_layers = 4                            # depth 0, 1/3, 2/3, 1: layers 1, 2 are the middle
    layer = np.repeat(np.arange(n_layers), 2)
    d = layer / 3
    v = 1 - (2 * d - 1) ** 2                # exact parabola, c = -4
    sc = S.inverted_u_score(v, layer, n_layers)
    np.testing.assert_allclose(sc["quad_coef"], -4.0)
    np.testing.assert_allclose(sc["mid_minus_outer"], 8 / 9 - 0.0)
    both = S.inverted_u_score(np.stack([v, -v, np.zeros_like(v)], axis=1), layer, n_layers)
    np.testing.assert_allclose(both["mid_minus_outer"], [8 / 9, -8 / 9, 0], atol=1e-12)
    np.testing.assert_allclose(both["quad_coef"], [-4, 4, 0], atol=1e-12)
    # L = 16: layers 5..10 (depth 1/3 .. 2/3 inclusive) are the middle
    lay16 = np.arange(16)
    sc16 = S.inverted_u_score(((lay16 >= 5) & (lay16 <= 10)).astype(float), lay16, 16)
    assert sc16["mid_minus_outer"] == 1.0
    # L = 2: no middle layer; fewer than 3 layers: no quadratic
    sc2 = S.inverted_u_score(np.array([0.0, 1.0]), np.array([0, 1]), 2)
    assert np.isnan(sc2["mid_minus_outer"]) and np.isnan(sc2["quad_coef"])


def test_inverted_u_skips_nan_heads_and_layers():
    layer = np.repeat(np.arange(5), 2)
    v = 1 - (2 * layer / 4 - 1) ** 2
    v_nan = v.copy()
    v_nan[5] = np.nan                       # one head of the middle layer (2): same means
    a = S.inverted_u_score(v, layer, 5)
    b = S.inverted_u_score(v_nan, layer, 5)
    np.testing.assert_allclose(b["quad_coef"], a["quad_coef"])
    np.testing.assert_allclose(b["mid_minus_outer"], a["mid_minus_outer"])
    v_nan[[8, 9]] = np.nan                  # a whole layer: the fit uses the other four
    c = S.inverted_u_score(np.stack([v_nan, v], 1), layer, 5)
    np.testing.assert_allclose(c["quad_coef"], [-4, -4], atol=1e-12)
    assert np.isnan(c["layer_mean"][4, 0])


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_detects_planted_inverted_u():
    sts, rtr = synthetic(True, seed=5, noise=3.0)
    res = S.bootstrap_profile(sts, rtr, PAIRS, LAYER, L, n_boot=300, seed=0)
    sc = res["scores"].set_index("score")
    assert sc.loc["mid_minus_outer", "ci_low"] > 0
    assert sc.loc["quad_coef", "ci_high"] < 0
    assert (sc.n_valid == 300).all()
    lay = res["layers"]
    assert list(lay.columns[:3]) == ["layer", "depth", "syn_red_mean"]
    assert (lay.ci_low <= lay.syn_red_mean + 1e-12).all() and (lay.syn_red_mean <= lay.ci_high + 1e-12).all()
    np.testing.assert_allclose(res["syn_red"], pipeline_syn_red(sts, rtr, PAIRS, L, NH), atol=1e-12)
    assert res["samples"]["layer_mean"].shape == (L, 300)


def test_bootstrap_flat_profile_not_detected_and_deterministic():
    sts, rtr = synthetic(False, seed=100)
    res = S.bootstrap_profile(sts, rtr, PAIRS, LAYER, L, n_boot=300, seed=0)
    sc = res["scores"].set_index("score")
    for name in ("mid_minus_outer", "quad_coef"):
        assert sc.loc[name, "ci_low"] < 0 < sc.loc[name, "ci_high"], name
    again = S.bootstrap_profile(sts, rtr, PAIRS, LAYER, L, n_boot=300, seed=0)
    pd.testing.assert_frame_equal(res["scores"], again["scores"])
    other = S.bootstrap_profile(sts, rtr, PAIRS, LAYER, L, n_boot=300, seed=1)
    assert not np.allclose(res["samples"]["quad_coef"], other["samples"]["quad_coef"])


def test_bootstrap_flat_profile_coverage():
    """Without layer structure the 95% CIs include 0 in most of 20 independent data sets
    (about 93% measured over 60; a single CI excludes 0 by chance now and then)."""
    hits = {"mid_minus_outer": 0, "quad_coef": 0}
    for k in range(20):
        sts, rtr = synthetic(False, seed=100 + k)
        sc = S.bootstrap_profile(sts, rtr, PAIRS, LAYER, L, n_boot=200, seed=k)["scores"]
        for _, row in sc.iterrows():
            hits[row.score] += row.ci_low < 0 < row.ci_high
    assert min(hits.values()) >= 16, hits


# --------------------------------------------------------------------------- split half
def test_split_half_reliability_strong_vs_noise():
    strong = S.split_half_reliability(*synthetic(True, seed=7, noise=2.0), PAIRS, H, n_splits=40)
    noise = S.split_half_reliability(*synthetic(False, seed=7), PAIRS, H, n_splits=40)
    assert strong["mean"] > 0.9 and strong["spearman_brown"] > strong["mean"]
    assert abs(noise["mean"]) < 0.15
    assert noise["correlations"].shape == (40,) and noise["n_valid"] == 40
    assert noise["half_size"] == N_PROMPTS // 2 and noise["sd"] > 0


# ----------------------------------------------------------------------------- surrogate
S_LAYERS, S_NH = 6, 3
S_LAYER = np.repeat(np.arange(S_LAYERS), S_NH)


def coupled_series(coupled: bool, seed: int, n_prompts=24, steps=50):
    """AR(1) heads, all with the same marginal dynamics. If ``coupled``, the heads of the outer
    layers share a common drive (redundant with each other), the middle-layer heads are
    independent: syn_red is then high in the middle only through cross-head coupling."""
    rng = np.random.default_rng(seed)
    h = S_LAYERS * S_NH
    depth = S_LAYER / (S_LAYERS - 1)
    outer = (depth < 1 / 3) | (depth > 2 / 3)
    x = np.zeros((n_prompts, h, steps))
    x[:, :, 0] = 0.6 * rng.normal(size=(n_prompts, h))
    for t in range(steps - 1):
        e = rng.normal(size=(n_prompts, h))
        nxt = 0.5 * x[:, :, t] + 0.5 * e
        if coupled:
            c = rng.normal(size=(n_prompts, 1))
            nxt[:, outer] = 0.5 * x[:, outer, t] + 0.45 * c + 0.2 * e[:, outer]
        x[:, :, t + 1] = nxt
    return x


def test_circular_shift_keeps_each_series():
    acts = np.arange(2 * 3 * 5, dtype=float).reshape(2, 3, 5)
    sur = S.circular_shift_surrogate(acts, np.random.default_rng(0))
    for n in range(2):
        for h in range(3):
            k = int(np.flatnonzero(acts[n, h] == sur[n, h, 0])[0])
            np.testing.assert_array_equal(sur[n, h], np.roll(acts[n, h], -k))


def test_surrogate_null_shapes_range_determinism():
    acts = coupled_series(False, seed=1, n_prompts=6, steps=30)
    a = S.surrogate_null(acts, S_LAYER, S_LAYERS, n_surrogates=9, seed=3)
    b = S.surrogate_null(acts, S_LAYER, S_LAYERS, n_surrogates=9, seed=3)
    for name in ("mid_minus_outer", "quad_coef"):
        assert a["null"][name].shape == (9,)
        assert 0 < a["p_value"][name] <= 1
        assert a["p_value"][name] * 10 == pytest.approx(round(a["p_value"][name] * 10))
        np.testing.assert_array_equal(a["null"][name], b["null"][name])
    assert a["null_layer_mean"].shape == (S_LAYERS, 9)
    c = S.surrogate_null(acts, S_LAYER, S_LAYERS, n_surrogates=9, seed=4)
    assert not np.array_equal(a["null"]["quad_coef"], c["null"]["quad_coef"])


def test_surrogate_null_clear_case():
    n = 19
    coupled = S.surrogate_null(coupled_series(True, seed=11), S_LAYER, S_LAYERS, n_surrogates=n)
    assert coupled["real"]["mid_minus_outer"] > 0.3
    assert coupled["p_value"]["mid_minus_outer"] == pytest.approx(1 / (n + 1))
    assert coupled["null"]["mid_minus_outer"].max() < coupled["real"]["mid_minus_outer"]
    plain = S.surrogate_null(coupled_series(False, seed=11), S_LAYER, S_LAYERS, n_surrogates=n)
    assert plain["p_value"]["mid_minus_outer"] > 0.1


# ------------------------------------------------------------------------------ ablation
def ablation_long(n_heads=16, n_prompts=20, n_random=5, syn_factor=2.0, red_factor=0.5,
                  noise=0.02, seed=0):
    """KL rises linearly with the fraction removed; per-prompt scale; synergistic-first curves
    are ``syn_factor`` times the mean random curve, redundant-first ``red_factor`` times."""
    rng = np.random.default_rng(seed)
    counts = np.arange(n_heads + 1)
    frac = counts / n_heads
    scale = rng.uniform(0.5, 1.5, n_prompts)
    rows = []
    curves = [("synergistic_first", -1, syn_factor), ("redundant_first", -1, red_factor)]
    curves += [("random", s, 1.0 + 0.1 * (s - (n_random - 1) / 2)) for s in range(n_random)]
    for order, s, f in curves:
        kl = f * frac[:, None] * scale[None, :] * (1 + noise * rng.normal(size=(len(frac), n_prompts)))
        kl[0] = 0.0
        for c in counts:
            for p in range(n_prompts):
                rows.append((order, s, c, frac[c], f"p{p:02d}", kl[c, p]))
    return pd.DataFrame(rows, columns=["order", "seed", "n_removed", "fraction_removed", "prompt", "kl"])


def test_ablation_planted_ratios():
    long = ablation_long()
    res = ablation_auc_stats(long, n_boot=300, seed=0)
    t = res["summary"].set_index("quantity")
    assert t.loc["ratio_synergistic_random", "estimate"] == pytest.approx(2.0, rel=0.03)
    assert t.loc["ratio_synergistic_random", "ci_low"] > 1
    assert t.loc["ratio_redundant_random", "estimate"] == pytest.approx(0.5, rel=0.03)
    assert t.loc["ratio_redundant_random", "ci_high"] < 1
    assert res["frac_random_beaten"] == 1.0
    assert res["n_random"] == 5 and res["random_auc"].shape == (5,)
    assert np.all(np.diff(res["random_auc"]) > 0)       # seeds in order, planted increasing
    # estimates equal the pipeline's auc_table
    ref = auc_table(long).set_index("order")
    assert t.loc["auc_synergistic_first", "estimate"] == pytest.approx(
        ref.loc["synergistic_first", "auc"], rel=1e-12)
    assert t.loc["auc_random", "estimate"] == pytest.approx(ref.loc["random", "auc"], rel=1e-12)
    assert t.loc["ratio_redundant_random", "estimate"] == pytest.approx(
        ref.loc["redundant_first", "ratio_to_random"], rel=1e-12)


def test_ablation_bootstrap_matches_explicit_resample_and_handles_gaps():
    long = ablation_long(n_heads=8, n_prompts=6, n_random=2, noise=0.3, seed=1)
    long = long.drop(index=long.index[(long.order == "random") & (long.seed == 1)
                                      & (long.n_removed == 3)])     # a count missing for one curve
    cell = (long.order == "synergistic_first") & (long.prompt == "p02") & (long.n_removed == 5)
    long.loc[cell, "kl"] = np.nan
    res = ablation_auc_stats(long, n_boot=4, seed=9)
    w = bootstrap_weights(6, 4, np.random.default_rng(9))     # the resamples it drew
    prompts = sorted(long.prompt.unique())
    for b in range(4):
        idx = np.repeat(np.arange(6), w[:, b].astype(int))
        parts = [long[long.prompt == prompts[i]].assign(prompt=f"r{k}") for k, i in enumerate(idx)]
        ref = auc_table(pd.concat(parts)).set_index("order")
        assert res["samples"]["auc_synergistic_first"][b] == pytest.approx(
            ref.loc["synergistic_first", "auc"], rel=1e-12)
        assert res["samples"]["ratio_redundant_random"][b] == pytest.approx(
            ref.loc["redundant_first", "ratio_to_random"], rel=1e-12)


def test_ablation_without_random_orders():
    long = ablation_long(n_random=0)
    res = ablation_auc_stats(long, n_boot=20)
    t = res["summary"].set_index("quantity")
    assert np.isnan(t.loc["ratio_synergistic_random", "estimate"]) and np.isnan(res["frac_random_beaten"])
    assert t.loc["auc_synergistic_first", "estimate"] > 0


# ---------------------------------------------------------------------------- categories
def test_category_profiles():
    sts, rtr = synthetic(True, seed=8, noise=1.0)
    cats = np.array(["b", "a", "c"] * 10)
    sts[:, cats == "c"] *= -1               # category c reverses synergy
    rtr[:, cats == "c"] *= -1
    prof = S.category_profiles(sts, rtr, PAIRS, cats, LAYER, L)
    assert list(prof.columns) == ["category", "layer", "depth", "syn_red_mean", "n_prompts"]
    assert len(prof) == 3 * L and list(prof.category.unique()) == ["b", "a", "c"]
    assert (prof.n_prompts == 10).all()
    for c, sign in (("a", 1), ("b", 1), ("c", -1)):
        p = prof[prof.category == c]
        sc = S.inverted_u_score(p.syn_red_mean.to_numpy(), p.layer.to_numpy(), L)
        assert sign * sc["quad_coef"] < 0 and sign * sc["mid_minus_outer"] > 0
    one = prof[prof.category == "a"].syn_red_mean.to_numpy()
    sel = cats == "a"
    want = S.layer_means(pipeline_syn_red(sts[:, sel], rtr[:, sel], PAIRS, L, NH), LAYER, L)
    np.testing.assert_allclose(one, want, atol=1e-12)

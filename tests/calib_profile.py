"""Calibration of the layer-profile statistics of ``profile_scores.tsv`` and ``stats.json``.

Every interval and p-value the stats stage writes is simulated here under its null (false-positive
rate at ``alpha``, with an exact binomial 95% interval) and under planted effects (power), with the
package's own functions:

* ``p_surrogate`` (:func:`synergy_core.stats.surrogate_null`, trimmed shifts): null = independent
  AR(1) heads whose autocorrelation rises from the outer to the middle layers (a per-head property
  that shapes the profile without any coupling); planted = (a) the middle-layer heads coupled
  in pairs, every head with the same lag-1 autocorrelation (raises synergy *and* redundancy there;
  syn_red stays flat), (b) the outer-layer heads driven by a shared signal (redundant outer
  layers: syn_red inverted U);
* ``p_layer_perm`` (:func:`synergy_core.stats.layer_permutation_test`, whole layers): nulls =
  heads exchangeable across layers (atoms pure noise) and random layer effects unrelated to depth;
  planted = inverted-U synergy with the opposite redundancy (syn_red core), and inverted-U synergy
  *with* the same redundancy (the core syn_red hides);
* the bootstrap intervals of ``profile_scores.tsv`` (scores) and ``layer_ci.tsv`` (layer means,
  coverage of the null value 0.5).

Rows: ``dict(test, quantity, score, output, null, alpha, n_sims, false_positive_rate, fpr_ci_low,
fpr_ci_high, power, planted, power_by_planted, size)``.

    PYTHONPATH=workflow python tests/calib_profile.py [--quick] [rows.json]
        # every row at the docstrings' sizes (about 8 min on one core); --quick: the test sizes (30 s)
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sps

from synergy_core import stats as S
from synergy_core.phiid.chunks import upper_triangle_pairs
from synergy_core.ranking import layer_depth

NULL_AR = "independent AR(1) heads, autocorrelation rising towards the middle layers"
NULL_EXCH = "heads exchangeable across layers (atoms pure noise)"
NULL_LAYER = "random layer effects unrelated to depth (heads of a layer share them)"
PLANT_COUPLED = "middle-layer heads coupled in pairs (synergy and redundancy both up)"
PLANT_OUTER = "outer-layer heads share a drive (syn_red inverted U)"
PLANT_SYN_RED = "inverted-U synergy, opposite redundancy (syn_red core)"
PLANT_BOTH = "inverted-U synergy and the same redundancy (core hidden from syn_red)"


def binom_row(test, null, hits, n, alpha, **extra) -> dict:
    """A calibration row: rejection rate ``hits / n`` with its exact (Clopper-Pearson) 95% interval."""
    ci = sps.binomtest(int(hits), int(n)).proportion_ci(0.95, method="exact")
    return dict(test=test, null=null, alpha=alpha, n_sims=int(n), false_positive_rate=hits / n,
                fpr_ci_low=ci.low, fpr_ci_high=ci.high, **extra)


def layer_labels(n_layers: int, heads_per_layer: int):
    layer = np.repeat(np.arange(n_layers), heads_per_layer)
    depth = layer_depth(n_layers)[layer]
    return layer, depth


def inverted_u(depth):
    """0 at both ends, 1 in the middle."""
    return 1.0 - (2.0 * depth - 1.0) ** 2


# ------------------------------------------------------------------------------- time series
def simulate_series(rng, n_layers=6, heads_per_layer=2, n_prompts=6, steps=30, planted=None,
                    phi_outer=0.2, phi_mid=0.85, coupling=0.6, burn=50):
    """``[prompts, heads, steps]`` AR(1) head series, stationary (started from the stationary law
    and burnt in), and the layer labels. ``planted``:

    * ``None``: heads independent, lag-1 autocorrelation ``phi`` rising from ``phi_outer`` (outer
      layers) to ``phi_mid`` (middle) along an inverted U in depth: the surrogate null, with a
      per-head property that shapes every profile without any coupling;
    * ``"paired_core"``: the heads of the middle third are coupled in pairs (heads ``2k`` and
      ``2k + 1``, the same layer when ``heads_per_layer`` is even): ``x_a <- phi_mid x_a +
      coupling x_b + e_a``. That raises both synergy and redundancy of the pair (the core that
      ``syn_red`` can hide). Every other head is an independent AR(1) with the coupled heads'
      lag-1 autocorrelation, so no per-head property differs with depth (otherwise the ranks of
      the middle heads would already be at their ceiling in the surrogates);
    * ``"outer_drive"``: the ``phi`` of the null, and heads outside the middle third add
      ``2 coupling`` times a white drive shared by all of them (redundant outer layers:
      ``syn_red`` inverted U).
    """
    layer, depth = layer_labels(n_layers, heads_per_layer)
    h = len(layer)
    mid = (depth >= 1 / 3 - 1e-9) & (depth <= 2 / 3 + 1e-9)
    phi = phi_outer + (phi_mid - phi_outer) * inverted_u(depth)
    if planted == "paired_core":
        v1, v2 = 1 / (1 - (phi_mid + coupling) ** 2), 1 / (1 - (phi_mid - coupling) ** 2)
        phi = np.full(h, ((phi_mid + coupling) * v1 + (phi_mid - coupling) * v2) / (v1 + v2))
    elif planted not in (None, "outer_drive"):
        raise ValueError(f"unknown planted effect {planted!r}")
    partner = np.arange(h) ^ 1
    x = np.empty((n_prompts, h, steps + burn))
    x[:, :, 0] = rng.standard_normal((n_prompts, h)) / np.sqrt(1 - phi ** 2)
    for t in range(steps + burn - 1):
        e = rng.standard_normal((n_prompts, h))
        nxt = phi * x[:, :, t] + e
        if planted == "paired_core":
            nxt[:, mid] = phi_mid * x[:, mid, t] + coupling * x[:, partner[mid], t] + e[:, mid]
        elif planted == "outer_drive":
            nxt[:, ~mid] += 2.0 * coupling * rng.standard_normal((n_prompts, 1))
        x[:, :, t + 1] = nxt
    return x[:, :, burn:], layer, n_layers


NULL_SIZE = dict(n_layers=6, heads_per_layer=2, n_prompts=6, steps=30)
PLANTED_SIZE = dict(n_layers=6, heads_per_layer=2, n_prompts=24, steps=60)


def surrogate_rates(n_sims=300, n_surrogates=19, alpha=0.05, seed=0, n_planted=40, trim=S.DEFAULT_SURROGATE_TRIM,
                    size=None, planted_size=None, pair_coupling=0.4, outer_coupling=1.0) -> list[dict]:
    """False-positive rate of ``p_surrogate <= alpha`` (every quantity and score) under
    independent AR(1) heads whose autocorrelation rises towards the middle layers (sizes
    ``size``), and power under the two planted couplings (sizes ``planted_size``). Also
    ``excess_small_p_ks``: the largest excess of the null p-values' empirical CDF over the CDF of
    the discrete uniform law of a ``(1 + k) / (1 + n)`` p-value, ``ks_p`` its one-sided
    Kolmogorov p-value (small = too many small p), and ``ks_two_sided_p`` (small = not uniform
    either way; ties make the rank quantities' p conservative at small head counts)."""
    size = dict(NULL_SIZE, **(size or {}))
    planted_size = dict(PLANTED_SIZE, **(planted_size or {}))
    ss = np.random.SeedSequence(seed)
    sims, tests = (np.random.default_rng(s) for s in ss.spawn(2))
    keys = [(q, s) for q in S.QUANTITIES for s in S.SCORES]

    def pvals(n, **kw):
        out = {k: [] for k in keys}
        for _ in range(n):
            acts, layer, n_layers = simulate_series(sims, **kw)
            r = S.surrogate_null(acts, layer, n_layers, 1, n_surrogates, tests, trim)
            for q, s in keys:
                out[(q, s)].append(r["p_value"][q][s])
        return {k: np.asarray(v) for k, v in out.items()}

    null = pvals(n_sims, **size)
    planted = {PLANT_COUPLED: pvals(n_planted, planted="paired_core", coupling=pair_coupling, phi_mid=0.2,
                                    **planted_size),
               PLANT_OUTER: pvals(n_planted, planted="outer_drive", coupling=outer_coupling, **planted_size)}
    levels = np.arange(1, n_surrogates + 2) / (n_surrogates + 1)
    rows = []
    for q, s in keys:
        p = null[(q, s)]
        dev = np.array([np.mean(p <= lv + 1e-12) for lv in levels]) - levels
        ks, ks2 = float(np.max(dev)), float(np.max(np.abs(dev)))
        primary = PLANT_OUTER if q == "syn_red" else PLANT_COUPLED
        power = {name: float(np.mean(v[(q, s)] <= alpha)) for name, v in planted.items()}
        rows.append(binom_row(f"p_surrogate {q} {s}", NULL_AR, int(np.sum(p <= alpha)), len(p), alpha,
                              quantity=q, score=s, output="profile_scores.tsv p_surrogate; stats.json surrogate",
                              power=power[primary], planted=primary, power_by_planted=power,
                              p_resolution=1 / (1 + n_surrogates), mean_p=float(np.mean(p)),
                              excess_small_p_ks=ks, ks_p=float(sps.ksone.sf(ks, len(p))) if ks > 0 else 1.0,
                              ks_two_sided_p=float(sps.kstwo.sf(ks2, len(p))),
                              size=dict(size, n_surrogates=n_surrogates, trim=trim),
                              planted_size=dict(planted_size, pair_coupling=pair_coupling,
                                                outer_coupling=outer_coupling)))
    return rows


# ------------------------------------------------------------------------------ atoms (fast)
def simulate_atoms(rng, kind=None, n_layers=8, heads_per_layer=4, n_prompts=30, effect=1.0, noise=1.0,
                   layer_sd=0.5):
    """Per-prompt sts/rtr ``[P, prompts]``: pair value = head effects of both heads + prompt noise.

    ``kind``: ``None`` pure noise (heads exchangeable); ``"layer_effects"`` a random effect per
    layer (sd ``layer_sd``, independent for sts and rtr, unrelated to depth); ``"syn_red_core"``
    synergy ``+effect * u(depth)``, redundancy ``-effect * u(depth)`` (``u`` the inverted U);
    ``"hidden_core"`` both ``+effect * u(depth)``."""
    layer, depth = layer_labels(n_layers, heads_per_layer)
    pairs = upper_triangle_pairs(len(layer))
    i, j = pairs.T
    a_sts = np.zeros(len(layer))
    a_rtr = np.zeros(len(layer))
    if kind == "layer_effects":
        a_sts = rng.normal(0, layer_sd, n_layers)[layer]
        a_rtr = rng.normal(0, layer_sd, n_layers)[layer]
    elif kind == "syn_red_core":
        a_sts, a_rtr = effect * inverted_u(depth), -effect * inverted_u(depth)
    elif kind == "hidden_core":
        a_sts = a_rtr = effect * inverted_u(depth)
    elif kind is not None:
        raise ValueError(kind)
    shape = (len(pairs), n_prompts)
    sts = (a_sts[i] + a_sts[j])[:, None] + noise * rng.standard_normal(shape)
    rtr = (a_rtr[i] + a_rtr[j])[:, None] + noise * rng.standard_normal(shape)
    return sts, rtr, pairs, layer, n_layers


def layer_perm_rates(n_sims=300, n_perm=199, alpha=0.05, seed=0, n_planted=60, effect=0.5, **size) -> list[dict]:
    """``p_layer_perm`` (whole layers, the stage's test) and, for comparison, the head-label
    permutation: false-positive rates under both nulls, power under both planted cores."""
    ss = np.random.SeedSequence(seed)
    sims, tests = (np.random.default_rng(s) for s in ss.spawn(2))
    scen = {NULL_EXCH: None, NULL_LAYER: "layer_effects", PLANT_SYN_RED: "syn_red_core",
            PLANT_BOTH: "hidden_core"}
    hits = {}
    for name, kind in scen.items():
        n = n_sims if kind in (None, "layer_effects") else n_planted
        for _ in range(n):
            sts, rtr, pairs, layer, n_layers = simulate_atoms(sims, kind, effect=effect, **size)
            vals = S.head_quantities_from_prompt_weights(sts, rtr, pairs, len(layer), np.ones(sts.shape[1]))
            for q in S.QUANTITIES:
                for unit in ("layer", "head"):
                    p = S.layer_permutation_test(vals[q], layer, n_layers, n_perm, tests, unit)["p_value"]
                    for s in S.SCORES:
                        key = (name, q, s, unit)
                        hits[key] = hits.get(key, 0) + (p[s] <= alpha)
    rows = []
    for unit, output in (("layer", "profile_scores.tsv p_layer_perm; stats.json layer_perm"),
                         ("head", "not output (comparison: head labels permuted)")):
        for q in S.QUANTITIES:
            for s in S.SCORES:
                power = {pl: hits[(pl, q, s, unit)] / n_planted for pl in (PLANT_SYN_RED, PLANT_BOTH)}
                primary = PLANT_SYN_RED if q == "syn_red" else PLANT_BOTH
                for null in (NULL_EXCH, NULL_LAYER):
                    rows.append(binom_row(f"p_{unit}_perm {q} {s}", null, hits[(null, q, s, unit)], n_sims,
                                          alpha, quantity=q, score=s, output=output, power=power[primary],
                                          planted=primary, power_by_planted=power,
                                          p_resolution=1 / (1 + n_perm),
                                          size=dict(size, n_perm=n_perm, effect=effect)))
    return rows


def bootstrap_ci_rates(n_sims=200, n_boot=200, ci=0.95, seed=0, n_planted=40, effect=0.5, **size) -> list[dict]:
    """The bootstrap intervals of ``profile_scores.tsv``: rate of excluding 0 (two-sided, and
    one-sided in the inverted-U direction, nominal ``(1 - ci) / 2``) under exchangeable heads and
    under random layer effects, power under the planted cores; ``layer_ci.tsv``: rate at which a
    layer's interval misses the null value 0.5 under exchangeable heads."""
    ss = np.random.SeedSequence(seed)
    sims, tests = (np.random.default_rng(s) for s in ss.spawn(2))
    scen = {NULL_EXCH: None, NULL_LAYER: "layer_effects", PLANT_SYN_RED: "syn_red_core", PLANT_BOTH: "hidden_core"}
    two, one, layer_miss, layer_n = {}, {}, {q: 0 for q in S.QUANTITIES}, 0
    for name, kind in scen.items():
        n = n_sims if kind in (None, "layer_effects") else n_planted
        for _ in range(n):
            sts, rtr, pairs, layer, n_layers = simulate_atoms(sims, kind, effect=effect, **size)
            res = S.bootstrap_profile(sts, rtr, pairs, layer, n_layers, n_boot, tests, ci)
            for r in res["scores"].itertuples():
                excl = not (r.ci_low <= 0 <= r.ci_high)
                inu = r.ci_low > 0 if r.score == "mid_minus_outer" else r.ci_high < 0
                two[(name, r.quantity, r.score)] = two.get((name, r.quantity, r.score), 0) + excl
                one[(name, r.quantity, r.score)] = one.get((name, r.quantity, r.score), 0) + inu
            if kind is None:
                lay = res["layers"]
                miss = ~((lay.ci_low <= 0.5) & (0.5 <= lay.ci_high))
                for q in S.QUANTITIES:
                    layer_miss[q] += int(miss[lay.quantity == q].sum())
                layer_n += n_layers
    rows = []
    alpha2, alpha1 = 1 - ci, (1 - ci) / 2
    for q in S.QUANTITIES:
        primary = PLANT_SYN_RED if q == "syn_red" else PLANT_BOTH
        for s in S.SCORES:
            for what, counts, a in (("two-sided", two, alpha2), ("one-sided inverted-U", one, alpha1)):
                power = {pl: counts[(pl, q, s)] / n_planted for pl in (PLANT_SYN_RED, PLANT_BOTH)}
                for null in (NULL_EXCH, NULL_LAYER):
                    rows.append(binom_row(f"bootstrap CI excludes 0 ({what}) {q} {s}", null, counts[(null, q, s)],
                                          n_sims, a, quantity=q, score=s,
                                          output="profile_scores.tsv ci_low, ci_high", power=power[primary],
                                          planted=primary, power_by_planted=power,
                                          size=dict(size, n_boot=n_boot, ci=ci, effect=effect)))
        rows.append(binom_row(f"layer bootstrap CI misses 0.5 {q}", NULL_EXCH, layer_miss[q], layer_n, alpha2,
                              quantity=q, score="layer_mean", output="layer_ci.tsv ci_low, ci_high",
                              power=np.nan, planted="", power_by_planted={},
                              size=dict(size, n_boot=n_boot, ci=ci, note="n_sims counts layers")))
    return rows


def _print(rows):
    for r in rows:
        print(f"{r['test']:<58s} | {r['null'][:40]:<40s} | a={r['alpha']:.3f} n={r['n_sims']:4d} "
              f"fpr={r['false_positive_rate']:.3f} [{r['fpr_ci_low']:.3f}, {r['fpr_ci_high']:.3f}] "
              f"power={r['power']:.2f} {r.get('power_by_planted', '')} "
              f"{'ks_p=%.3g' % r['ks_p'] if 'ks_p' in r else ''}")


def quick_rates() -> list[dict]:
    """Every row at the sizes of ``tests/test_calibration_profile.py`` (about 30 s on one core)."""
    return (surrogate_rates(n_sims=300, n_surrogates=19, n_planted=30)
            + layer_perm_rates(n_sims=400, n_perm=99, n_planted=40, effect=0.3, n_layers=12, heads_per_layer=2,
                               n_prompts=12)
            + bootstrap_ci_rates(n_sims=200, n_boot=100, n_planted=30, effect=0.3, n_layers=6, heads_per_layer=3,
                                 n_prompts=12))


def full_rates(pythia_sizes: bool = True) -> list[dict]:
    """Every row at the sizes quoted in the docstrings of :mod:`synergy_core.stats` (about 5 min
    on one core), plus Pythia-1B-like head counts (16 x 8 heads; about 2 min more)."""
    rows = []
    rows += surrogate_rates(n_sims=1000, n_surrogates=19, n_planted=100)
    rows += surrogate_rates(n_sims=300, n_surrogates=19, n_planted=60, seed=1,
                            size=dict(n_layers=8, heads_per_layer=4, n_prompts=12, steps=60),
                            planted_size=dict(n_layers=8, heads_per_layer=4, n_prompts=24, steps=60))
    if pythia_sizes:
        rows += surrogate_rates(n_sims=100, n_surrogates=19, n_planted=20, seed=2,
                                size=dict(n_layers=16, heads_per_layer=8, n_prompts=20, steps=100),
                                planted_size=dict(n_layers=16, heads_per_layer=8, n_prompts=20, steps=100))
    rows += layer_perm_rates(n_sims=1000, n_perm=199, n_planted=200, effect=0.2, n_layers=12,
                             heads_per_layer=2, n_prompts=12)
    rows += layer_perm_rates(n_sims=1000, n_perm=199, n_planted=200, effect=0.2, seed=1, n_layers=16,
                             heads_per_layer=8, n_prompts=60, noise=3.0)
    rows += bootstrap_ci_rates(n_sims=400, n_boot=200, n_planted=100, effect=0.2)
    rows += bootstrap_ci_rates(n_sims=400, n_boot=200, n_planted=100, effect=0.2, seed=1, n_layers=6,
                               heads_per_layer=3, n_prompts=12)
    if pythia_sizes:
        rows += bootstrap_ci_rates(n_sims=200, n_boot=200, n_planted=50, effect=0.2, seed=2, n_layers=16,
                                   heads_per_layer=8, n_prompts=60, noise=3.0)
    return rows


def all_rates(big: bool = False) -> list[dict]:
    """``big``: :func:`full_rates` (the docstrings' numbers); otherwise :func:`quick_rates`."""
    return full_rates() if big else quick_rates()


if __name__ == "__main__":
    import json
    import sys
    import time

    t0 = time.time()
    out = all_rates(big="--quick" not in sys.argv)
    _print(out)
    print(f"[{time.time() - t0:.0f} s]")
    for arg in sys.argv[1:]:
        if arg.endswith(".json"):
            with open(arg, "w") as f:
                json.dump(out, f, indent=1, default=float)


def perm_interval_rates(n_sims=400, n_perm=199, ci=0.95, seed=0, n_layers=16, heads_per_layer=2,
                        effect=4.0, layer_sd=0.5) -> list[dict]:
    """The summary's interval of each inverted-U score (:func:`stats.permutation_interval` on the
    whole-layer permutation null): how often it excludes 0 when depth does not matter (layers
    exchangeable, each with its own random effect), and how often it does under a planted
    inverted U."""
    from synergy_core.stats import layer_permutation_test, permutation_interval

    rng = np.random.default_rng(seed)
    layer = np.repeat(np.arange(n_layers), heads_per_layer)
    depth = layer / (n_layers - 1)
    hits = {(k, s): 0 for k in ("null", "planted") for s in S.SCORES}
    for k, eff in (("null", 0.0), ("planted", effect)):
        for _ in range(n_sims):
            values = (rng.normal(0, layer_sd, n_layers)[layer] + rng.standard_normal(layer.size)
                      + eff * inverted_u(depth))
            test = layer_permutation_test(values, layer, n_layers, n_perm, rng)
            for s in S.SCORES:
                lo, hi = permutation_interval(test["real"][s], test["null"][s], ci)
                hits[(k, s)] += not (lo <= 0 <= hi)
    return [binom_row(f"{s} interval (layer permutation) excludes 0", "whole layers exchangeable over depth",
                      hits[("null", s)], n_sims, 1 - ci, power=hits[("planted", s)] / n_sims)
            for s in S.SCORES]

"""Statistics stage: uncertainty and null models of one model's profile, graphs and ablation."""

from __future__ import annotations

import logging
from math import comb

import numpy as np

from ..graphs import graph_statistics
from ..io import head_layout, load_activations, load_phiid, write_json, write_table
from ..stats import (
    DEFAULT_N_LAYER_PERM,
    DEFAULT_SURROGATE_TRIM,
    QUANTITIES,
    SCORES,
    bootstrap_profile,
    category_profiles,
    layer_permutation_test,
    middle_layers,
    permutation_interval,
    split_half_reliability,
    surrogate_null,
)

log = logging.getLogger(__name__)

STATS_KEYS = ("per_prompt_sts", "per_prompt_rtr", "pairs", "layer", "head", "categories")
#: One independent random stream per analysis: child ``k`` of ``SeedSequence(stats.seed)``.
ANALYSES = ("bootstrap", "split_half", "surrogate", "graphs", "categories", "layer_perm")


def model_statistics(phiid_path, acts_path, outputs: dict, cfg: dict, tau: int) -> None:
    """Layer profiles of ``syn_red`` and of the synergy and redundancy ranks with bootstrap
    intervals, layer-permutation and surrogate p-values, split-half reliability, per-category
    profiles and graph metrics of one model, all from the per-prompt PhiID arrays (the surrogates
    recompute PhiID from the activations).

    ``outputs`` names ``scores``, ``layers``, ``categories``, ``graphs`` (TSV) and ``json``.
    ``profile_scores.tsv``: one row per quantity (``syn_red``, ``synergy``, ``redundancy``) and
    score (``mid_minus_outer``, ``quad_coef``): ``quantity, score, estimate, ci_low, ci_high,
    boot_mean, boot_se, n_valid, p_layer_perm, p_surrogate``. ``layer_ci.tsv``: ``quantity, layer,
    depth, estimate, ci_low, ci_high, boot_mean, boot_se, n_valid``. The verdict's test of an
    inverted U is ``p_layer_perm``; the bootstrap interval is descriptive (see
    :func:`synergy_core.stats.bootstrap_profile`). Every analysis draws from its own child of
    ``SeedSequence(cfg["seed"])`` (:data:`ANALYSES`, spawn keys in ``stats.json``).
    """
    arrays, prov = load_phiid(phiid_path, acts_path, STATS_KEYS)
    sts, rtr, pairs = arrays["per_prompt_sts"], arrays["per_prompt_rtr"], arrays["pairs"]
    layer = arrays["layer"]
    n_layers, _ = head_layout(layer, arrays["head"])
    n_total_heads = len(layer)
    seed, ci = cfg["seed"], cfg["ci"]
    n_perm = int(cfg.get("n_layer_perm", DEFAULT_N_LAYER_PERM))
    trim = float(cfg.get("surrogate_trim", DEFAULT_SURROGATE_TRIM))
    streams = dict(zip(ANALYSES, np.random.SeedSequence(seed).spawn(len(ANALYSES))))
    graph_seed = int(streams["graphs"].generate_state(1)[0])

    boot = bootstrap_profile(sts, rtr, pairs, layer, n_layers, cfg["n_boot"], streams["bootstrap"], ci)
    perm_rng = np.random.default_rng(streams["layer_perm"])
    perm_tests = {q: layer_permutation_test(boot["values"][q], layer, n_layers, n_perm, perm_rng)
                  for q in QUANTITIES}
    perm = {q: t["p_value"] for q, t in perm_tests.items()}
    split = split_half_reliability(sts, rtr, pairs, n_total_heads, cfg["n_splits"], streams["split_half"])
    log.info("split-half reliability of syn_red (Spearman-Brown): %.3f (half-sample r %.3f, sd %.3f)",
             split["reliability"], split["half_sample_r"], split["half_sample_r_sd"])
    nan_p = {q: {s: np.nan for s in SCORES} for q in QUANTITIES}
    surrogate = {"p_value": nan_p, "n_surrogates": 0, "real": nan_p, "shift_steps": None,
                 "window_steps": None}
    if cfg["n_surrogates"]:
        acts = load_activations(acts_path)[0]["acts"]
        surrogate = surrogate_null(acts, layer, n_layers, tau, cfg["n_surrogates"], streams["surrogate"], trim)
        log.info("surrogate p-values (%d trimmed shifts of +-%d steps): %s", cfg["n_surrogates"],
                 surrogate["shift_steps"], surrogate["p_value"])
    # ci_low/ci_high: the layer-permutation interval (calibrated with p_layer_perm); the prompt
    # bootstrap's percentile interval is kept as boot_ci_low/boot_ci_high (descriptive).
    interval = [permutation_interval(r.estimate, perm_tests[r.quantity]["null"][r.score], ci)
                for r in boot["scores"].itertuples()]
    scores = boot["scores"].rename(columns={"ci_low": "boot_ci_low", "ci_high": "boot_ci_high"}).assign(
        ci_low=[lo for lo, _ in interval], ci_high=[hi for _, hi in interval],
        p_layer_perm=[perm[r.quantity][r.score] for r in boot["scores"].itertuples()],
        p_surrogate=[surrogate["p_value"][r.quantity][r.score] for r in boot["scores"].itertuples()])
    log.info("inverted-U scores:\n%s", scores.to_string(index=False))
    graphs = graph_statistics(sts, rtr, pairs, n_total_heads, cfg["graph_fraction"], cfg["n_boot_graph"],
                              cfg["n_null_graph"], graph_seed, ci)
    log.info("graph metrics:\n%s", graphs.to_string(index=False))
    made_from = [phiid_path, acts_path]
    write_table(outputs["scores"], scores, made_from)
    write_table(outputs["layers"], boot["layers"], made_from)
    write_table(outputs["categories"],
                category_profiles(sts, rtr, pairs, arrays["categories"], layer, n_layers), made_from)
    write_table(outputs["graphs"], graphs, made_from)

    def num(x):
        return None if x is None else float(x)

    n_sur = int(surrogate["n_surrogates"])
    write_json(outputs["json"], made_from=made_from, obj=dict(
        split_half=dict(reliability=num(split["reliability"]), half_sample_r=num(split["half_sample_r"]),
                        half_sample_r_sd=num(split["half_sample_r_sd"]), n_splits=int(cfg["n_splits"]),
                        n_valid=split["n_valid"], half_size=split["half_size"], quantity="syn_red",
                        note="reliability = Spearman-Brown 2r/(1+r) of the mean half-sample Spearman r"),
        surrogate=dict(
            p_value={s: num(surrogate["p_value"]["syn_red"][s]) for s in SCORES},
            p_value_by_quantity={q: {s: num(v) for s, v in d.items()} for q, d in surrogate["p_value"].items()},
            real_windowed={q: {s: num(v) for s, v in d.items()} for q, d in surrogate["real"].items()},
            n_surrogates=n_sur, p_resolution=1.0 / (1 + n_sur) if n_sur else None, trim=trim,
            shift_steps=surrogate["shift_steps"], window_steps=surrogate["window_steps"],
            method="trimmed non-circular shifts", sided="one-sided, inverted-U direction",
            null="heads independent of each other, each series stationary (own autocorrelation kept)"),
        layer_perm=dict(
            p_value={q: {s: num(v) for s, v in d.items()} for q, d in perm.items()},
            n_perm=n_perm, p_resolution=1.0 / (1 + n_perm), unit="layer",
            n_distinct_middle_sets=comb(n_layers, int(middle_layers(n_layers).sum())),
            note=("mid_minus_outer takes at most n_distinct_middle_sets values over the arrangements, "
                  "so its p-value cannot fall much below 1 / n_distinct_middle_sets"),
            sided="one-sided, inverted-U direction",
            null="whole layers exchangeable across depth (quantity unrelated to depth)"),
        bootstrap=dict(n_boot=int(cfg["n_boot"]), ci=ci, role="descriptive (prompt-sampling spread); "
                       "the verdict's test is layer_perm"),
        random_streams=dict(seed=seed, method="numpy.random.SeedSequence(seed).spawn",
                            spawn_key={k: list(v.spawn_key) for k, v in streams.items()},
                            graphs_seed=graph_seed,
                            note="categories draws nothing (deterministic); its stream is reserved"),
        aggregation=prov.get("settings", {}).get("aggregation"), n_boot=cfg["n_boot"], ci=ci,
        seed=seed, note=("bootstrap and split halves reweight per-prompt PhiID; with pooled "
                         "aggregation they describe the per-prompt estimate")))

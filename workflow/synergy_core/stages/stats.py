"""Statistics stage: uncertainty and null models of one model's profile, graphs and ablation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..ablation_curves import ablation_auc_stats
from ..graphs import bootstrap_graph_metrics
from ..io import head_layout, load_activations, load_phiid, read_table, write_json, write_table
from ..stats import bootstrap_profile, category_profiles, split_half_reliability, surrogate_null

log = logging.getLogger(__name__)

STATS_KEYS = ("per_prompt_sts", "per_prompt_rtr", "pairs", "layer", "head", "categories")


def model_statistics(phiid_path, acts_path, outputs: dict, cfg: dict, tau: int) -> None:
    """Bootstrap CIs of the inverted-U scores, split-half reliability, surrogate null, per-category
    profiles and graph metrics of one model, all from the per-prompt PhiID arrays.

    ``outputs`` names ``scores``, ``layers``, ``categories``, ``graphs`` (TSV) and ``json``.
    """
    arrays, prov = load_phiid(phiid_path, acts_path, STATS_KEYS)
    sts, rtr, pairs = arrays["per_prompt_sts"], arrays["per_prompt_rtr"], arrays["pairs"]
    layer = arrays["layer"]
    n_layers, _ = head_layout(layer, arrays["head"])
    n_total_heads = len(layer)
    seed, ci = cfg["seed"], cfg["ci"]
    boot = bootstrap_profile(sts, rtr, pairs, layer, n_layers, cfg["n_boot"], seed, ci)
    log.info("inverted-U scores:\n%s", boot["scores"].to_string(index=False))
    split = split_half_reliability(sts, rtr, pairs, n_total_heads, cfg["n_splits"], seed)
    log.info("split-half reliability of syn_red: %.3f (sd %.3f)", split["mean"], split["sd"])
    surrogate = {"p_value": {"mid_minus_outer": np.nan, "quad_coef": np.nan}, "n_surrogates": 0}
    if cfg["n_surrogates"]:
        acts = load_activations(acts_path)[0]["acts"]
        surrogate = surrogate_null(acts, layer, n_layers, tau, cfg["n_surrogates"], seed)
        log.info("surrogate p-values (%d circular shifts): %s", cfg["n_surrogates"],
                 surrogate["p_value"])
    graphs = []
    for name, per_prompt in (("synergy", sts), ("redundancy", rtr)):
        g = bootstrap_graph_metrics(per_prompt, pairs, n_total_heads, cfg["graph_fraction"],
                                    cfg["n_boot_graph"], seed, ci)["summary"]
        graphs.append(g.assign(network=name))
    write_table(outputs["scores"], boot["scores"])
    write_table(outputs["layers"], boot["layers"])
    write_table(outputs["categories"],
                category_profiles(sts, rtr, pairs, arrays["categories"], layer, n_layers))
    write_table(outputs["graphs"], pd.concat(graphs, ignore_index=True))
    write_json(outputs["json"], dict(
        split_half=dict(mean=split["mean"], sd=split["sd"], spearman_brown=split["spearman_brown"],
                        n_splits=cfg["n_splits"]),
        surrogate=dict(p_value=surrogate["p_value"], n_surrogates=surrogate["n_surrogates"]),
        aggregation=prov.get("settings", {}).get("aggregation"), n_boot=cfg["n_boot"], ci=ci,
        seed=seed, note=("bootstrap and split halves reweight per-prompt PhiID; with pooled "
                         "aggregation they describe the per-prompt estimate")))


def ablation_statistics(long_path, out_tsv, out_json, cfg: dict) -> None:
    """Bootstrap CIs over prompts of the ablation AUC ratios, and the fraction of random orders
    the synergistic-first curve beats."""
    long = read_table(long_path, ("order", "seed", "fraction_removed", "prompt", "kl"))
    res = ablation_auc_stats(long, cfg["n_boot"], cfg["seed"], cfg["ci"])
    write_table(out_tsv, res["summary"])
    write_json(out_json, dict(frac_random_beaten=res["frac_random_beaten"],
                              n_random=res["n_random"], n_prompts=res["n_prompts"],
                              n_boot=res["n_boot"], ci=res["ci"]))

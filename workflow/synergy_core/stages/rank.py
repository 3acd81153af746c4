"""Ranking stage: per-head synergy and redundancy, their rank difference, the layer profile."""

from __future__ import annotations

import logging

import numpy as np

from ..io import head_layout, load_phiid, write_json, write_table
from ..ranking import (
    layer_profile,
    prompt_halves,
    rank_heads,
    syn_red_from_prompt_weights,
    synergy_redundancy_correlation,
)

log = logging.getLogger(__name__)


def rank_model(phiid_path, acts_path, heads_out, profile_out, diagnostics_out) -> None:
    """Per-head ranking table, layer profile and synergy-redundancy diagnostics of one model
    (the merged PhiID is checked to come from the activations at ``acts_path``).

    ``heads.tsv`` also holds ``syn_red_half0`` and ``syn_red_half1``: syn_red from the per-prompt
    PhiID of each fixed half of the prompts (:func:`ranking.prompt_halves`; prompt means, as
    the per_prompt aggregation), for the cross-validated ablation (``ablation.cross_validate``).
    """
    arrays, prov = load_phiid(phiid_path, acts_path,
                              ("atoms", "atom_names", "head_labels", "layer", "head",
                               "per_prompt_sts", "per_prompt_rtr", "pairs", "categories"))
    names = list(arrays["atom_names"])
    n_layers, n_heads = head_layout(arrays["layer"], arrays["head"])
    table = rank_heads(arrays["atoms"][names.index("sts")], arrays["atoms"][names.index("rtr")],
                       n_layers, n_heads, list(arrays["head_labels"]))
    table["nan_cells"] = arrays["per_head_nan"]
    halves = prompt_halves(arrays["categories"])
    weights = np.stack([halves == 0, halves == 1], axis=1).astype(np.float64)
    by_half = syn_red_from_prompt_weights(arrays["per_prompt_sts"], arrays["per_prompt_rtr"],
                                          arrays["pairs"], len(table), weights)
    table["syn_red_half0"], table["syn_red_half1"] = by_half[:, 0], by_half[:, 1]
    corr = synergy_redundancy_correlation(table)
    n_nan = int(table.syn_red.isna().sum())
    if n_nan:
        log.warning("%d heads have no valid synergy/redundancy and are left unranked", n_nan)
    log.info("synergy vs redundancy across heads: Spearman %.3f, Pearson %.3f",
             corr["spearman"], corr["pearson"])
    made_from = [phiid_path, acts_path]
    write_table(heads_out, table, made_from)
    write_table(profile_out, layer_profile(table), made_from)
    write_json(diagnostics_out, made_from=made_from, obj=dict(
        corr, unranked_heads=n_nan, n_layers=n_layers, n_heads_per_layer=n_heads,
        nan_cells=int(arrays["nan_count"].sum()), n_pairs=len(arrays["pairs"]),
        n_prompts=int(arrays["per_prompt_sts"].shape[1]), model=prov.get("model")))

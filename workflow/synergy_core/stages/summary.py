"""Summary stage: the verdict table, one row per model, numbers only.

Every interval is two columns (``<x>_ci_low``, ``<x>_ci_high``) and every p-value one column
(``<x>_p...``) next to the resolution it has (the number of permutations or surrogates behind
it). The verdict columns apply the documented rules below at ``ALPHA``; the README's "Reading the
summary" explains each column, its null and its calibration (tests/benchmarks/calibration.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import read_json, read_table, write_table

#: Level of every verdict.
ALPHA = 0.05
QUANTITY_PREFIX = {"syn_red": "", "synergy": "synergy_rank_", "redundancy": "redundancy_rank_"}
GRAPH_METRICS = ("global_efficiency", "modularity")


def _verdict(p: float, resolution: float) -> str:
    """``supported`` when ``p <= ALPHA``; ``inconclusive`` when the test cannot reach ``ALPHA``
    (its smallest possible p is above it) or p is NaN; else ``not supported``."""
    if not np.isfinite(p) or resolution > ALPHA:
        return "inconclusive"
    return "supported" if p <= ALPHA else "not supported"


def _profile_columns(row: dict, scores: pd.DataFrame) -> None:
    for r in scores.itertuples():
        key = f"{QUANTITY_PREFIX[r.quantity]}{r.score}"
        row[key] = r.estimate
        row[f"{key}_ci_low"] = r.ci_low
        row[f"{key}_ci_high"] = r.ci_high
        row[f"{key}_p_layer_perm"] = r.p_layer_perm
        row[f"{key}_p_surrogate"] = r.p_surrogate


def _graph_columns(row: dict, graphs: pd.DataFrame) -> None:
    for g in graphs[graphs.metric.isin(GRAPH_METRICS)].itertuples():
        key = f"graph_{g.variant}_{g.network}_{g.metric}"
        row[key] = g.estimate
        if g.network == "synergy_minus_redundancy":
            # the exact fold sign-flip p only: the bootstrap t interval of the difference was
            # measured at up to 7% false positives, so it stays in graphs.tsv (descriptive)
            row[f"{key}_p"] = g.p
            row[f"{key}_n_folds"] = g.n_folds
        else:
            row[f"{key}_null_low"], row[f"{key}_null_high"] = g.null_low, g.null_high
            row[f"{key}_p_null"] = g.p_null


def build_summary(models: dict, out_path) -> None:
    """One row per model (the verdict table). ``models`` maps a model name to a dict with its
    ``spec`` and the paths ``diagnostics``, ``scores``, ``stats``, ``graphs``, for ablated
    models ``ablation`` and ``ablation_json``, and ``comparisons``: ``{kind: {"other": model,
    "path": tsv}}`` for the paired comparisons this model is the first of."""
    rows = []
    for name, m in models.items():
        spec = m["spec"]
        diag = read_json(m["diagnostics"])
        stats = read_json(m["stats"])
        scores = read_table(m["scores"], ("quantity", "score", "estimate", "ci_low", "ci_high",
                                          "p_layer_perm", "p_surrogate"))
        graphs = read_table(m["graphs"], ("network", "variant", "metric", "estimate"))
        row = dict(model=name, family=spec.get("family", name), hf_id=spec["hf_id"],
                   revision=spec.get("revision") or "", init=spec.get("init"),
                   heads=diag["n_layers"] * diag["n_heads_per_layer"], layers=diag["n_layers"],
                   prompts=diag["n_prompts"], nan_cells=diag["nan_cells"],
                   unranked_heads=diag["unranked_heads"],
                   synergy_redundancy_spearman=diag["spearman"],
                   synergy_redundancy_pearson=diag["pearson"])
        _profile_columns(row, scores)
        perm = stats["layer_perm"]
        row["n_layer_perm"] = perm["n_perm"]
        # mid_minus_outer can take only n_distinct_middle_sets values over layer arrangements
        row["p_layer_perm_floor"] = max(perm["p_resolution"], 1.0 / perm["n_distinct_middle_sets"])
        row["n_surrogates"] = stats["surrogate"]["n_surrogates"]
        row["split_half_reliability"] = stats["split_half"]["reliability"]
        row["split_half_r"] = stats["split_half"]["half_sample_r"]
        _graph_columns(row, graphs)
        row["verdict_inverted_u"] = _verdict(row["mid_minus_outer_p_layer_perm"], row["p_layer_perm_floor"])
        if m.get("ablation"):
            abl = read_table(m["ablation"], ("quantity", "estimate", "ci_low", "ci_high", "p"))
            abl = abl.set_index("quantity")
            for q in ("ratio_synergistic_random", "ratio_redundant_random"):
                row[q], row[f"{q}_ci_low"], row[f"{q}_ci_high"] = abl.loc[q, ["estimate", "ci_low", "ci_high"]]
                row[f"{q}_p"] = abl.loc[q, "p"]
            row["ablation_n_random"] = int(abl.loc["ratio_synergistic_random", "n_random"])
            abl_json = read_json(m["ablation_json"])
            row["frac_random_beaten"] = abl_json["frac_random_beaten"]
            # non-finite KL values: their prompts are left out of every curve, counted here
            row["ablation_n_nonfinite_kl"] = abl_json["n_nonfinite_kl"]
            row["ablation_n_prompts_excluded"] = abl_json["n_prompts_excluded"]
            row["verdict_ablation"] = _verdict(row["ratio_synergistic_random_p"],
                                               1.0 / (1 + row["ablation_n_random"]))
        for kind, comp in m.get("comparisons", {}).items():
            # vs_random: this model minus its random-init twin; vs_first: this (final)
            # checkpoint minus the family's first. Paired by prompt, permutation p-value.
            table = read_table(comp["path"], ("score", "difference", "ci_low", "ci_high", "p"))
            row[f"vs_{kind}_model"] = comp["other"]
            for r in table.itertuples():
                row[f"vs_{kind}_{r.score}"] = r.difference
                row[f"vs_{kind}_{r.score}_ci_low"] = r.ci_low
                row[f"vs_{kind}_{r.score}_ci_high"] = r.ci_high
                row[f"vs_{kind}_{r.score}_p"] = r.p
            row[f"vs_{kind}_n_permutations"] = int(table.n_permutations.iloc[0])
        rows.append(row)
    made_from = [m[k] for m in models.values() for k in ("diagnostics", "stats", "scores", "graphs",
                                                          "ablation", "ablation_json") if m.get(k)]
    made_from += [c["path"] for m in models.values() for c in m.get("comparisons", {}).values()]
    write_table(out_path, pd.DataFrame(rows), made_from)

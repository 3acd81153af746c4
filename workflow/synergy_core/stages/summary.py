"""Summary stage: the verdict table, one row per model."""

from __future__ import annotations

import pandas as pd

from ..io import read_json, read_table, write_table


def _ci_text(row) -> str:
    return f"{row.estimate:.3g} [{row.ci_low:.3g}, {row.ci_high:.3g}]"


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
        scores = read_table(m["scores"], ("score", "estimate", "ci_low", "ci_high")).set_index("score")
        graphs = read_table(m["graphs"], ("metric", "network", "estimate"))
        row = dict(model=name, family=spec.get("family", name), hf_id=spec["hf_id"],
                   revision=spec.get("revision") or "", init=spec.get("init"),
                   heads=diag["n_layers"] * diag["n_heads_per_layer"], layers=diag["n_layers"],
                   prompts=diag["n_prompts"], nan_cells=diag["nan_cells"],
                   unranked_heads=diag["unranked_heads"],
                   synergy_redundancy_spearman=diag["spearman"],
                   synergy_redundancy_pearson=diag["pearson"])
        for score in ("mid_minus_outer", "quad_coef"):
            r = scores.loc[score]
            row[score] = r.estimate
            row[f"{score}_ci"] = f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
            row[f"{score}_surrogate_p"] = stats["surrogate"]["p_value"][score]
        row["split_half_reliability"] = stats["split_half"]["mean"]
        for g in graphs.itertuples():
            if g.metric in ("global_efficiency", "modularity"):
                row[f"{g.network}_{g.metric}"] = _ci_text(g)
        if m.get("ablation"):
            abl = read_table(m["ablation"], ("quantity",)).set_index("quantity")
            for q in ("ratio_synergistic_random", "ratio_redundant_random"):
                row[q] = _ci_text(abl.loc[q])
            row["frac_random_beaten"] = read_json(m["ablation_json"])["frac_random_beaten"]
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
        rows.append(row)
    write_table(out_path, pd.DataFrame(rows))

"""Figure stage: every figure of the workflow, each saved as the PNG and PDF its rule declares.

``outputs`` dicts map a figure key to its PNG and ``<key>_pdf`` to its PDF, exactly the named
outputs of the rule.
"""

from __future__ import annotations

from .. import plots
from ..io import head_layout, load_arrays, read_json, read_table


def _title(model: str, prov: dict | None) -> str:
    m = (prov or {}).get("model") or {}
    bits = [model, m.get("hf_id", "")]
    if m.get("revision"):
        bits.append(m["revision"])
    if m.get("init") == "random":
        bits.append(f"random init, seed {m.get('seed')}")
    return " | ".join(b for b in bits if b)


def _save(fig, outputs: dict, key: str) -> None:
    plots.save(fig, str(outputs[key]), str(outputs[f"{key}_pdf"]))


def plot_model(phiid_path, heads_path, diagnostics_path, outputs: dict, model: str) -> None:
    """Fig 2a (pairwise sts/rtr), Fig 2b (syn_red per head), scatter and NaN diagnostics."""
    arrays, prov = load_arrays(phiid_path, ("atoms", "atom_names", "layer", "head"))
    names = list(arrays["atom_names"])
    table = read_table(heads_path, ("syn_red", "synergy", "redundancy"))
    diag = read_json(diagnostics_path)
    title = _title(model, prov)
    n_layers, n_heads = head_layout(arrays["layer"], arrays["head"])
    _save(plots.pairwise_heatmaps(arrays["atoms"][names.index("sts")],
                                  arrays["atoms"][names.index("rtr")], n_layers, n_heads, title),
          outputs, "fig2a")
    _save(plots.syn_red_heatmap(table, title), outputs, "fig2b")
    _save(plots.synergy_vs_redundancy(table, diag, title), outputs, "scatter")
    _save(plots.nan_counts(table, diag["n_prompts"], title), outputs, "nan")


def plot_ablation(summary_path, auc_path, outputs: dict, model: str) -> None:
    """Fig 4a: ablation curves of one model, with its AUC ratios in the title."""
    summary = read_table(summary_path, ("order", "fraction_removed", "kl_mean"))
    auc = read_table(auc_path, ("order", "ratio_to_random")).set_index("order")
    ratios = ", ".join(f"{o.replace('_first', '')}/random AUC {auc.ratio_to_random[o]:.2f}"
                       for o in ("synergistic_first", "redundant_first") if o in auc.index)
    _save(plots.ablation_curves(summary, f"{model}\n{ratios}"), outputs, "fig4a")


def plot_profiles(profile_paths: dict, outputs: dict) -> None:
    """Fig 2c: the layer profiles of every model overlaid."""
    profiles = {m: read_table(p) for m, p in profile_paths.items()}
    _save(plots.layer_profiles(profiles, "layer profile of syn_red (inverted U = synergistic core)"),
          outputs, "fig2c")


def plot_model_stats(phiid_path, categories_path, graph_fraction: float, outputs: dict,
                     model: str) -> None:
    """Graph figure (Fig 3b-c) and per-category profiles of one model."""
    arrays, prov = load_arrays(phiid_path, ("atoms", "atom_names", "layer"))
    names = list(arrays["atom_names"])
    title = _title(model, prov)
    _save(plots.graphs_figure(arrays["atoms"][names.index("sts")],
                              arrays["atoms"][names.index("rtr")], arrays["layer"],
                              graph_fraction, title), outputs, "graphs")
    _save(plots.category_profiles(read_table(categories_path), title), outputs, "categories")


def plot_progression(profile_paths: dict, score_paths: dict, revisions: dict, family: str,
                     outputs: dict) -> None:
    """Training progression of one family: profiles by checkpoint, scores against step."""
    profiles = {m: read_table(p) for m, p in profile_paths.items()}
    scores = {m: (lambda t: t[t.quantity == "syn_red"])(read_table(p, ("quantity", "score")))
              for m, p in score_paths.items()}
    _save(plots.progression_profiles(profiles, revisions, f"{family}: layer profile over training"),
          outputs, "profiles")
    _save(plots.score_vs_step(scores, revisions, "mid_minus_outer",
                              f"{family}: inverted-U score over training (95% bootstrap CI)"),
          outputs, "score")

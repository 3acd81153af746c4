"""Figure stage: every figure of the workflow, each saved as the PNG and PDF its rule declares.

``outputs`` dicts map a figure key to its PNG and ``<key>_pdf`` to its PDF, exactly the named
outputs of the rule.
"""

from __future__ import annotations

import logging

from .. import plots
from ..io import CorruptOutputError, head_layout, load_arrays, read_json, read_table

log = logging.getLogger(__name__)


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


def _layer_profile(path):
    """syn_red per layer as ``depth``, ``estimate`` and, from a ``layer_ci.tsv``, its bootstrap
    interval ``ci_low``/``ci_high``; a ``layer_profile.tsv`` (the ranking's) gives no interval."""
    table = read_table(path, ("layer", "depth"))
    if "quantity" in table.columns:
        table = table[table.quantity == "syn_red"]
        missing = [c for c in ("estimate", "ci_low", "ci_high") if c not in table.columns]
        if missing or table.empty:
            raise CorruptOutputError(f"{path}: no syn_red rows with estimate, ci_low, ci_high; "
                                     "delete it and rerun")
        return table[["layer", "depth", "estimate", "ci_low", "ci_high"]].sort_values("layer")
    if "syn_red_mean" not in table.columns:
        raise CorruptOutputError(f"{path}: missing columns ['syn_red_mean']; delete it and rerun")
    return table.rename(columns={"syn_red_mean": "estimate"})[["layer", "depth", "estimate"]]


def plot_profiles(profile_paths: dict, outputs: dict, specs: dict | None = None,
                  ci: float = 0.95) -> None:
    """Fig 2c: the layer profiles of every model, one panel per family, trained models against
    their random-init twins.

    ``profile_paths``: model -> its ``stats/layer_ci.tsv`` (bands: the bootstrap interval of
    syn_red) or ``ranking/layer_profile.tsv`` (lines only). ``specs``: model -> ``init``,
    ``family``, ``revision``, ``twin`` (see :func:`synergy_core.plots.layer_profiles`)."""
    profiles = {m: _layer_profile(p) for m, p in profile_paths.items()}
    _save(plots.layer_profiles(profiles, "layer profile of syn_red (inverted U = synergistic core)",
                               specs, ci), outputs, "fig2c")


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


def _syn_red_scores(path):
    table = read_table(path, ("quantity", "score", "estimate", "ci_low", "ci_high"))
    return table[table.quantity == "syn_red"]


def plot_progression(profile_paths: dict, score_paths: dict, revisions: dict, family: str,
                     outputs: dict, twin: str | None = None, twin_profile=None, twin_scores=None,
                     ci: float = 0.95) -> None:
    """Training progression of one family: profiles by checkpoint (Fig 3a) and the inverted-U
    score against step, each against the family's random-init ``twin`` when there is one.

    ``profile_paths``: model -> ``stats/layer_ci.tsv`` (or ``ranking/layer_profile.tsv``: no
    bands); ``score_paths``: model -> ``stats/profile_scores.tsv``; ``twin_profile`` and
    ``twin_scores``: the twin's files."""
    profiles = {m: _layer_profile(p) for m, p in profile_paths.items()}
    scores = {m: _syn_red_scores(p) for m, p in score_paths.items()}
    twin_prof = (twin, _layer_profile(twin_profile)) if twin and twin_profile else None
    twin_score = (twin, _syn_red_scores(twin_scores)) if twin and twin_scores else None
    _save(plots.progression_profiles(profiles, revisions, f"{family}: layer profile over training",
                                     twin_prof, ci), outputs, "profiles")
    _save(plots.score_vs_step(scores, revisions, "mid_minus_outer",
                              f"{family}: inverted-U score over training", twin_score, ci),
          outputs, "score")


#: Columns Fig 4b reads from each of a model's perturbation tables.
PERTURBATION_COLUMNS = {
    "accuracy": ("condition", "alpha", "accuracy", "ci_low", "ci_high"),
    "sets": ("condition", "set", "alpha", "accuracy"),
    "tests": ("comparison", "alpha", "diff", "p", "p_floor"),
}


def plot_perturbation(accuracy_paths: dict, sets_paths: dict, tests_paths: dict | None,
                      verdict_alpha: float, outputs: dict, ci: float = 0.95,
                      task: str | None = None) -> None:
    """Fig 4b: task accuracy with Gaussian noise on head sets, one row per perturbed model.

    ``accuracy_paths``, ``sets_paths``, ``tests_paths``: model -> its
    ``perturbation/accuracy.tsv``, ``sets.tsv`` and ``tests.tsv`` (``tests_paths`` may be None:
    no test line under the panel titles). ``verdict_alpha``: the alpha of the bar panel (the
    summary's); ``ci``: the level of the tables' intervals (``stats.ci``); ``task``: named in
    the title."""
    models = {}
    for m, path in accuracy_paths.items():
        tables = dict(accuracy=read_table(path, PERTURBATION_COLUMNS["accuracy"]),
                      sets=read_table(sets_paths[m], PERTURBATION_COLUMNS["sets"]))
        if tests_paths:
            tables["tests"] = read_table(tests_paths[m], PERTURBATION_COLUMNS["tests"])
        models[m] = tables
    on = f" ({task})" if task else ""
    title = (f"task accuracy{on} with Gaussian noise on the query rows and output columns of "
             "a head set (Fig 4b)")
    _save(plots.perturbation_figure(models, verdict_alpha, title, ci), outputs, "fig4b")


#: Columns Fig 5 reads from each fine-tuning table.
FINETUNE_COLUMNS = dict(accuracy=("method", "region", "seed", "step", "accuracy"),
                        runs=("method", "region", "seed", "best_accuracy", "final_accuracy"),
                        tests=("method", "selection", "comparison", "diff", "hedges_g", "p", "p_floor"))


def plot_finetune(accuracy_paths: dict, runs_paths: dict, tests_paths: dict | None, selection: str,
                  outputs: dict) -> None:
    """Fig 5: accuracy after fine-tuning only the synergistic, random or redundant region of heads,
    one row per fine-tuned model. ``*_paths``: model -> its ``finetune/accuracy.tsv``,
    ``run_accuracy.tsv`` and ``tests.tsv``; ``selection``: "best" or "final" checkpoint."""
    text = ("method", "region")
    models = {}
    for m, path in accuracy_paths.items():
        tables = dict(accuracy=read_table(path, FINETUNE_COLUMNS["accuracy"], text_columns=text),
                      runs=read_table(runs_paths[m], FINETUNE_COLUMNS["runs"]))
        if tests_paths:
            tables["tests"] = read_table(tests_paths[m], FINETUNE_COLUMNS["tests"])
        models[m] = tables
    title = (f"accuracy after fine-tuning only one region of attention heads ({selection} checkpoint "
             "per run; Fig 5)")
    _save(plots.finetune_figure(models, selection, title), outputs, "fig5")


def plot_scaling(summary_path, models: list[str], outputs: dict, ci: float = 0.95) -> None:
    """The scaling figure (``scaling.models``) from ``summary.tsv``: each verdict against the
    parameter count (:func:`synergy_core.scaling.scaling_points`, :func:`plots.scaling_figure`).
    What it leaves out is logged, a missing number as a warning, a test not run (e.g. a twin
    that is not ablated) as information, and each panel's count of points."""
    from ..scaling import PANELS, scaling_points

    summary = read_table(summary_path, ("model", "init", "n_parameters"))
    summary["model"] = summary["model"].astype(str)
    points, notes = scaling_points(summary, models)
    for where, lines in notes.items():
        for line in lines:
            (log.info if "not run" in line else log.warning)("scaling figure (%s): %s", where, line)
    for panel in PANELS:
        log.info("scaling figure (%s): %d of %d models drawn", panel,
                 int((points.panel == panel).sum()), len(models))
    title = f"the verdicts against model size: {len(models)} models of the summary table"
    _save(plots.scaling_figure(points, notes, title, ci), outputs, "scaling")


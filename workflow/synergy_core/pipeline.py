"""Stage functions behind the rule scripts: read inputs, call the pure computations, write outputs.

Each takes file paths and plain config dicts (no Snakemake objects), so every stage can be run
and tested without Snakemake. All reading and writing goes through :mod:`synergy_core.io`.
"""

from __future__ import annotations

import logging

import numpy as np

from . import phiid
from .io import CorruptOutputError, load_arrays, save_arrays, stable_hash

log = logging.getLogger(__name__)

ACTIVATION_KEYS = ("acts", "head_labels", "prompt_ids", "categories", "layer", "head")
CHUNK_KEYS = ("pairs", "atoms", "per_prompt_sts", "per_prompt_rtr", "nan_count")


def _phiid_settings(cfg: dict) -> dict:
    """The PhiID settings that change numbers (n_chunks and block size do not)."""
    return {k: cfg[k] for k in ("tau", "redundancy", "aggregation")}


def load_activations(path) -> tuple[dict, dict]:
    arrays, prov = load_arrays(path, ACTIVATION_KEYS)
    acts = arrays["acts"]
    if acts.ndim != 3 or acts.shape[1] != len(arrays["head_labels"]):
        raise CorruptOutputError(f"{path}: acts has shape {acts.shape}, inconsistent with "
                                 f"{len(arrays['head_labels'])} head labels")
    return arrays, prov


def compute_phiid_chunk(acts_path, out_path, chunk: int, cfg: dict, threads: int = 1) -> None:
    """PhiID of chunk ``chunk`` of ``cfg['n_chunks']`` for one model's activations."""
    arrays, acts_prov = load_activations(acts_path)
    acts = arrays["acts"]
    n_prompts, n_heads, n_steps = acts.shape
    pairs_all = n_heads * (n_heads - 1) // 2
    start, stop = phiid.chunk_range(pairs_all, cfg["n_chunks"], chunk)
    nonfinite = ~np.isfinite(acts)
    if nonfinite.any():
        heads = sorted({str(arrays["head_labels"][h]) for h in np.nonzero(nonfinite.any(axis=(0, 2)))[0]})
        log.warning("%d non-finite activations in heads %s: their (pair, prompt) cells are NaN",
                    int(nonfinite.sum()), heads[:20])
    log.info("chunk %d of %d: pairs [%d, %d) of %d, %d prompts x %d steps, backend %s, %s",
             chunk, cfg["n_chunks"], start, stop, pairs_all, n_prompts, n_steps, cfg["backend"],
             cfg["aggregation"])
    if cfg["backend"] == "phyid":
        result = phiid.phiid_all_pairs_phyid(acts, cfg["tau"], pair_start=start, pair_stop=stop,
                                             n_workers=threads, aggregation=cfg["aggregation"])
    else:
        result = phiid.phiid_all_pairs(acts, cfg["tau"], cfg["aggregation"], start, stop,
                                       max_block_pairs=cfg.get("block_pairs", 20000))
    n_nan = int(result.nan_count.sum())
    log.info("done: %d of %d (pair, prompt) cells degenerate (NaN)", n_nan, (stop - start) * n_prompts)
    provenance = dict(activations_hash=acts_prov.get("config_hash"), settings=_phiid_settings(cfg),
                      backend=cfg["backend"], n_chunks=cfg["n_chunks"], chunk=chunk,
                      pair_range=[start, stop], n_heads=n_heads)
    save_arrays(out_path, provenance, pairs=result.pairs, atoms=result.atoms,
                per_prompt_sts=result.per_prompt_sts, per_prompt_rtr=result.per_prompt_rtr,
                nan_count=result.nan_count, n_prompts=result.n_prompts, tau=result.tau,
                aggregation=result.aggregation)


def _load_chunk(path, expect: dict) -> phiid.PairwisePhiID:
    arrays, prov = load_arrays(path, CHUNK_KEYS)
    for key, value in expect.items():
        if prov.get(key) != value:
            raise CorruptOutputError(
                f"{path}: made for {key} = {prov.get(key)!r}, but the current run has {value!r} "
                "(a chunk from another config or older activations); delete it and rerun")
    return phiid.PairwisePhiID(
        pairs=arrays["pairs"], atoms=arrays["atoms"], per_prompt_sts=arrays["per_prompt_sts"],
        per_prompt_rtr=arrays["per_prompt_rtr"], nan_count=arrays["nan_count"],
        n_prompts=int(arrays["n_prompts"]), tau=int(arrays["tau"]),
        aggregation=str(arrays["aggregation"]))


def merge_phiid_chunks(acts_path, chunk_paths: list, out_path, cfg: dict) -> None:
    """Gather chunk files into ``[16, H, H]`` atom matrices plus per-pair, per-prompt arrays."""
    arrays, acts_prov = load_activations(acts_path)
    n_heads = len(arrays["head_labels"])
    expect = dict(activations_hash=acts_prov.get("config_hash"), settings=_phiid_settings(cfg),
                  n_chunks=len(chunk_paths))
    merged = phiid.merge_chunks([_load_chunk(p, expect) for p in chunk_paths], n_heads)
    matrices = phiid.atom_matrices(merged.atoms, merged.pairs, n_heads)
    nan_matrix = phiid.pair_matrix(merged.nan_count.astype(float), merged.pairs, n_heads)
    per_head_nan = np.nansum(nan_matrix, axis=1).astype(np.int64)
    n_cells = len(merged.pairs) * merged.n_prompts
    log.info("merged %d chunks: %d pairs x %d prompts; %d degenerate cells (%.3g%%)",
             len(chunk_paths), len(merged.pairs), merged.n_prompts, int(merged.nan_count.sum()),
             100 * merged.nan_count.sum() / max(n_cells, 1))
    for h in np.nonzero(per_head_nan)[0]:
        log.info("  head %s: %d NaN (pair, prompt) cells", arrays["head_labels"][h], per_head_nan[h])
    provenance = dict(activations_hash=acts_prov.get("config_hash"), settings=_phiid_settings(cfg),
                      backend=cfg["backend"], model=acts_prov.get("model"),
                      shape=acts_prov.get("shape"), phiid_hash=stable_hash(
                          [acts_prov.get("config_hash"), _phiid_settings(cfg)]))
    save_arrays(out_path, provenance, atoms=matrices, atom_names=np.array(phiid.ATOM_NAMES),
                pairs=merged.pairs, per_prompt_sts=merged.per_prompt_sts,
                per_prompt_rtr=merged.per_prompt_rtr, nan_count=merged.nan_count,
                nan_count_matrix=nan_matrix, per_head_nan=per_head_nan,
                head_labels=arrays["head_labels"], prompt_ids=arrays["prompt_ids"],
                categories=arrays["categories"], layer=arrays["layer"], head=arrays["head"])


def rank_model(phiid_path, heads_out, profile_out, diagnostics_out) -> None:
    """Per-head ranking table, layer profile and synergy-redundancy diagnostics of one model."""
    from .io import write_json, write_table
    from .ranking import layer_profile, rank_heads, synergy_redundancy_correlation

    arrays, prov = load_arrays(phiid_path, ("atoms", "atom_names", "head_labels", "layer", "head"))
    names = list(arrays["atom_names"])
    n_layers, n_heads = int(arrays["layer"].max()) + 1, int(arrays["head"].max()) + 1
    table = rank_heads(arrays["atoms"][names.index("sts")], arrays["atoms"][names.index("rtr")],
                       n_layers, n_heads, list(arrays["head_labels"]))
    table["nan_cells"] = arrays["per_head_nan"]
    corr = synergy_redundancy_correlation(table)
    n_nan = int(table.syn_red.isna().sum())
    if n_nan:
        log.warning("%d heads have no valid synergy/redundancy and are left unranked", n_nan)
    log.info("synergy vs redundancy across heads: Spearman %.3f, Pearson %.3f",
             corr["spearman"], corr["pearson"])
    write_table(heads_out, table)
    write_table(profile_out, layer_profile(table))
    write_json(diagnostics_out, dict(
        corr, unranked_heads=n_nan, n_layers=n_layers, n_heads_per_layer=n_heads,
        nan_cells=int(arrays["nan_count"].sum()), n_pairs=len(arrays["pairs"]),
        n_prompts=int(arrays["per_prompt_sts"].shape[1]), model=prov.get("model")))


def run_ablation(acts_path, heads_path, long_out, summary_out, auc_out, spec: dict, cfg: dict,
                 device: str = "auto") -> None:
    """Iterative ablation in synergistic-first, redundant-first and random orders (one model)."""
    import pandas as pd

    from .ablation import (ablation_orders, auc_table, kl_for_masks, masks_for_orders,
                           removal_counts, summarise_curves)
    from .extract import resolve_device, unpad_ragged
    from .hooks import head_hooks, model_shape
    from .io import write_table
    from .models import load_model, load_tokenizer

    arrays, _ = load_arrays(acts_path, ("tokens", "prompt_tokens", "prompt_ids"))
    table = pd.read_csv(heads_path, sep="\t")
    device = resolve_device(device)
    model = load_model(spec, device=device)
    tokenizer = load_tokenizer(spec)
    shape = model_shape(model)
    if shape.n_total_heads != len(table):
        raise CorruptOutputError(f"{heads_path}: {len(table)} heads, but the model has "
                                 f"{shape.n_total_heads}; delete it and rerun")
    counts = removal_counts(shape.n_total_heads, cfg["max_fraction"], cfg["step"])
    orders = ablation_orders(table.syn_red.to_numpy(), cfg["n_random_orders"], cfg["seed"])
    masks, index = masks_for_orders(orders, counts, shape.n_layers, shape.n_heads)
    prompts = unpad_ragged(arrays["prompt_tokens"])
    log.info("ablation of %s: %d heads, %d orders x %d removal counts = %d distinct masks, "
             "%d prompts, on %s", spec.get("name"), shape.n_total_heads, len(orders), len(counts),
             len(masks), len(prompts), device)
    with head_hooks(model, shape) as hooks:
        kl = kl_for_masks(model, hooks, prompts, arrays["tokens"], masks, tokenizer.pad_token_id,
                          cfg["prompt_batch"], cfg["mask_group"], device)
    rows = []
    for o, (name, seed, _) in enumerate(orders):
        for c, k in enumerate(counts):
            for p, pid in enumerate(arrays["prompt_ids"]):
                rows.append((name, seed, int(k), k / shape.n_total_heads, str(pid),
                             kl[index[o, c], p]))
    long = pd.DataFrame(rows, columns=["order", "seed", "n_removed", "fraction_removed",
                                       "prompt", "kl"])
    write_table(long_out, long)
    summary = summarise_curves(long)
    write_table(summary_out, summary)
    auc = auc_table(long)
    write_table(auc_out, auc)
    log.info("AUC ratios: %s", auc.to_dict("records"))


def _title(model: str, prov: dict | None) -> str:
    m = (prov or {}).get("model") or {}
    bits = [model, m.get("hf_id", "")]
    if m.get("revision"):
        bits.append(m["revision"])
    if m.get("init") == "random":
        bits.append(f"random init, seed {m.get('seed')}")
    return " | ".join(b for b in bits if b)


def plot_model(phiid_path, heads_path, diagnostics_path, outputs: dict, model: str) -> None:
    """Fig 2a (pairwise sts/rtr), Fig 2b (syn_red per head), scatter and NaN diagnostics."""
    import json

    import pandas as pd

    from . import plots

    arrays, prov = load_arrays(phiid_path, ("atoms", "atom_names"))
    names = list(arrays["atom_names"])
    table = pd.read_csv(heads_path, sep="\t")
    with open(diagnostics_path) as fh:
        diag = json.load(fh)
    title = _title(model, prov)
    n_layers, n_heads = diag["n_layers"], diag["n_heads_per_layer"]
    figs = {
        "fig2a": plots.pairwise_heatmaps(arrays["atoms"][names.index("sts")],
                                         arrays["atoms"][names.index("rtr")], n_layers, n_heads,
                                         title),
        "fig2b": plots.syn_red_heatmap(table, title),
        "scatter": plots.synergy_vs_redundancy(table, diag, title),
        "nan": plots.nan_counts(table, diag["n_prompts"], title),
    }
    for key, fig in figs.items():  # each PNG has its PDF beside it
        png = str(outputs[key])
        plots.save(fig, png, png[: -len(".png")] + ".pdf")


def plot_ablation(summary_path, auc_path, png, pdf, model: str) -> None:
    import pandas as pd

    from . import plots

    summary = pd.read_csv(summary_path, sep="\t")
    auc = pd.read_csv(auc_path, sep="\t").set_index("order")
    ratios = ", ".join(f"{o.replace('_first', '')}/random AUC {auc.ratio_to_random[o]:.2f}"
                       for o in ("synergistic_first", "redundant_first") if o in auc.index)
    plots.save(plots.ablation_curves(summary, f"{model}\n{ratios}"), png, pdf)


def plot_profiles(profile_paths: dict, png, pdf) -> None:
    import pandas as pd

    from . import plots

    profiles = {m: pd.read_csv(p, sep="\t") for m, p in profile_paths.items()}
    plots.save(plots.layer_profiles(profiles, "layer profile of syn_red (inverted U = synergistic core)"),
               png, pdf)


STATS_KEYS = ("per_prompt_sts", "per_prompt_rtr", "pairs", "layer", "categories", "atoms",
              "atom_names")


def model_statistics(phiid_path, acts_path, outputs: dict, cfg: dict, tau: int) -> None:
    """Bootstrap CIs of the inverted-U scores, split-half reliability, surrogate null, per-category
    profiles and graph metrics of one model, all from the per-prompt PhiID arrays.

    ``outputs`` names ``scores``, ``layers``, ``categories``, ``graphs`` (TSV) and ``json``.
    """
    from .graphs import bootstrap_graph_metrics
    from .io import write_json, write_table
    from .stats import bootstrap_profile, category_profiles, split_half_reliability, surrogate_null

    arrays, prov = load_arrays(phiid_path, STATS_KEYS)
    sts, rtr, pairs = arrays["per_prompt_sts"], arrays["per_prompt_rtr"], arrays["pairs"]
    layer = arrays["layer"]
    n_layers, n_heads = int(layer.max()) + 1, len(layer)
    seed, ci = cfg["seed"], cfg["ci"]
    boot = bootstrap_profile(sts, rtr, pairs, layer, n_layers, cfg["n_boot"], seed, ci)
    log.info("inverted-U scores:\n%s", boot["scores"].to_string(index=False))
    split = split_half_reliability(sts, rtr, pairs, n_heads, cfg["n_splits"], seed)
    log.info("split-half reliability of syn_red: %.3f (sd %.3f)", split["mean"], split["sd"])
    surrogate = {"p_value": {"mid_minus_outer": np.nan, "quad_coef": np.nan}, "n_surrogates": 0}
    if cfg["n_surrogates"]:
        acts = load_activations(acts_path)[0]["acts"]
        surrogate = surrogate_null(acts, layer, n_layers, tau, cfg["n_surrogates"], seed)
        log.info("surrogate p-values (%d circular shifts): %s", cfg["n_surrogates"],
                 surrogate["p_value"])
    graphs = []
    for name, per_prompt in (("synergy", sts), ("redundancy", rtr)):
        g = bootstrap_graph_metrics(per_prompt, pairs, n_heads, cfg["graph_fraction"],
                                    cfg["n_boot_graph"], seed, ci)["summary"]
        graphs.append(g.assign(network=name))
    import pandas as pd

    graphs = pd.concat(graphs, ignore_index=True)
    write_table(outputs["scores"], boot["scores"])
    write_table(outputs["layers"], boot["layers"])
    write_table(outputs["categories"],
                category_profiles(sts, rtr, pairs, arrays["categories"], layer, n_layers))
    write_table(outputs["graphs"], graphs)
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
    import pandas as pd

    from .io import write_json, write_table
    from .stats import ablation_auc_stats

    res = ablation_auc_stats(pd.read_csv(long_path, sep="\t"), cfg["n_boot"], cfg["seed"], cfg["ci"])
    write_table(out_tsv, res["summary"])
    write_json(out_json, dict(frac_random_beaten=res["frac_random_beaten"],
                              n_random=res["n_random"], n_prompts=res["n_prompts"],
                              n_boot=res["n_boot"], ci=res["ci"]))


def _ci_text(row) -> str:
    return f"{row.estimate:.3g} [{row.ci_low:.3g}, {row.ci_high:.3g}]"


def build_summary(models: dict, out_path) -> None:
    """One row per model (the verdict table). ``models`` maps a model name to a dict with its
    ``spec`` and the paths ``diagnostics``, ``scores``, ``stats``, ``graphs`` and optionally
    ``ablation`` and ``ablation_json``."""
    import json

    import pandas as pd

    from .io import write_table

    rows = []
    for name, m in models.items():
        spec = m["spec"]
        diag = json.loads(open(m["diagnostics"]).read())
        stats = json.loads(open(m["stats"]).read())
        scores = pd.read_csv(m["scores"], sep="\t").set_index("score")
        graphs = pd.read_csv(m["graphs"], sep="\t")
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
            abl = pd.read_csv(m["ablation"], sep="\t").set_index("quantity")
            for q in ("ratio_synergistic_random", "ratio_redundant_random"):
                row[q] = _ci_text(abl.loc[q])
            row["frac_random_beaten"] = json.loads(open(m["ablation_json"]).read())["frac_random_beaten"]
        rows.append(row)
    write_table(out_path, pd.DataFrame(rows))


def plot_model_stats(phiid_path, categories_path, graph_fraction: float, png: dict, model: str) -> None:
    """Graph figure (Fig 3b-c) and per-category profiles of one model."""
    import pandas as pd

    from . import plots

    arrays, prov = load_arrays(phiid_path, ("atoms", "atom_names", "layer"))
    names = list(arrays["atom_names"])
    title = _title(model, prov)
    fig = plots.graphs_figure(arrays["atoms"][names.index("sts")],
                              arrays["atoms"][names.index("rtr")], arrays["layer"],
                              graph_fraction, title)
    plots.save(fig, png["graphs"], str(png["graphs"])[:-4] + ".pdf")
    fig = plots.category_profiles(pd.read_csv(categories_path, sep="\t"), title)
    plots.save(fig, png["categories"], str(png["categories"])[:-4] + ".pdf")


def plot_progression(profile_paths: dict, score_paths: dict, revisions: dict, family: str,
                     png: dict) -> None:
    """Training progression of one family: profiles by checkpoint, scores against step."""
    import pandas as pd

    from . import plots

    profiles = {m: pd.read_csv(p, sep="\t") for m, p in profile_paths.items()}
    scores = {m: pd.read_csv(p, sep="\t") for m, p in score_paths.items()}
    fig = plots.progression_profiles(profiles, revisions, f"{family}: layer profile over training")
    plots.save(fig, png["profiles"], str(png["profiles"])[:-4] + ".pdf")
    fig = plots.score_vs_step(scores, revisions, "mid_minus_outer",
                              f"{family}: inverted-U score over training (95% bootstrap CI)")
    plots.save(fig, png["score"], str(png["score"])[:-4] + ".pdf")

"""Stage functions on files: sharding invariance, backend invariance, integrity checks."""
import numpy as np
import pytest

from synergy_core.io import CorruptOutputError, load_arrays, save_arrays, write_table
from synergy_core.phiid.all_pairs import phiid_all_pairs
from synergy_core.phiid.chunks import merge_chunks
from synergy_core.phiid.kernel import phiid_pair
from synergy_core.stages.phiid import compute_phiid_chunk, merge_phiid_chunks

CFG = dict(tau=1, redundancy="MMI", aggregation="per_prompt", backend="closed_form", n_chunks=1,
           block_pairs=7)


def _fake_activations(path, n_prompts=3, n_heads=7, n_steps=30, seed=0, dead_head=None):
    rng = np.random.default_rng(seed)
    acts = np.exp(0.3 * rng.standard_normal((n_prompts, n_heads, n_steps)).cumsum(-1))
    if dead_head is not None:
        acts[:, dead_head] = 1.0
    labels = [f"L{h // 2}H{h % 2}" for h in range(n_heads)]
    save_arrays(path, {"config_hash": f"acts-{seed}"}, acts=acts.astype(np.float32),
                head_labels=np.array(labels), prompt_ids=np.array([f"p{i}" for i in range(n_prompts)]),
                categories=np.array(["c"] * n_prompts), layer=np.arange(n_heads) // 2,
                head=np.arange(n_heads) % 2)
    return acts


def _run(tmp_path, n_chunks, backend="closed_form", tag="", **kw):
    acts_path = tmp_path / "acts.npz"
    if not acts_path.exists():
        _fake_activations(acts_path, **kw)
    cfg = dict(CFG, n_chunks=n_chunks, backend=backend)
    chunks = [tmp_path / f"c{tag}{n_chunks}_{k}.npz" for k in range(n_chunks)]
    for k, c in enumerate(chunks):
        compute_phiid_chunk(acts_path, c, k, cfg, block_pairs=cfg["block_pairs"])
    out = tmp_path / f"merged{tag}{n_chunks}.npz"
    merge_phiid_chunks(acts_path, chunks, out, cfg)
    return load_arrays(out)[0], chunks, cfg


def test_merged_numbers_do_not_depend_on_n_chunks(tmp_path):
    one, _, _ = _run(tmp_path, 1)
    for n in (2, 5, 21):
        many, _, _ = _run(tmp_path, n)
        for key in ("atoms", "per_prompt_sts", "per_prompt_rtr", "nan_count", "pairs"):
            np.testing.assert_array_equal(one[key], many[key], err_msg=f"{key}, n_chunks={n}")


@pytest.mark.parametrize("aggregation", ["per_prompt", "pooled"])
def test_merged_numbers_bitwise_equal_at_demo_size(tmp_path, aggregation):
    """The demo's largest model has 24 heads (276 pairs), 12 prompts, 40 steps. Any n_chunks and
    any block_pairs give the same bytes: every chunk slices one full correlation product."""
    acts_path = tmp_path / "acts.npz"
    _fake_activations(acts_path, n_prompts=12, n_heads=24, n_steps=40, seed=3)
    merged = {}
    for n_chunks, block in ((1, 8192), (3, 8192), (7, 50), (276, 1), (2, 13)):
        cfg = dict(CFG, n_chunks=n_chunks, aggregation=aggregation)
        chunks = [tmp_path / f"c{n_chunks}_{k}.npz" for k in range(n_chunks)]
        for k, c in enumerate(chunks):
            compute_phiid_chunk(acts_path, c, k, cfg, block_pairs=block)
        merge_phiid_chunks(acts_path, chunks, tmp_path / "phiid.npz", cfg)
        merged[n_chunks] = (tmp_path / "phiid.npz").read_bytes()
    assert len(set(merged.values())) == 1  # the whole file, provenance and record included


def test_merged_matrices_match_single_pair_phiid(tmp_path):
    merged, _, _ = _run(tmp_path, 3)
    acts = load_arrays(tmp_path / "acts.npz")[0]["acts"].astype(np.float64)
    names = list(merged["atom_names"])
    for i, j in [(0, 1), (2, 6), (5, 3)]:
        per_prompt = [phiid_pair(acts[p, i], acts[p, j]) for p in range(acts.shape[0])]
        for name in ("sts", "rtr", "rtx", "xty", "stx"):
            want = np.mean([d[name] for d in per_prompt])
            np.testing.assert_allclose(merged["atoms"][names.index(name), i, j], want, atol=1e-12)
    sts = merged["atoms"][names.index("sts")]
    np.testing.assert_allclose(sts, sts.T, equal_nan=True)
    assert np.all(np.isnan(np.diag(sts)))


def test_phyid_backend_gives_the_same_merged_numbers(tmp_path):
    pytest.importorskip("phyid", reason="phyid (the reference library) is not installed")
    ours, _, _ = _run(tmp_path, 2)
    ref, _, _ = _run(tmp_path, 3, backend="phyid", tag="ref")
    np.testing.assert_allclose(ours["atoms"], ref["atoms"], atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(ours["nan_count"], ref["nan_count"])


def test_chunk_from_other_settings_is_detected(tmp_path):
    _, chunks, cfg = _run(tmp_path, 2)
    with pytest.raises(CorruptOutputError, match="made for settings"):
        merge_phiid_chunks(tmp_path / "acts.npz", chunks, tmp_path / "m.npz", dict(cfg, tau=2))


def test_readers_refuse_a_merged_file_of_other_activations(tmp_path):
    from synergy_core.stages.rank import rank_model

    _run(tmp_path, 2, n_heads=8)
    merged = tmp_path / "merged2.npz"
    outs = (tmp_path / "h.tsv", tmp_path / "p.tsv", tmp_path / "d.json")
    rank_model(merged, tmp_path / "acts.npz", *outs)  # its own activations: accepted
    _fake_activations(tmp_path / "other.npz", seed=1, n_heads=8)   # another model's
    with pytest.raises(CorruptOutputError, match=r"merged2.npz: not made from .*other.npz"):
        rank_model(merged, tmp_path / "other.npz", *outs)


def test_missing_or_duplicated_pairs_are_detected(tmp_path):
    _, chunks, cfg = _run(tmp_path, 3)
    with pytest.raises(CorruptOutputError, match="n_chunks"):
        merge_phiid_chunks(tmp_path / "acts.npz", chunks[:2], tmp_path / "m.npz", cfg)
    parts = [phiid_all_pairs(np.random.default_rng(0).random((2, 5, 20)), pair_start=a, pair_stop=b)
             for a, b in [(0, 4), (3, 10)]]
    with pytest.raises(ValueError, match="exactly once: 0 missing, 1 duplicated"):
        merge_chunks(parts, 5)


def test_ranking_and_figures_from_merged_phiid(tmp_path):
    import json

    import pandas as pd

    from synergy_core.stages.plots import plot_ablation, plot_model, plot_profiles
    from synergy_core.stages.rank import rank_model

    _run(tmp_path, 2, dead_head=5, n_heads=8)
    merged = tmp_path / "merged2.npz"
    out = {k: tmp_path / f"{k}.tsv" for k in ("heads", "profile")}
    rank_model(merged, tmp_path / "acts.npz", out["heads"], out["profile"], tmp_path / "diag.json")
    table = pd.read_csv(out["heads"], sep="\t")
    assert list(table.head_label) == [f"L{h // 2}H{h % 2}" for h in range(8)]
    assert np.isnan(table.syn_red[5]) and table.nan_cells[5] == 21   # dead head: unranked
    assert table.syn_red.min() == 0 and table.syn_red.max() == 1
    diag = json.loads((tmp_path / "diag.json").read_text())
    assert diag["unranked_heads"] == 1 and diag["n_prompts"] == 3
    figs = {k: str(tmp_path / f"{k}.png") for k in ("fig2a", "fig2b", "scatter", "nan")}
    plot_model(merged, out["heads"], tmp_path / "diag.json",
               dict(figs, **{f"{k}_pdf": v[:-4] + ".pdf" for k, v in figs.items()}), "fake")
    plot_profiles({"a": out["profile"], "b": out["profile"]},
                  {"fig2c": tmp_path / "p.png", "fig2c_pdf": tmp_path / "p.pdf"})
    summary = pd.DataFrame({"order": ["synergistic_first"] * 3 + ["random"] * 3,
                            "fraction_removed": [0, 0.5, 1] * 2, "kl_mean": [0, 1, 2, 0, 0.5, 2],
                            "kl_std": [0.1] * 6})
    write_table(tmp_path / "s.tsv", summary)
    write_table(tmp_path / "a.tsv", pd.DataFrame({"order": ["synergistic_first", "random"],
                                                  "ratio_to_random": [1.5, 1.0]}))
    plot_ablation(tmp_path / "s.tsv", tmp_path / "a.tsv",
                  {"fig4a": tmp_path / "f4.png", "fig4a_pdf": tmp_path / "f4.pdf"}, "m")
    for path in list(figs.values()) + [tmp_path / "p.png", tmp_path / "f4.png"]:
        png = open(path, "rb").read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert (tmp_path / (str(path).rsplit("/", 1)[1][:-4] + ".pdf")).stat().st_size > 5_000


def test_statistics_and_verdict_table(tmp_path):
    import json

    import pandas as pd

    from synergy_core.stages.rank import rank_model
    from synergy_core.stages.stats import model_statistics
    from synergy_core.stages.summary import build_summary

    _run(tmp_path, 2, n_heads=8, n_prompts=6)
    merged = tmp_path / "merged2.npz"
    rank_model(merged, tmp_path / "acts.npz", tmp_path / "h.tsv", tmp_path / "p.tsv", tmp_path / "d.json")
    out = {k: tmp_path / f"{k}.tsv" for k in ("scores", "layers", "categories", "graphs")}
    out["json"] = tmp_path / "stats.json"
    cfg = dict(n_boot=50, ci=0.9, n_splits=5, n_surrogates=3, graph_fraction=0.25, n_boot_graph=4,
               n_null_graph=5, n_layer_perm=99, surrogate_trim=0.25, seed=0)
    model_statistics(merged, tmp_path / "acts.npz", out, cfg, tau=1)
    all_scores = pd.read_csv(out["scores"], sep="\t")
    assert set(all_scores.quantity) == {"syn_red", "synergy", "redundancy"}
    scores = all_scores[all_scores.quantity == "syn_red"].set_index("score")
    assert set(scores.index) == {"mid_minus_outer", "quad_coef"}
    assert (scores.ci_low <= scores.ci_high).all()
    assert ((all_scores.p_layer_perm > 0) & (all_scores.p_layer_perm <= 1)).all()
    stats = json.loads(out["json"].read_text())
    assert 0 < stats["surrogate"]["p_value"]["mid_minus_outer"] <= 1
    assert stats["surrogate"]["n_surrogates"] == 3
    graphs = pd.read_csv(out["graphs"], sep="\t")
    assert set(graphs.network) == {"synergy", "redundancy", "synergy_minus_redundancy"}
    assert set(graphs.variant) == {"thresholded", "weighted"}
    build_summary({"m": {"spec": {"hf_id": "x/y", "init": "pretrained"},
                         "diagnostics": tmp_path / "d.json", "scores": out["scores"],
                         "stats": out["json"], "graphs": out["graphs"]}}, tmp_path / "summary.tsv")
    row = pd.read_csv(tmp_path / "summary.tsv", sep="\t").iloc[0]
    assert row.model == "m" and row.heads == 8 and row.prompts == 6
    assert row.mid_minus_outer == pytest.approx(scores.estimate["mid_minus_outer"])
    assert row.mid_minus_outer_ci_low == pytest.approx(scores.ci_low["mid_minus_outer"])
    eff = graphs[(graphs.variant == "weighted") & (graphs.network == "synergy_minus_redundancy")
                 & (graphs.metric == "global_efficiency")].iloc[0]
    assert row.graph_weighted_synergy_minus_redundancy_global_efficiency_p == pytest.approx(eff.p)
    assert "graph_weighted_synergy_minus_redundancy_global_efficiency_ci_low" not in row.index
    assert row.verdict_inverted_u in ("supported", "not supported", "inconclusive")
    assert row.split_half_reliability == pytest.approx(stats["split_half"]["reliability"])
    # numbers, not strings: every interval and p-value column parses as a float
    numeric = [c for c in row.index if c.endswith(("_ci_low", "_ci_high", "_p", "_p_layer_perm",
                                                   "_p_surrogate", "_p_null"))]
    assert len(numeric) > 20 and all(pd.api.types.is_number(row[c]) for c in numeric)


def test_paired_comparison_of_two_models(tmp_path):
    """Two models over the same prompts: a table of differences with permutation p-values; a
    model with other prompts is refused, naming both files."""
    import pandas as pd

    from synergy_core.stages.compare import compare_models

    merged = {}
    for name, seed in (("a", 0), ("b", 1)):
        d = tmp_path / name
        d.mkdir()
        _fake_activations(d / "acts.npz", n_prompts=6, n_heads=8, seed=seed)
        chunks = [d / "c0.npz"]
        compute_phiid_chunk(d / "acts.npz", chunks[0], 0, CFG)
        merge_phiid_chunks(d / "acts.npz", chunks, d / "m.npz", CFG)
        merged[name] = d / "m.npz"
    cfg = dict(n_permutations=99, seed=0, ci=0.95)
    compare_models(merged["a"], merged["b"], tmp_path / "ab.tsv", cfg)
    table = pd.read_csv(tmp_path / "ab.tsv", sep="\t").set_index("score")
    assert set(table.index) == {"mid_minus_outer", "quad_coef"}
    for r in table.itertuples():
        assert r.difference == pytest.approx(r.estimate_a - r.estimate_b)
        assert r.ci_low <= r.difference <= r.ci_high and 0.01 <= r.p <= 1 and r.n_prompts == 6
    compare_models(merged["a"], merged["a"], tmp_path / "aa.tsv", cfg)   # a model against itself
    same = pd.read_csv(tmp_path / "aa.tsv", sep="\t")
    assert (same.difference == 0).all() and (same.p == 1).all()
    d = tmp_path / "c"
    d.mkdir()
    _fake_activations(d / "acts.npz", n_prompts=5, n_heads=8, seed=2)
    compute_phiid_chunk(d / "acts.npz", d / "c0.npz", 0, CFG)
    merge_phiid_chunks(d / "acts.npz", [d / "c0.npz"], d / "m.npz", CFG)
    with pytest.raises(CorruptOutputError, match="differ in prompt_ids"):
        compare_models(merged["a"], d / "m.npz", tmp_path / "ac.tsv", cfg)

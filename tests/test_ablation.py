"""Ablation: KL at zero removed heads is exactly 0; batched masks equal separate passes; a fully
ablated layer leaves only the output bias; ordering logic; grids (coarse random grid inside the
ranked grid, its AUC close to the full grid's, the paper configuration's mask count); the
cross-validated plan (each half of the prompts ordered by the other half's ranking)."""
import numpy as np
import pandas as pd
import pytest
import torch

from synergy_core.ablation import (
    ablation_grids,
    ablation_orders,
    grid_counts,
    kl_for_masks,
    masks_for_orders,
    removal_counts,
)
from synergy_core.ablation_curves import auc_table, curve_auc, summarise_curves, trapezoid_weights
from synergy_core.extract import eos_ids, generate_with_norms, tokenize_prompts
from synergy_core.hooks import head_hooks, model_shape, output_projections

TEXTS = ["Correct the error: He go to school every day.", "What is 7 + 5?", "Hi there"]


@pytest.fixture(scope="module")
def generated(tiny_neox):
    model, tok = tiny_neox
    ids = tokenize_prompts(tok, TEXTS, ["a", "b", "c"], False, 1024, 8)
    with head_hooks(model) as hooks:
        gen = generate_with_norms(model, hooks, ids, 8, eos_ids(model, tok), tok.pad_token_id)
    return model, tok, ids, gen.tokens


def _masks(shape, rng, n):
    masks = (rng.random((n, shape.n_layers, shape.n_heads)) > 0.4).astype(np.float32)
    masks[0] = 1
    return masks


def test_zero_heads_removed_gives_exactly_zero_and_batching_is_exact_enough(generated):
    model, tok, ids, tokens = generated
    shape = model_shape(model)
    masks = _masks(shape, np.random.default_rng(0), 11)
    with head_hooks(model, shape) as hooks:
        batched = kl_for_masks(model, hooks, ids, tokens, masks, tok.pad_token_id,
                               prompt_batch=2, mask_group=4)
        single = np.concatenate([
            kl_for_masks(model, hooks, ids, tokens, masks[[0, m]], tok.pad_token_id,
                         prompt_batch=1, mask_group=1)[1:] for m in range(1, len(masks))])
    assert np.all(batched[0] == 0.0)
    assert np.all(batched[1:] > 0)
    # Other rows of a batch only change float32 rounding inside the matmuls.
    np.testing.assert_allclose(batched[1:], single, rtol=1e-4, atol=1e-7)


def test_kl_matches_a_direct_computation(generated):
    model, tok, ids, tokens = generated
    shape = model_shape(model)
    mask = np.ones((2, shape.n_layers, shape.n_heads), dtype=np.float32)
    mask[1, 1, :2] = 0
    with head_hooks(model, shape) as hooks:
        kl = kl_for_masks(model, hooks, ids[:1], tokens[:1], mask, tok.pad_token_id)
        seq = torch.tensor([ids[0] + tokens[0, :-1].tolist()])
        with torch.no_grad():
            ref = torch.log_softmax(model(seq).logits[0, -8:].double(), -1)
            hooks.mask = torch.tensor(mask[1:])
            abl = torch.log_softmax(model(seq).logits[0, -8:].double(), -1)
            hooks.mask = None
    want = (ref.exp() * (ref - abl)).sum(-1).mean().item()
    # float32 log-softmax (the implementation) vs float64 here: ~3e-7 rounding per log-prob.
    assert kl[1, 0] == pytest.approx(want, abs=2e-7)


def test_ablating_a_whole_layer_leaves_only_the_output_bias(generated):
    model, _, ids, _ = generated
    shape = model_shape(model)
    seq = torch.tensor([ids[0]])
    mask = torch.ones(1, shape.n_layers, shape.n_heads)
    mask[0, 3] = 0
    proj = output_projections(model)[3]
    with head_hooks(model, shape) as hooks, torch.no_grad():
        hooks.mask = mask
        ablated = model(seq).logits
    saved = proj.weight.detach().clone()
    try:
        with torch.no_grad():
            proj.weight.zero_()  # the projection then outputs its bias alone
            bias_only = model(seq).logits
    finally:
        with torch.no_grad():
            proj.weight.copy_(saved)
    torch.testing.assert_close(ablated, bias_only, rtol=0, atol=1e-6)


def test_orders():
    syn_red = np.array([0.2, 1.0, np.nan, 0.0, 0.2])
    orders = ablation_orders(syn_red, n_random=3, seed=7)
    names = [o[0] for o in orders]
    assert names == ["synergistic_first", "redundant_first", "random", "random", "random"]
    np.testing.assert_array_equal(orders[0][2], [1, 0, 4, 3, 2])   # ties by index, NaN last
    np.testing.assert_array_equal(orders[1][2], [3, 0, 4, 1, 2])
    assert [o[1] for o in orders[2:]] == [7, 8, 9]
    for _, _, order in orders:
        assert sorted(order) == list(range(5))
    again = ablation_orders(syn_red, n_random=3, seed=7)
    np.testing.assert_array_equal(orders[3][2], again[3][2])
    # streams: other permutations with the same seed labels, ranked orders unchanged
    streams = [ablation_orders(np.arange(50.0), 3, 7, stream) for stream in (None, 0, 1)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert [o[1] for o in streams[a]] == [o[1] for o in streams[b]]
        np.testing.assert_array_equal(streams[a][0][2], streams[b][0][2])
        assert not np.array_equal(streams[a][2][2], streams[b][2][2])


def test_removal_counts_and_masks():
    np.testing.assert_array_equal(removal_counts(10), np.arange(11))
    np.testing.assert_array_equal(removal_counts(10, step=4), [0, 4, 8, 10])
    np.testing.assert_array_equal(removal_counts(10, max_fraction=0.5, step=2), [0, 2, 4, 5])
    orders = [("a", -1, np.array([2, 0, 1, 3])), ("b", -1, np.array([0, 2, 1, 3]))]
    masks, index = masks_for_orders(orders, np.array([0, 1, 2, 4]), 2, 2)
    assert np.all(masks[0] == 1)
    assert index[0, 0] == index[1, 0] == 0       # shared all-heads mask
    assert index[0, 2] == index[1, 2]            # {0, 2} removed either way
    assert index[0, 3] == index[1, 3]            # all removed
    np.testing.assert_array_equal(masks[index[0, 1]].ravel(), [1, 1, 0, 1])
    assert len(masks) == 5
    # one count array per order: the same masks, a list of index rows
    masks2, index2 = masks_for_orders(orders, [np.array([0, 1, 2, 4]), np.array([0, 4])], 2, 2)
    np.testing.assert_array_equal(index2[0], index[0])
    np.testing.assert_array_equal(index2[1], [0, index[0, 3]])
    assert len(masks2) == 4


def test_grids():
    np.testing.assert_array_equal(grid_counts(128, 0.4, 11), [0, 5, 10, 15, 20, 26, 31, 36, 41, 46, 51])
    np.testing.assert_array_equal(grid_counts(24, 0.4, 6), [0, 2, 4, 5, 7, 9])
    np.testing.assert_array_equal(grid_counts(12, 0.4, 6), [0, 1, 2, 3, 4])   # more points than counts
    np.testing.assert_array_equal(grid_counts(10, 1.0, None), np.arange(11))
    with pytest.raises(ValueError, match="at least 2"):
        grid_counts(10, 1.0, 1)
    full, coarse = ablation_grids(30, 1.0, step=4, random_grid=4)
    np.testing.assert_array_equal(coarse, [0, 10, 20, 30])
    np.testing.assert_array_equal(full, [0, 4, 8, 10, 12, 16, 20, 24, 28, 30])   # contains coarse
    full, coarse = ablation_grids(30, 0.5, step=2, random_grid=None)
    np.testing.assert_array_equal(full, coarse)


def test_paper_configuration_needs_under_twice_the_old_masks():
    """Pythia-1B: 16 layers x 8 heads. Before: 2 ranked + 5 random orders, every count to 128
    heads = 891 distinct masks. Now (schema defaults): max_fraction 0.4, ranked orders at every
    count, 99 random orders on 11 counts."""
    rng = np.random.default_rng(0)
    old = masks_for_orders(ablation_orders(rng.random(128), 5), removal_counts(128), 16, 8)[0]
    assert len(old) == 891
    full, coarse = ablation_grids(128, 0.4, 1, 11)
    orders = ablation_orders(rng.random(128), 99)
    masks, _ = masks_for_orders(orders, [coarse if o[0] == "random" else full for o in orders], 16, 8)
    assert len(masks) == 1 + 2 * 51 + 99 * 10 == 1093 < 2 * 891


@pytest.mark.parametrize("n_heads,grid", [(24, 6), (128, 11)])
def test_coarse_grid_auc_is_close_to_the_full_grid_auc(n_heads, grid):
    """Random-order curves of the calibration model (heterogeneous head importances, prompt
    noise) at the demo (tiny-neox: 24 heads, 6 points) and paper (128 heads, 11 points) sizes:
    the trapezoid AUC on the coarse grid is within a few percent of the full-grid AUC, without
    bias, and orders the random orders nearly alike. (Single heavy heads make these curves
    steppy; the test itself compares every AUC on the same grid, so this is about what the
    AUC means, not about calibration.)"""
    from calib_ablation import simulate_long

    long = simulate_long(np.random.default_rng(1), n_heads=n_heads, n_prompts=12, n_random=50,
                         random_grid=None)
    full, coarse = ablation_grids(n_heads, 0.4, 1, grid)
    curves = long[long.order == "random"].groupby(["seed", "n_removed"]).kl.mean().unstack()
    x = curves.columns.to_numpy() / n_heads
    auc_full = curves.to_numpy() @ trapezoid_weights(x)
    auc_coarse = curves[coarse].to_numpy() @ trapezoid_weights(coarse / n_heads)
    rel = auc_coarse / auc_full - 1
    assert np.median(np.abs(rel)) < (0.03 if n_heads == 24 else 0.015)
    assert abs(np.mean(rel)) < 0.01
    # the ranking of random orders, what the rank test uses, is nearly unchanged
    from scipy.stats import spearmanr
    assert spearmanr(auc_full, auc_coarse).statistic > 0.97


def test_auc_and_ratios_on_a_planted_effect():
    frac = np.linspace(0, 1, 11)
    rows = []
    for p in range(3):
        for f in frac:
            rows.append(("synergistic_first", -1, f, p, 2 * f))
            rows.append(("redundant_first", -1, f, p, 0.5 * f))
            for s in range(4):
                rows.append(("random", s, f, p, f * (1 + 0.1 * (s - 1.5))))
    long = pd.DataFrame(rows, columns=["order", "seed", "fraction_removed", "prompt", "kl"])
    long["n_removed"] = (long.fraction_removed * 10).round().astype(int)
    auc = auc_table(long).set_index("order")
    assert auc.auc["synergistic_first"] == pytest.approx(1.0)
    assert auc.ratio_to_random["synergistic_first"] == pytest.approx(2.0)
    assert auc.ratio_to_random["redundant_first"] == pytest.approx(0.5)
    assert auc.n_orders["random"] == 4 and auc.auc_std["random"] > 0
    summary = summarise_curves(long)
    rand = summary[summary.order == "random"].sort_values("fraction_removed")
    np.testing.assert_allclose(rand.kl_mean, frac)
    assert curve_auc(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)


def test_summarise_curves_excludes_nonfinite_prompts_and_rejects_empty(caplog):
    rows = [(order, s, f, p, (1 + p) * f * (1 + 0.1 * s))
            for p in range(4) for f in (0.0, 0.5, 1.0)
            for order, s in (("synergistic_first", -1), ("redundant_first", -1), ("random", 0), ("random", 1))]
    long = pd.DataFrame(rows, columns=["order", "seed", "fraction_removed", "prompt", "kl"])
    long["n_removed"] = (long.fraction_removed * 2).astype(int)
    planted = long.copy()
    planted.loc[(planted.order == "random") & (planted.seed == 1) & (planted.prompt == 2)
                & (planted.n_removed == 2), "kl"] = np.inf
    planted.loc[(planted.order == "redundant_first") & (planted.prompt == 0)
                & (planted.n_removed == 1), "kl"] = np.nan
    with caplog.at_level("WARNING", logger="synergy_core.ablation_curves"):
        summary = summarise_curves(planted)
    assert "2 non-finite KL value(s) (inf or NaN) in 2 of 4 prompts" in caplog.text
    assert "(e.g. 0, 2)" in caplog.text
    want = summarise_curves(long[~long.prompt.isin([0, 2])])
    pd.testing.assert_frame_equal(summary, want)
    assert np.isfinite(summary.kl_mean).all()
    assert (summary.n[summary.order != "random"] == 2).all()
    with pytest.raises(ValueError, match=r"ablation long table is empty \(no rows\)"):
        summarise_curves(long.iloc[:0])


def test_prompt_halves():
    from synergy_core.ranking import prompt_halves

    cats = np.array(["b", "a", "b", "a", "b", "c", "a", "b"])
    half = prompt_halves(cats)
    # sorted by category in order of first appearance: b b b b | a a a | c -> 0 1 0 1 | 0 1 0 | 1
    np.testing.assert_array_equal(half, [0, 0, 1, 1, 0, 1, 0, 1])
    for c in "abc":   # alternate within each category
        np.testing.assert_array_equal(half[cats == c], np.arange((cats == c).sum()) % 2 if c != "c" else [1])
    assert abs(int((half == 0).sum()) - int((half == 1).sum())) <= 1
    np.testing.assert_array_equal(prompt_halves(list(cats)), half)


def _table(rng, h):
    return pd.DataFrame({"syn_red": rng.random(h), "syn_red_half0": rng.random(h),
                         "syn_red_half1": rng.random(h)})


def test_plan_without_and_with_cross_validation():
    from synergy_core.ranking import prompt_halves
    from synergy_core.stages.ablate import LONG_COLUMNS, long_table, plan_ablation

    rng = np.random.default_rng(0)
    table, cats = _table(rng, 20), np.repeat(["x", "y", "z"], 4)
    cfg = dict(max_fraction=0.5, step=1, random_grid=4, n_random_orders=3, seed=5,
               cross_validate=False)
    (group,) = plan_ablation(table, cats, 20, cfg)
    assert group["half"] == -1 and list(group["prompts"]) == list(range(12))
    np.testing.assert_array_equal(group["orders"][0][2], np.argsort(-table.syn_red.to_numpy()))
    np.testing.assert_array_equal(group["counts"][0], np.arange(11))
    np.testing.assert_array_equal(group["counts"][2], [0, 3, 7, 10])
    plan = plan_ablation(table, cats, 20, dict(cfg, cross_validate=True))
    halves = prompt_halves(cats)
    for h, g in enumerate(plan):
        assert g["half"] == h and list(g["prompts"]) == list(np.flatnonzero(halves == h))
        other = table[f"syn_red_half{1 - h}"].to_numpy()     # ordered by the OTHER half
        np.testing.assert_array_equal(g["orders"][0][2], np.argsort(-other))
        np.testing.assert_array_equal(g["orders"][1][2], np.argsort(other))
        assert [o[1] for o in g["orders"][2:]] == [5, 6, 7]
    # each half has its own random permutations
    assert not np.array_equal(plan[0]["orders"][2][2], plan[1]["orders"][2][2])
    # the long table: each prompt once per (order, seed, count), with its half
    kls, indexes = [], []
    for g in plan:
        masks, index = masks_for_orders(g["orders"], g["counts"], 4, 5)
        kls.append(np.arange(len(masks))[:, None] + 1000.0 * g["prompts"][None, :])
        indexes.append(index)
    long = long_table(plan, kls, indexes, [f"p{i}" for i in range(12)], 20)
    assert list(long.columns) == LONG_COLUMNS
    assert len(long) == 12 * (2 * 11 + 3 * 4)
    assert not long.duplicated(["order", "seed", "n_removed", "prompt"]).any()
    np.testing.assert_array_equal(long.groupby("prompt").prompt_half.first().loc[[f"p{i}" for i in range(12)]],
                                  halves)
    row = long[(long.order == "synergistic_first") & (long.prompt == "p1") & (long.n_removed == 3)]
    g = plan[halves[1]]
    p_col = list(g["prompts"]).index(1)
    assert row.kl.item() == kls[halves[1]][indexes[halves[1]][0][3], p_col]


def test_rank_stage_writes_half_rankings(tmp_path):
    from synergy_core.io import load_arrays, save_arrays
    from synergy_core.ranking import prompt_halves
    from synergy_core.stages.phiid import compute_phiid_chunk, merge_phiid_chunks
    from synergy_core.stages.rank import rank_model
    from synergy_core.stats import syn_red_from_prompt_weights

    rng = np.random.default_rng(0)
    n_prompts, n_heads = 8, 6
    acts = np.exp(0.3 * rng.standard_normal((n_prompts, n_heads, 30)).cumsum(-1))
    cats = np.array(["a", "b"] * 4)
    save_arrays(tmp_path / "acts.npz", {"config_hash": "acts"}, acts=acts.astype(np.float32),
                head_labels=np.array([f"L{h // 2}H{h % 2}" for h in range(n_heads)]),
                prompt_ids=np.array([f"p{i}" for i in range(n_prompts)]), categories=cats,
                layer=np.arange(n_heads) // 2, head=np.arange(n_heads) % 2)
    cfg = dict(tau=1, redundancy="MMI", aggregation="per_prompt", backend="closed_form",
               n_chunks=1, block_pairs=100)
    compute_phiid_chunk(tmp_path / "acts.npz", tmp_path / "c.npz", 0, cfg, block_pairs=100)
    merge_phiid_chunks(tmp_path / "acts.npz", [tmp_path / "c.npz"], tmp_path / "m.npz", cfg)
    rank_model(tmp_path / "m.npz", tmp_path / "acts.npz", tmp_path / "h.tsv", tmp_path / "p.tsv",
               tmp_path / "d.json")
    table = pd.read_csv(tmp_path / "h.tsv", sep="\t")
    a = load_arrays(tmp_path / "m.npz")[0]
    half = prompt_halves(cats)
    for h in (0, 1):
        want = syn_red_from_prompt_weights(a["per_prompt_sts"], a["per_prompt_rtr"], a["pairs"],
                                           n_heads, (half == h).astype(float))
        np.testing.assert_allclose(table[f"syn_red_half{h}"], want, rtol=0, atol=1e-12)
    full = syn_red_from_prompt_weights(a["per_prompt_sts"], a["per_prompt_rtr"], a["pairs"], n_heads,
                                       np.ones(n_prompts))
    np.testing.assert_allclose(table.syn_red, full, atol=1e-9)

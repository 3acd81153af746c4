"""Ablation: KL at zero removed heads is exactly 0; batched masks equal separate passes; a fully
ablated layer leaves only the output bias; ordering logic."""
import numpy as np
import pandas as pd
import pytest
import torch

from synergy_core.ablation import ablation_orders, kl_for_masks, masks_for_orders, removal_counts
from synergy_core.ablation_curves import auc_table, curve_auc, summarise_curves
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

"""Compute settings of the extraction and ablation (synergy_core.compute): bfloat16 ablation KL
close to float32, log-softmax and KL in float32 on bf16 logits, the dtype actually used in the
extraction's provenance, TF32 flags set and restored, and a model placed with accelerate
(generation.gpus > 1 on a GPU node) giving the same norms and KL as the plain path, its device map
balanced over whole layers and never offloaded."""
import numpy as np
import pytest
import torch

from synergy_core.ablation import kl_for_masks
from synergy_core.extract import (
    eos_ids,
    extract_activations,
    generate_with_norms,
    teacher_forced_batch,
    tokenize_prompts,
)
from synergy_core.hooks import head_hooks, model_shape
from synergy_core.models import dispatch, load_model, load_tokenizer, placement, tf32_mode
from synergy_core.prompts import load_prompts, select_prompts

TEXTS = ["Correct the error: He go to school every day.", "What is 7 + 5?", "Hi there",
         "Ana goes to the garden."]
# trained for 150 steps: confident logits (up to ~10), so bf16 rounding of the logits matters
TRAINED = {"hf_id": "builtin:tiny-gpt-neox", "seed": 0, "revision": "step150"}
N_TOKENS = 16


@pytest.fixture(scope="module")
def trained():
    fp32 = load_model(TRAINED)
    tok = load_tokenizer(TRAINED)
    ids = tokenize_prompts(tok, TEXTS, list("abcd"), False, 1024, N_TOKENS)
    with head_hooks(fp32) as hooks:
        gen = generate_with_norms(fp32, hooks, ids, N_TOKENS, eos_ids(fp32, tok), tok.pad_token_id)
    return fp32, tok, ids, gen


def _progressive_masks(shape, seed=0):
    """Masks removing 0, 1, ..., half of the heads in one random order (an ablation curve)."""
    n = shape.n_total_heads
    order = np.random.default_rng(seed).permutation(n)
    masks = np.ones((n // 2 + 1, n), dtype=np.float32)
    for k in range(1, n // 2 + 1):
        masks[k, order[:k]] = 0
    return masks.reshape(-1, shape.n_layers, shape.n_heads)


def test_bf16_ablation_kl_is_close_to_float32(trained):
    """bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2% per operation); over 6
    layers and the logits' own rounding this leaves a few percent of relative error in a KL
    (measured: median 0.6%, max 4.3%), hence rtol 0.1, and atol 2e-3 nats for the smallest KL
    values, where the logits' rounding (spacing 2^-5 for logits in [4, 8)) dominates. The
    reference row is the intact model in the same dtype, so 0 heads removed is still exactly 0."""
    fp32, tok, ids, gen = trained
    bf16 = load_model(dict(TRAINED, dtype="bfloat16"))
    assert next(bf16.parameters()).dtype == torch.bfloat16
    shape = model_shape(fp32)
    masks = _progressive_masks(shape)
    with head_hooks(fp32, shape) as hooks:
        k32 = kl_for_masks(fp32, hooks, ids, gen.tokens, masks, tok.pad_token_id)
    with head_hooks(bf16, shape) as hooks:
        k16 = kl_for_masks(bf16, hooks, ids, gen.tokens, masks, tok.pad_token_id)
    assert k16.dtype == np.float64
    assert np.all(k16[0] == 0.0) and np.all(k32[0] == 0.0)
    assert k32[1:].min() > 1e-3                   # every ablation moves the trained model
    np.testing.assert_allclose(k16, k32, rtol=0.1, atol=2e-3)
    assert np.median(np.abs(k16[1:] - k32[1:]) / k32[1:]) < 0.02
    # the curve (prompt means per removal count) keeps its shape: same ordering of the points
    assert np.array_equal(np.argsort(k16.mean(1)), np.argsort(k32.mean(1)))


def test_kl_of_bf16_logits_is_computed_in_float32(trained):
    """bf16 logits are upcast before the log-softmax: kl_for_masks equals a float64 KL of the
    same bf16 logits to float32 rounding (1e-5 relative), while a log-softmax in bf16 (log-prob
    spacing 2^-5 to 2^-3 at these magnitudes) is off by about 1.5%, 1000 times that."""
    _, tok, ids, gen = trained
    bf16 = load_model(dict(TRAINED, dtype="bfloat16"))
    shape = model_shape(bf16)
    masks = np.ones((2, shape.n_layers, shape.n_heads), dtype=np.float32)
    masks[1, 2, :2] = 0
    with head_hooks(bf16, shape) as hooks:
        kl = kl_for_masks(bf16, hooks, ids[:1], gen.tokens[:1], masks, tok.pad_token_id,
                          prompt_batch=1, mask_group=1)
        # the same forward passes by hand: one row each, as kl_for_masks runs them here
        x, attn, pos = teacher_forced_batch(ids[:1], gen.tokens[:1], tok.pad_token_id, "cpu")
        with torch.no_grad():
            full = bf16(input_ids=x, attention_mask=attn, position_ids=pos,
                        logits_to_keep=N_TOKENS).logits[:, -N_TOKENS:]
            hooks.mask = torch.tensor(masks[1:])
            ablated = bf16(input_ids=x, attention_mask=attn, position_ids=pos,
                           logits_to_keep=N_TOKENS).logits[:, -N_TOKENS:]
            hooks.mask = None
    assert full.dtype == torch.bfloat16

    def kl_of(ref, abl):
        return (ref.double().exp() * (ref.double() - abl.double())).sum(-1).mean().item()

    exact = kl_of(torch.log_softmax(full.double(), -1), torch.log_softmax(ablated.double(), -1))
    in_bf16 = kl_of(torch.log_softmax(full, -1), torch.log_softmax(ablated, -1))
    assert kl[1, 0] == pytest.approx(exact, rel=1e-5)
    assert abs(in_bf16 - exact) / exact > 1e-3 * 5


def test_extraction_records_the_dtype_and_tf32_used(repo):
    prompts = select_prompts(load_prompts(repo / "config/prompts.tsv"), per_category=1)[:3]
    spec = {"hf_id": "builtin:tiny-gpt-neox", "seed": 0, "name": "t", "dtype": "float32"}
    arrays, prov = extract_activations(spec, prompts, num_tokens=8, device="cpu",
                                       compute={"dtype": "bfloat16", "tf32": False, "gpus": 1})
    assert prov["model"]["dtype"] == "bfloat16"
    assert prov["compute"] == {"dtype": "bfloat16", "tf32": False, "tf32_in_effect": False,
                               "gpus": 1, "devices": ["cpu"]}
    assert arrays["acts"].dtype == np.float32 and np.isfinite(arrays["acts"]).all()
    _, prov32 = extract_activations(spec, prompts, num_tokens=8, device="cpu")
    assert prov32["model"]["dtype"] == "float32" and prov32["compute"]["dtype"] == "float32"
    # TF32 requested: recorded, but not in effect on the CPU
    _, prov_tf32 = extract_activations(spec, prompts, num_tokens=8, device="cpu",
                                       compute={"dtype": "float32", "tf32": True, "gpus": 1})
    assert prov_tf32["compute"]["tf32"] and not prov_tf32["compute"]["tf32_in_effect"]


def test_tf32_mode_sets_both_flags_and_restores_them():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True          # torch's default: TF32 convolutions
        with tf32_mode(False):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
        with tf32_mode(True):
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_dispatched_model_gives_the_same_norms_and_kl(trained):
    """The accelerate path of generation.gpus > 1: "auto" on a CPU device keeps the model whole,
    and a layer-by-layer device map with accelerate's hooks attached (what a model spread over
    GPUs gets) gives bitwise the same norms, tokens and KL as the plain model."""
    plain, tok, ids, gen = trained
    shape = model_shape(plain)
    masks = _progressive_masks(shape, seed=1)[:6]
    with head_hooks(plain, shape) as hooks:
        kl_plain = kl_for_masks(plain, hooks, ids, gen.tokens, masks, tok.pad_token_id,
                                prompt_batch=2, mask_group=3)
    auto = dispatch(load_model(TRAINED), "auto", "cpu")
    assert placement(auto) == ["cpu"]
    split = load_model(TRAINED)
    names = [f"gpt_neox.{n}" for n, _ in split.gpt_neox.named_children() if n != "layers"]
    names += [f"gpt_neox.layers.{i}" for i in range(shape.n_layers)]
    names += [n for n, _ in split.named_children() if n != "gpt_neox"]
    split = dispatch(split, {n: "cpu" for n in names}, "cpu", force_hooks=True)
    assert hasattr(split.gpt_neox.layers[0], "_hf_hook")        # accelerate's hooks are attached
    for model in (auto, split):
        with head_hooks(model, shape) as hooks:
            again = generate_with_norms(model, hooks, ids, N_TOKENS, eos_ids(model, tok),
                                        tok.pad_token_id)
            kl = kl_for_masks(model, hooks, ids, gen.tokens, masks, tok.pad_token_id,
                              prompt_batch=2, mask_group=3)
        np.testing.assert_array_equal(again.tokens, gen.tokens)
        np.testing.assert_array_equal(again.norms, gen.norms)
        np.testing.assert_array_equal(kl, kl_plain)


def test_several_gpus_need_a_gpu_node():
    with pytest.raises(RuntimeError, match=r"generation.gpus is 2, but this job runs on 'cpu'"):
        load_model({"hf_id": "builtin:tiny-gpt-neox", "seed": 0}, device="cpu", gpus=2)
    with pytest.raises(ValueError, match="device_map must be None, 'auto' or a dict"):
        dispatch(load_model({"hf_id": "builtin:tiny-gpt-neox", "seed": 0}), "balanced", "cpu")


def test_auto_device_map_balances_whole_layers_and_refuses_offload(monkeypatch):
    """The device map of generation.gpus > 1, computed as on a node with 2 GPUs (faked: their
    count and free memory; accelerate's dispatch is intercepted): whole decoder layers, both
    GPUs used, nothing on the CPU; a model that does not fit fails naming generation.gpus."""
    import accelerate

    model = load_model({"hf_id": "builtin:tiny-gpt-neox", "seed": 0})
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    free = {"bytes": size}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: (free["bytes"], 10 * size))
    seen = {}

    def fake_dispatch(model, device_map, force_hooks=False, **kw):
        seen["map"] = dict(device_map)
        return model

    monkeypatch.setattr(accelerate, "dispatch_model", fake_dispatch)
    dispatch(model, "auto", "cuda", gpus=2)
    placed = seen["map"]
    assert set(placed.values()) == {0, 1}
    assert all(f"gpt_neox.layers.{i}" in placed for i in range(6))     # no layer split up
    free["bytes"] = size // 4                                           # half the model fits
    with pytest.raises(RuntimeError, match=r"does not fit on 2 GPU\(s\) .*raise generation.gpus"):
        dispatch(model, "auto", "cuda", gpus=2)
    with pytest.raises(RuntimeError, match=r"generation.gpus is 4, but this job sees 2 GPU\(s\); .*gres=gpu:4"):
        load_model({"hf_id": "builtin:tiny-gpt-neox", "seed": 0}, device="cuda", gpus=4)

"""The pre-hook captures exactly softmax(QK^T/sqrt d) V per head, for every supported family."""
import numpy as np
import pytest
import torch

from synergy_core.hooks import head_hooks, head_labels, model_shape, output_projections
from synergy_core.models import BUILTIN_MODELS, load_model


def _manual_head_outputs(model, ids):
    """Per-head attention outputs from eager attention weights and the value projections."""
    shape = model_shape(model)
    captured = {}
    handles = []
    for name, mod in model.named_modules():
        if name.endswith(("attention.query_key_value", "self_attn.v_proj", "attn.c_attn")):
            handles.append(mod.register_forward_hook(
                lambda m, a, o, name=name: captured.__setitem__(name, o.detach())))
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
    finally:
        model.set_attn_implementation("sdpa")
        for h in handles:
            h.remove()
    names = sorted(captured, key=lambda n: int(n.split(".")[-3]))
    per_layer = []
    b, s = ids.shape
    for layer, name in enumerate(names):
        o = captured[name]
        if name.endswith("query_key_value"):  # GPT-NeoX: [b, s, heads, 3*head_dim] -> q, k, v
            v = o.view(b, s, shape.n_heads, 3 * shape.head_dim)[..., 2 * shape.head_dim:]
        elif name.endswith("c_attn"):  # GPT-2: [b, s, 3*hidden] -> q, k, v blocks
            v = o.split(o.shape[-1] // 3, dim=-1)[2].view(b, s, shape.n_heads, shape.head_dim)
        else:  # grouped-query attention: each kv head serves n_heads / n_kv query heads
            n_kv = o.shape[-1] // shape.head_dim
            v = o.view(b, s, n_kv, shape.head_dim).repeat_interleave(shape.n_heads // n_kv, dim=2)
        attn = out.attentions[layer]  # [b, heads, s, s]
        per_layer.append(torch.einsum("bhst,bthd->bshd", attn, v))
    return torch.stack(per_layer, dim=2)  # [b, s, layers, heads, head_dim]


@pytest.mark.parametrize("hf_id", BUILTIN_MODELS)
def test_capture_equals_manual_attention_output(hf_id):
    model = load_model({"hf_id": hf_id, "seed": 3})
    shape = model_shape(model)
    ids = torch.randint(0, 250, (2, 11), generator=torch.Generator().manual_seed(0))
    manual = _manual_head_outputs(model, ids)
    expected = torch.linalg.vector_norm(manual, dim=-1).flatten(2)  # [b, s, layers*heads]
    model.set_attn_implementation("eager")
    with head_hooks(model, shape) as hooks, torch.no_grad():
        hooks.capture = True
        model(input_ids=ids)
        got = hooks.pop_norms()
    model.set_attn_implementation("sdpa")
    assert got.shape == (2, 11, shape.n_total_heads)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hf_id", BUILTIN_MODELS)
def test_shape_comes_from_config(hf_id):
    model = load_model({"hf_id": hf_id})
    shape = model_shape(model)
    text = model.config.get_text_config()
    assert shape.n_layers == (getattr(text, "num_hidden_layers", None) or text.n_layer)
    assert shape.n_heads == (getattr(text, "num_attention_heads", None) or text.n_head)
    assert len(output_projections(model)) == shape.n_layers
    labels = head_labels(shape)
    assert labels[0] == "L0H0" and labels[-1] == f"L{shape.n_layers - 1}H{shape.n_heads - 1}"


def test_zero_mask_silences_exactly_the_chosen_heads(tiny_neox):
    model, _ = tiny_neox
    shape = model_shape(model)
    ids = torch.randint(0, 250, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, shape.n_layers, shape.n_heads)
    mask[1, 2, 1] = 0  # row 1: ablate L2H1 only
    with head_hooks(model, shape) as hooks, torch.no_grad():
        hooks.capture, hooks.mask = True, mask
        model(input_ids=ids)
        norms = hooks.pop_norms().view(3, 7, shape.n_layers, shape.n_heads)
    assert torch.all(norms[1, :, 2, 1] == 0)
    assert torch.all(norms[0] > 0) and torch.all(norms[2] > 0)


def test_multimodal_wrapper_uses_the_language_model_heads_only():
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    from synergy_core.models import builtin_config

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=builtin_config("builtin:tiny-gemma3", 258).to_dict(),
                       vision_config=vision, mm_tokens_per_image=4)
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    projections = output_projections(model)
    names = {id(m): n for n, m in model.named_modules()}
    assert [names[id(p)] for p in projections] == [
        f"model.language_model.layers.{i}.self_attn.o_proj" for i in range(3)]
    shape = model_shape(model)
    assert (shape.n_layers, shape.n_heads, shape.head_dim) == (3, 4, 16)
    with head_hooks(model, shape) as hooks, torch.no_grad():
        hooks.capture = True
        model(input_ids=torch.tensor([[1, 2, 3, 4, 5]]))
        assert hooks.pop_norms().shape == (1, 5, 12)

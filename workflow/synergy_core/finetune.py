"""Fine-tuning only some attention heads (the paper's Fig 5): trainable slices, gradient
masking, trl's GRPO and SFT trainers, checkpoints that resume, and the frozen-weight check.

**What "updating a head" covers** (the paper does not say; ``finetune.kv_heads``). For head
``h`` of a layer with head width ``d``, the same slices the perturbation stage perturbs
(:func:`.perturb.head_weight_slices`): the query-projection rows of the head (with their bias
entries where the projection has a bias, as Qwen2 does) and the output-projection columns that
read the head's output. With ``kv_heads: group`` the key and value rows of a shared key/value
head of grouped-query attention train too, when every query head of its group is in the region
(a key/value head half in the region belongs to no region); ``none`` (the default) keeps keys
and values frozen, so regions of equal size train exactly equal numbers of parameters. MLPs,
embeddings, norms, the other heads and biases shared by all heads (GPT-NeoX's dense bias) are
frozen.

**How it is enforced.** Every parameter without a trainable slice has ``requires_grad=False``;
each parameter with one has a gradient hook that zeroes the gradient outside its mask, so the
optimiser (AdamW with weight decay 0: decoupled decay would shrink frozen weights) never moves a
frozen element (a zero gradient gives zero Adam moments and a zero update, also after gradient
clipping). :func:`verify_frozen` checks after training that every frozen element is bitwise
unchanged and counts the trainable elements that changed.

The training itself (trl) is in :mod:`.finetune_train`; this module is what the evaluation jobs
need too (which elements train, and how saved values go back into a model).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .hooks import output_projections
from .models import ModelShape
from .perturb import _query_weight, head_weight_slices

# --- which elements train ---------------------------------------------------------------------

def _kv_indices(model, shape: ModelShape, layer_name: str, head: int, group_heads: set[int]):
    """(parameter name, index) of the key and value rows of the key/value head serving query
    head ``head``, when every query head of its group is in ``group_heads``; else []."""
    d, n = shape.head_dim, shape.n_heads
    q_name, q_weight, layout = _query_weight(model, layer_name)
    attn = dict(model.named_modules())[layer_name]
    if layout == "separate":
        n_kv = attn.k_proj.weight.shape[0] // d
        size = n // n_kv
        kv = head // size
        if not set(range(kv * size, (kv + 1) * size)) <= group_heads:
            return []
        rows = slice(kv * d, (kv + 1) * d)
        return [(f"{layer_name}.{c}.{p}", (rows,) + ((slice(None),) if p == "weight" else ()))
                for c in ("k_proj", "v_proj") for p in ("weight", "bias")
                if getattr(getattr(attn, c), p, None) is not None]
    if layout == "neox":                                # one key/value head per query head
        rows = slice(3 * head * d + d, 3 * head * d + 3 * d)
        base = q_name.rsplit(".", 1)[0]
        return [(f"{base}.weight", (rows, slice(None)))] + (
            [(f"{base}.bias", (rows,))] if attn.query_key_value.bias is not None else [])
    cols = [slice(n * d + head * d, n * d + (head + 1) * d), slice(2 * n * d + head * d, 2 * n * d + (head + 1) * d)]
    base = q_name.rsplit(".", 1)[0]
    return [(f"{base}.weight", (slice(None), c)) for c in cols] + [(f"{base}.bias", (c,)) for c in cols]


def trainable_masks(model, shape: ModelShape, heads: list[tuple[int, int]], kv_heads: str = "none"
                    ) -> dict[str, torch.Tensor]:
    """Boolean masks, ``{parameter name: mask of the parameter's shape}``, of the elements that
    train when only ``heads`` (``(layer, head)`` pairs) learn (module docstring)."""
    params = dict(model.named_parameters())
    slices = head_weight_slices(model, shape)
    names = {id(m): n for n, m in model.named_modules()}
    layer_names = [names[id(p)].rsplit(".", 1)[0] for p in output_projections(model)]
    masks: dict[str, torch.Tensor] = {}

    def mark(name: str, index) -> None:
        if name not in masks:
            masks[name] = torch.zeros(params[name].shape, dtype=torch.bool, device=params[name].device)
        masks[name][index] = True

    by_layer: dict[int, set[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, set()).add(head)
    for layer, head in heads:
        for s in slices[(layer, head)]:
            mark(s.name, s.index)
        q_name, _, layout = _query_weight(model, layer_names[layer])
        bias = q_name[: -len("weight")] + "bias"
        if bias in params:                              # the query rows' bias entries
            q_index = slices[(layer, head)][0].index
            mark(bias, (q_index[1],) if layout == "conv1d" else (q_index[0],))
        if kv_heads == "group":
            for name, index in _kv_indices(model, shape, layer_names[layer], head, by_layer[layer]):
                mark(name, index)
    return masks


def restrict_training(model, masks: dict[str, torch.Tensor]) -> list:
    """Freeze every parameter outside ``masks`` and zero the gradient outside each mask (a
    hook, so the optimiser sees zeros); returns the hook handles."""
    handles = []
    for name, param in model.named_parameters():
        param.requires_grad_(name in masks)
        if name in masks:
            mask = masks[name]
            handles.append(param.register_hook(
                lambda grad, mask=mask: torch.where(mask.to(grad.device), grad, torch.zeros_like(grad))))
    return handles


def snapshot(model) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter, for :func:`verify_frozen`."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}


def verify_frozen(model, before: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict:
    """Check that every element outside ``masks`` is bitwise what it was in ``before`` (raise
    RuntimeError naming the first parameter that moved) and count the trainable elements that
    changed: ``{"n_frozen", "n_trainable", "n_trainable_changed"}``."""
    n_frozen = n_trainable = n_changed = 0
    for name, param in model.named_parameters():
        now, then = param.detach().cpu(), before[name]
        mask = masks.get(name)
        frozen = ~mask.cpu() if mask is not None else torch.ones_like(now, dtype=torch.bool)
        moved = (now != then) & frozen
        if moved.any():
            raise RuntimeError(f"{name}: {int(moved.sum())} frozen elements changed during fine-tuning; "
                               "the gradient masking failed, the run is invalid")
        n_frozen += int(frozen.sum())
        if mask is not None:
            n_trainable += int(mask.sum())
            n_changed += int(((now != then) & mask.cpu()).sum())
    return dict(n_frozen=n_frozen, n_trainable=n_trainable, n_trainable_changed=n_changed)


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """A digest of a model's weights (:func:`snapshot`): the evaluation jobs check that they put a
    run's trained elements into the same base weights the run was trained from."""
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def masks_digest(masks: dict[str, torch.Tensor]) -> str:
    """A digest of which elements train (the evaluation jobs check it against their own)."""
    h = hashlib.sha256()
    for name in sorted(masks):
        h.update(name.encode())
        h.update(np.packbits(masks[name].cpu().numpy().ravel()).tobytes())
    return h.hexdigest()


def trainable_values(model, masks: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The trainable elements of each masked parameter, flattened in mask order, float32."""
    params = dict(model.named_parameters())
    return {name: params[name].detach()[mask].float().cpu().numpy() for name, mask in masks.items()}


@torch.no_grad()
def load_values(model, masks: dict[str, torch.Tensor], values: dict[str, np.ndarray]) -> None:
    """Write saved trainable elements (:func:`trainable_values`) into ``model``."""
    params = dict(model.named_parameters())
    if set(values) != set(masks):
        raise ValueError(f"checkpoint holds {sorted(values)}, the masks name {sorted(masks)}")
    for name, mask in masks.items():
        param = params[name]
        if values[name].size != int(mask.sum()):
            raise ValueError(f"{name}: checkpoint has {values[name].size} values for {int(mask.sum())} "
                             "trainable elements")
        param.data[mask] = torch.from_numpy(values[name]).to(param.device, param.dtype)

"""Per-head access to attention outputs through forward pre-hooks on the output projection.

The input of an attention block's output projection is the concatenation over heads of
``softmax(Q_h K_h^T / sqrt(d)) V_h``; reshaped to ``[batch, seq, n_heads, head_dim]`` it gives
every head's output before the heads are mixed. One pre-hook serves two purposes:

* capture: record ``||output_h||_2`` per head and position (activation extraction);
* ablation: multiply chosen heads' slices by 0 (each batch row may carry its own head mask).

The projection is found by module name, which covers GPT-NeoX (``attention.dense``),
Llama/Qwen2/Qwen3/Gemma3 (``self_attn.o_proj``) and GPT-2 (``attn.c_proj``), also inside
multimodal wrappers (Gemma 3's language model), never inside a vision tower.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch

from .models import ModelShape

_PROJECTION = re.compile(r"(?:^|\.)layers?\.(\d+)\.(?:attention\.dense|self_attn\.o_proj)$"
                         r"|(?:^|\.)h\.(\d+)\.attn\.c_proj$")


def head_label(layer: int, head: int) -> str:
    """Canonical head name, ``L{layer}H{head}`` (both from 0)."""
    return f"L{layer}H{head}"


def head_labels(shape: ModelShape) -> list[str]:
    """Labels of all heads, layer-major: index ``layer * n_heads + head``."""
    return [head_label(layer, h) for layer in range(shape.n_layers) for h in range(shape.n_heads)]


def output_projections(model) -> list[torch.nn.Module]:
    """The attention output projection of every decoder layer, in layer order."""
    found = {}
    for name, module in model.named_modules():
        if "vision" in name:
            continue
        m = _PROJECTION.search(name)
        if m:
            layer = int(m.group(1) or m.group(2))
            if layer in found:
                raise RuntimeError(f"two attention output projections for layer {layer} (at {name})")
            found[layer] = module
    if not found:
        raise RuntimeError(
            f"no attention output projection found in {type(model).__name__}; supported: GPT-NeoX "
            "attention.dense, Llama/Qwen/Gemma self_attn.o_proj, GPT-2 attn.c_proj")
    if sorted(found) != list(range(len(found))):
        raise RuntimeError(f"attention layers are not numbered 0..n-1: {sorted(found)}")
    return [found[i] for i in range(len(found))]


def model_shape(model) -> ModelShape:
    """Layers, heads and head_dim from the model's (text) config and its projection width."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_heads = getattr(text, "num_attention_heads", None) or text.n_head
    projections = output_projections(model)
    n_layers, proj = len(projections), projections[0]
    width = proj.in_features if hasattr(proj, "in_features") else proj.weight.shape[0]  # GPT-2 Conv1D
    if width % n_heads:
        raise RuntimeError(f"projection width {width} is not divisible by {n_heads} heads")
    return ModelShape(n_layers=n_layers, n_heads=n_heads, head_dim=width // n_heads)


class HeadHooks:
    """Pre-hooks on every layer's output projection for capture and/or per-row head ablation.

    Attributes set between forward passes:

    * ``mask``: ``None`` or a float tensor ``[batch, n_layers, n_heads]`` (1 = keep, 0 = ablate);
      row b of the batch is ablated with ``mask[b]``. Each layer's slice is moved to that layer's
      device and dtype, so a model spread over GPUs (``generation.gpus``) is ablated the same way.
    * ``capture``: when True, each forward appends ``[batch, seq, n_heads]`` L2 norms (float32)
      per layer to ``norms[layer]``.
    """

    def __init__(self, model, shape: ModelShape | None = None):
        self.shape = shape or model_shape(model)
        self.mask: torch.Tensor | None = None
        self.capture = False
        self.norms: list[list[torch.Tensor]] = [[] for _ in range(self.shape.n_layers)]
        self._handles = [proj.register_forward_pre_hook(self._make_hook(i))
                         for i, proj in enumerate(output_projections(model))]

    def _make_hook(self, layer: int):
        n_heads, head_dim = self.shape.n_heads, self.shape.head_dim

        def hook(module, args):
            x = args[0]
            per_head = x.view(*x.shape[:-1], n_heads, head_dim)
            if self.mask is not None:
                # [batch, n_heads], on the layer's device (a model spread over GPUs)
                m = self.mask[:, layer].to(device=per_head.device, dtype=per_head.dtype)
                per_head = per_head * m[:, None, :, None]
            if self.capture:
                self.norms[layer].append(torch.linalg.vector_norm(per_head.float(), dim=-1))
            if self.mask is not None:
                return (per_head.reshape(x.shape), *args[1:])
            return None

        return hook

    def pop_norms(self) -> torch.Tensor:
        """Captured norms as ``[batch, seq_total, n_layers * n_heads]`` (calls concatenated on seq),
        on the first layer's device."""
        per_layer = [torch.cat(chunks, dim=1) for chunks in self.norms]
        per_layer = [t.to(per_layer[0].device) for t in per_layer]
        self.norms = [[] for _ in range(self.shape.n_layers)]
        return torch.cat(per_layer, dim=-1)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@contextmanager
def head_hooks(model, shape: ModelShape | None = None):
    hooks = HeadHooks(model, shape)
    try:
        yield hooks
    finally:
        hooks.remove()

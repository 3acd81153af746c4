"""Greedy generation with end-of-sequence suppressed, and per-head attention-output norms.

For prompt p, head h (index ``layer * n_heads + head``) and generated step t (0-based),
``a[p, h, t] = ||softmax(Q_h K_h^T / sqrt(d)) V_h||_2`` at the position that *produces* token t:
the last prompt position for t = 0, the position of generated token t - 1 afterwards.

Two routes give the same numbers (tested): capture during KV-cached generation (what the
workflow does: the generation's own forward passes, no extra compute) and one teacher-forced
pass over prompt + generated tokens (:func:`teacher_forced_norms`).
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from .hooks import HeadHooks

log = logging.getLogger(__name__)


@dataclass
class Generation:
    """Result of :func:`generate_with_norms` for n prompts.

    norms: float32 ``[n, heads, num_tokens]``; tokens: int64 ``[n, num_tokens]`` generated ids;
    natural_length: int64 ``[n]``, the number of tokens generated before EOS would first have been
    chosen, or -1 if greedy decoding never preferred EOS within ``num_tokens`` steps;
    prompt_ids: the tokenised prompts (lists of ids, unpadded).
    """

    norms: np.ndarray
    tokens: np.ndarray
    natural_length: np.ndarray
    prompt_ids: list[list[int]]


def eos_ids(model, tokenizer) -> list[int]:
    """Every token id that ends a sequence for this model (tokenizer and generation config)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update(int(i) for i in np.atleast_1d(gen_eos))
    if not ids:
        raise ValueError("the tokenizer and model define no end-of-sequence token")
    return sorted(ids)


def context_length(model) -> int | None:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


def tokenize_prompts(tokenizer, texts: list[str], names: list[str], chat_template: bool,
                     max_length: int | None, num_tokens: int) -> list[list[int]]:
    """Token ids per prompt; refuses empty prompts and prompts that overflow the context."""
    out = []
    for name, text in zip(names, texts):
        if chat_template:
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError("prompts.chat_template is true but the tokenizer has no chat template")
            text = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(text)["input_ids"]
        if len(ids) == 0:
            raise ValueError(f"prompt {name}: empty after tokenisation")
        if max_length is not None and len(ids) + num_tokens > max_length:
            raise ValueError(f"prompt {name}: {len(ids)} prompt tokens + {num_tokens} generated "
                             f"exceed the model's context of {max_length} positions")
        out.append(ids)
    return out


def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """Left-padded ``input_ids``, ``attention_mask`` and ``position_ids`` (from the mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


@torch.no_grad()
def generate_with_norms(model, hooks: HeadHooks, prompt_ids: list[list[int]], num_tokens: int,
                        eos: list[int], pad_id: int, batch_size: int = 8,
                        device="cpu") -> Generation:
    """Greedy decoding of exactly ``num_tokens`` tokens per prompt with EOS suppressed, batched
    with left padding and a KV cache, capturing every head's output norm at each step."""
    n = len(prompt_ids)
    norms = np.empty((n, hooks.shape.n_total_heads, num_tokens), dtype=np.float32)
    tokens = np.empty((n, num_tokens), dtype=np.int64)
    natural = np.full(n, -1, dtype=np.int64)
    eos_t = torch.tensor(eos, device=device)
    cache_name = _cache_kwarg_name(model)
    start = time.perf_counter()
    for b0 in range(0, n, batch_size):
        rows = slice(b0, min(n, b0 + batch_size))
        ids, mask, pos = left_pad(prompt_ids[rows], pad_id, device)
        hooks.capture = True
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        step_norms = [hooks.pop_norms()[:, -1]]
        past = _cache_of(out)
        for t in range(num_tokens):
            logits = out.logits[:, -1].float()
            chose_eos = torch.isin(logits.argmax(-1), eos_t).cpu().numpy()
            fresh = chose_eos & (natural[rows] < 0)
            natural[rows][fresh] = t  # natural[rows] is a view: this writes through
            logits[:, eos_t] = -torch.inf
            nxt = logits.argmax(-1)
            tokens[rows, t] = nxt.cpu().numpy()
            if t == num_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            pos = pos[:, -1:] + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                        use_cache=True, **{cache_name: past})
            past = _cache_of(out)
            step_norms.append(hooks.pop_norms()[:, -1])
        hooks.capture = False
        norms[rows] = torch.stack(step_norms, dim=-1).cpu().numpy()
        done = rows.stop
        rate = done * num_tokens / (time.perf_counter() - start)
        log.info("generated prompts %d-%d of %d (%.1f tokens/s)", b0 + 1, done, n, rate)
    return Generation(norms=norms, tokens=tokens, natural_length=natural, prompt_ids=prompt_ids)


def _cache_kwarg_name(model) -> str:
    # transformers 5.x renamed ``past_key_values`` to ``cache``; support both spellings.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    return out["cache"] if "cache" in out else out["past_key_values"]


def teacher_forced_batch(prompt_ids: list[list[int]], tokens: np.ndarray, pad_id: int, device):
    """Left-padded prompt + generated tokens (all but the last); the last ``num_tokens``
    positions of every row are exactly the positions that produced the generated tokens."""
    seqs = [list(p) + tokens[i, :-1].tolist() for i, p in enumerate(prompt_ids)]
    return left_pad(seqs, pad_id, device)


def pad_ragged(seqs: list[list[int]], fill: int = -1) -> np.ndarray:
    """Ragged token lists as one int64 array ``[n, max_len]``, right-filled with ``fill``."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), fill, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def unpad_ragged(arr: np.ndarray, fill: int = -1) -> list[list[int]]:
    return [row[row != fill].tolist() for row in arr]


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"generation.device is {name!r} but no CUDA device is visible")
    return name


def extract_activations(spec: dict, prompts, num_tokens: int, batch_size: int = 8,
                        chat_template: bool = False, device: str = "auto",
                        compute: dict | None = None) -> tuple[dict, dict]:
    """Load a model, generate and record head norms for ``prompts`` (list of :class:`Prompt`).

    Returns ``(arrays, provenance)`` ready for :func:`synergy_core.io.save_arrays`: ``acts``
    float32 [prompts, heads, steps], ``head_labels`` [heads], ``prompt_ids``/``categories``
    [prompts], ``tokens`` int64 [prompts, steps], ``natural_length`` int64 [prompts],
    ``prompt_lengths`` int64 [prompts], and ``layer``/``head`` int [heads]. The provenance's
    ``model`` identifies the weights and holds ``n_parameters``, the loaded model's parameter
    count.

    ``compute`` (:func:`synergy_core.compute.compute_settings`): ``dtype`` replaces the spec's
    (the provenance's ``model.dtype`` is the one used), ``tf32`` sets TF32 matmuls
    (:func:`models.tf32_mode`), ``gpus`` > 1 spreads the model over that many GPUs; the
    provenance's ``compute`` records them, whether TF32 was in effect (CUDA only) and the
    devices the weights were on.
    """
    from .compute import apply_compute
    from .hooks import head_hooks, head_labels, model_shape
    from .io import software_versions
    from .models import load_model, load_tokenizer, placement, tf32_mode

    spec, compute = apply_compute(spec, compute)
    device = resolve_device(device)
    tokenizer = load_tokenizer(spec)
    model = load_model(spec, device=device, gpus=compute["gpus"])
    shape = model_shape(model)
    ids = tokenize_prompts(tokenizer, [p.text for p in prompts], [p.prompt_id for p in prompts],
                           chat_template, context_length(model), num_tokens)
    log.info("model %s: %d layers x %d heads (head_dim %d), %d prompts, %d tokens each, on %s",
             spec.get("name", spec["hf_id"]), shape.n_layers, shape.n_heads, shape.head_dim,
             len(prompts), num_tokens, device)
    with tf32_mode(compute["tf32"]), head_hooks(model, shape) as hooks:
        gen = generate_with_norms(model, hooks, ids, num_tokens, eos_ids(model, tokenizer),
                                  tokenizer.pad_token_id, batch_size, device)
    n_nonfinite = int((~np.isfinite(gen.norms)).sum())
    if n_nonfinite:
        log.warning("%d non-finite activations (dtype overflow?); PhiID marks the affected "
                    "(pair, prompt) cells NaN", n_nonfinite)
    labels = head_labels(shape)
    arrays = dict(
        acts=gen.norms, tokens=gen.tokens, natural_length=gen.natural_length,
        prompt_lengths=np.array([len(i) for i in ids], dtype=np.int64),
        prompt_tokens=pad_ragged(ids),
        head_labels=np.array(labels), prompt_ids=np.array([p.prompt_id for p in prompts]),
        categories=np.array([p.category for p in prompts]),
        layer=np.repeat(np.arange(shape.n_layers), shape.n_heads),
        head=np.tile(np.arange(shape.n_heads), shape.n_layers),
    )
    # the model's size as loaded (embeddings included, a tied weight once: parameters() yields
    # each tensor once); the phiid merge and the ranking's diagnostics.json carry "model" on to
    # the summary's n_parameters column, the x axis of the scaling figure
    n_parameters = int(sum(p.numel() for p in model.parameters()))
    provenance = dict(
        model=dict({k: spec.get(k) for k in ("name", "hf_id", "revision", "init", "seed", "dtype",
                                             "local_path")}, n_parameters=n_parameters),
        shape=dict(n_layers=shape.n_layers, n_heads=shape.n_heads, head_dim=shape.head_dim),
        num_tokens=num_tokens, chat_template=chat_template, device=device, batch_size=batch_size,
        nonfinite_activations=n_nonfinite, versions=software_versions(),
        compute=dict(dtype=spec.get("dtype", "float32"), tf32=bool(compute["tf32"]),
                     tf32_in_effect=bool(compute["tf32"]) and device.startswith("cuda"),
                     gpus=int(compute["gpus"]), devices=placement(model)),
    )
    return arrays, provenance

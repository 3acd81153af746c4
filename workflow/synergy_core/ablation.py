"""Iterative head ablation and its behavioural divergence (KL) on the unablated model's tokens.

For a set S of zeroed heads and prompt p, the divergence is the mean over the generated
positions t of ``KL(p_full(x_t | x_<t) || p_S(x_t | x_<t))`` over the whole vocabulary, both
distributions from teacher-forced passes over the unablated model's prompt + generated tokens.

Batching: one forward pass carries rows for several (head mask, prompt) combinations; every
forward pass has the same shape (the last group of masks is padded with the all-heads mask), and
the reference distribution is taken from the all-heads rows of such a pass. Rows of a batch are
computed independently, so the divergence at 0 heads removed is exactly 0.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from .ablation_curves import ablation_grids, ablation_orders, grid_counts, removal_counts
from .ablation_plan import masks_for_orders
from .extract import teacher_forced_batch
from .hooks import HeadHooks

# The grids, orders (ablation_curves) and masks (ablation_plan) are pure numpy; re-exported for
# the stage and tests.
__all__ = ["ablation_grids", "ablation_orders", "grid_counts", "kl_for_masks", "masks_for_orders",
           "removal_counts"]

log = logging.getLogger(__name__)


@torch.no_grad()
def kl_for_masks(model, hooks: HeadHooks, prompt_ids: list[list[int]], tokens: np.ndarray,
                 masks: np.ndarray, pad_id: int, prompt_batch: int = 4, mask_group: int = 8,
                 device="cpu") -> np.ndarray:
    """Mean-over-positions KL divergence per (mask, prompt): float64 ``[M, prompts]``.

    ``masks[0]`` must keep every head (it yields the reference distribution). Log-softmax and
    KL are computed in float32 whatever the model dtype. Each forward pass has
    ``prompt_batch * mask_group`` rows.
    """
    if not np.all(masks[0] == 1):
        raise ValueError("masks[0] must keep every head (it is the reference)")
    n_masks, n_prompts = len(masks), len(prompt_ids)
    num_tokens = tokens.shape[1]
    out = np.empty((n_masks, n_prompts), dtype=np.float64)
    masks_t = torch.as_tensor(masks, dtype=torch.float32, device=device)
    groups = [list(range(g, min(g + mask_group, n_masks))) for g in range(0, n_masks, mask_group)]
    # Prompts of similar length share a batch, so little compute goes to left padding.
    by_length = np.argsort([len(p) for p in prompt_ids], kind="stable")
    start = time.perf_counter()
    for p0 in range(0, n_prompts, prompt_batch):
        rows = by_length[p0:p0 + prompt_batch]
        ids, attn, pos = teacher_forced_batch([prompt_ids[r] for r in rows], tokens[rows],
                                              pad_id, device)
        n_p = ids.shape[0]
        ids, attn, pos = (t.repeat(mask_group, 1) for t in (ids, attn, pos))
        ref = None
        for group in groups:
            padded = group + [0] * (mask_group - len(group))
            hooks.mask = masks_t[padded].repeat_interleave(n_p, dim=0)  # row = g * n_p + prompt
            logits = model(input_ids=ids, attention_mask=attn, position_ids=pos,
                           logits_to_keep=num_tokens).logits[:, -num_tokens:]
            logp = torch.log_softmax(logits.float(), dim=-1).view(mask_group, n_p, num_tokens, -1)
            if ref is None:  # group 0 holds mask 0 in its first slot
                ref = logp[0].clone()
                p_ref = ref.exp()
            # 0 * log(0 / q) = 0: a token the intact model gives probability 0 (log -inf)
            # contributes nothing, instead of 0 * (-inf - -inf) = NaN
            terms = torch.where(p_ref > 0, p_ref * (ref - logp), 0.0)
            kl = terms.sum(-1).mean(-1)  # [mask_group, n_p]
            out[np.ix_(group, rows)] = kl[: len(group)].double().cpu().numpy()
        hooks.mask = None
        log.info("ablation: %d of %d prompts, %d masks, %.1f s", min(p0 + prompt_batch, n_prompts),
                 n_prompts, n_masks, time.perf_counter() - start)
    return out

"""Reference per-head norms from one teacher-forced pass: the independent check that KV-cached
generation records the same activations (used by test_extract.py and benchmarks/gpu_check.py)."""
import numpy as np
import torch

from synergy_core.extract import teacher_forced_batch
from synergy_core.hooks import HeadHooks


@torch.no_grad()
def teacher_forced_norms(model, hooks: HeadHooks, prompt_ids: list[list[int]], tokens: np.ndarray,
                         pad_id: int, batch_size: int = 8, device="cpu") -> np.ndarray:
    """Per-head norms ``[n, heads, num_tokens]`` from one teacher-forced pass per batch."""
    n, num_tokens = tokens.shape
    out = np.empty((n, hooks.shape.n_total_heads, num_tokens), dtype=np.float32)
    for b0 in range(0, n, batch_size):
        rows = slice(b0, min(n, b0 + batch_size))
        ids, mask, pos = teacher_forced_batch(prompt_ids[rows], tokens[rows], pad_id, device)
        hooks.capture = True
        model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        hooks.capture = False
        out[rows] = hooks.pop_norms()[:, -num_tokens:].transpose(1, 2).cpu().numpy()
    return out

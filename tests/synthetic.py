"""Synthetic stage inputs shared by the tests that build a results tree with the stage
functions (tests/test_faults.py, tests/test_summary.py): activations of random-walk head norms
and an ablation table with a known ordering of the curves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synergy_core.io import save_arrays


def save_activations(path, seed: int, n_layers: int, per_layer: int, n_prompts: int, n_steps: int,
                     made_from=(), config_hash: str = "same-config", tokens: bool = False) -> None:
    """An activations file as the extraction writes it: ``acts`` [prompts, heads, steps] of
    positive random walks, layer-major head labels, two alternating categories; ``tokens``
    adds token arrays (what the ablation reads)."""
    rng = np.random.default_rng(seed)
    n_heads = n_layers * per_layer
    acts = np.exp(0.3 * rng.standard_normal((n_prompts, n_heads, n_steps)).cumsum(-1))
    extra = {}
    if tokens:
        extra = dict(tokens=rng.integers(0, 250, (n_prompts, n_steps)),
                     prompt_tokens=rng.integers(0, 250, (n_prompts, 4)))
    save_arrays(path, {"config_hash": config_hash}, made_from=made_from, acts=acts.astype(np.float32),
                head_labels=np.array([f"L{h // per_layer}H{h % per_layer}" for h in range(n_heads)]),
                prompt_ids=np.array([f"p{i}" for i in range(n_prompts)]),
                categories=np.array(["x", "y"] * (n_prompts // 2)),
                layer=np.arange(n_heads) // per_layer, head=np.arange(n_heads) % per_layer, **extra)


def kl_long(seed: int, n_prompts: int, n_heads: int) -> pd.DataFrame:
    """An ablation long table: synergistic-first steeper than the 9 random orders, redundant-first
    flatter, 0 to 3 heads removed, KL 0 at 0 removed."""
    rng = np.random.default_rng(seed)
    rows = []
    for order, s in [("synergistic_first", -1), ("redundant_first", -1)] + [("random", k) for k in range(9)]:
        slope = {"synergistic_first": 2.0, "redundant_first": 0.5}.get(order, 1.0)
        for n in range(4):
            for p in range(n_prompts):
                rows.append(dict(order=order, seed=s, n_removed=n, fraction_removed=n / n_heads,
                                 prompt=f"p{p}", prompt_half=-1,
                                 kl=0.0 if n == 0 else slope * n * (1 + 0.1 * rng.random())))
    return pd.DataFrame(rows)

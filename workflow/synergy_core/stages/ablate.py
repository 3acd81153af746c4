"""Ablation stage: iterative head ablation of one model in ranked and random orders (KL)."""

from __future__ import annotations

import logging

import pandas as pd

from ..ablation import ablation_orders, kl_for_masks, masks_for_orders, removal_counts
from ..ablation_curves import auc_table, summarise_curves
from ..extract import resolve_device, unpad_ragged
from ..hooks import head_hooks, model_shape
from ..io import CorruptOutputError, load_arrays, read_table, write_table
from ..models import load_model, load_tokenizer

log = logging.getLogger(__name__)


def run_ablation(acts_path, heads_path, long_out, summary_out, auc_out, spec: dict, cfg: dict,
                 device: str = "auto") -> None:
    """Iterative ablation in synergistic-first, redundant-first and random orders (one model)."""
    arrays, _ = load_arrays(acts_path, ("tokens", "prompt_tokens", "prompt_ids"))
    table = read_table(heads_path, ("syn_red",))
    device = resolve_device(device)
    model = load_model(spec, device=device)
    tokenizer = load_tokenizer(spec)
    shape = model_shape(model)
    if shape.n_total_heads != len(table):
        raise CorruptOutputError(f"{heads_path}: {len(table)} heads, but the model has "
                                 f"{shape.n_total_heads}; delete it and rerun")
    counts = removal_counts(shape.n_total_heads, cfg["max_fraction"], cfg["step"])
    orders = ablation_orders(table.syn_red.to_numpy(), cfg["n_random_orders"], cfg["seed"])
    masks, index = masks_for_orders(orders, counts, shape.n_layers, shape.n_heads)
    prompts = unpad_ragged(arrays["prompt_tokens"])
    log.info("ablation of %s: %d heads, %d orders x %d removal counts = %d distinct masks, "
             "%d prompts, on %s", spec.get("name"), shape.n_total_heads, len(orders), len(counts),
             len(masks), len(prompts), device)
    with head_hooks(model, shape) as hooks:
        kl = kl_for_masks(model, hooks, prompts, arrays["tokens"], masks, tokenizer.pad_token_id,
                          cfg["prompt_batch"], cfg["mask_group"], device)
    rows = []
    for o, (name, seed, _) in enumerate(orders):
        for c, k in enumerate(counts):
            for p, pid in enumerate(arrays["prompt_ids"]):
                rows.append((name, seed, int(k), k / shape.n_total_heads, str(pid),
                             kl[index[o, c], p]))
    long = pd.DataFrame(rows, columns=["order", "seed", "n_removed", "fraction_removed",
                                       "prompt", "kl"])
    write_table(long_out, long)
    write_table(summary_out, summarise_curves(long))
    auc = auc_table(long)
    write_table(auc_out, auc)
    log.info("AUC ratios: %s", auc.to_dict("records"))

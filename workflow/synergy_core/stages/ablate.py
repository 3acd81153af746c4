"""Ablation stage: iterative head ablation of one model in ranked and random orders (KL)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..ablation import ablation_grids, ablation_orders, kl_for_masks, masks_for_orders
from ..ablation_curves import auc_table, summarise_curves
from ..extract import resolve_device, unpad_ragged
from ..hooks import head_hooks, model_shape
from ..io import CorruptOutputError, load_arrays, read_table, write_table
from ..models import load_model, load_tokenizer
from ..ranking import prompt_halves

log = logging.getLogger(__name__)

LONG_COLUMNS = ["order", "seed", "n_removed", "fraction_removed", "prompt", "prompt_half", "kl"]


def plan_ablation(table: pd.DataFrame, categories, n_total_heads: int, cfg: dict) -> list[dict]:
    """What to evaluate: one entry per group of prompts, ``dict(half, prompts, orders, counts)``.

    Without cross-validation one group (``half`` -1, every prompt) ordered by ``syn_red``. With
    ``cfg["cross_validate"]`` two groups, the halves of :func:`ranking.prompt_halves`: half h is
    ordered by the ranking of the other half (``syn_red_half{1-h}``) and gets its own random
    permutations (same seed labels), so each pooled random "order" is, like the ranked one, one
    order per half. Ranked orders are evaluated on the full grid, random orders on the coarse
    one (:func:`ablation_curves.ablation_grids`); ``counts`` has one array per order.
    """
    full, coarse = ablation_grids(n_total_heads, cfg["max_fraction"], cfg["step"],
                                  cfg.get("random_grid"))
    n_prompts = len(categories)
    if cfg.get("cross_validate"):
        halves = prompt_halves(categories)
        groups = [(h, np.flatnonzero(halves == h), table[f"syn_red_half{1 - h}"].to_numpy(), h)
                  for h in (0, 1)]
    else:
        groups = [(-1, np.arange(n_prompts), table.syn_red.to_numpy(), None)]
    plan = []
    for half, prompts, syn_red, stream in groups:
        if np.isnan(syn_red).all():
            log.warning("prompt group %d: no head is ranked; the ranked orders are head order", half)
        orders = ablation_orders(syn_red, cfg["n_random_orders"], cfg["seed"], stream)
        counts = [full if name != "random" else coarse for name, _, _ in orders]
        plan.append(dict(half=half, prompts=prompts, orders=orders, counts=counts))
    return plan


def long_table(plan: list[dict], kls: list[np.ndarray], indexes: list[list[np.ndarray]],
               prompt_ids, n_total_heads: int) -> pd.DataFrame:
    """The long table (:data:`LONG_COLUMNS`) from each group's KL ``[masks, group prompts]`` and
    mask index per order and count."""
    parts = []
    for group, kl, index in zip(plan, kls, indexes):
        pids = np.asarray(prompt_ids).astype(str)[group["prompts"]]
        for (name, seed, _), counts, idx in zip(group["orders"], group["counts"], index):
            values = kl[idx]                                               # [counts, prompts]
            parts.append(pd.DataFrame({
                "order": name, "seed": seed, "n_removed": np.repeat(counts, len(pids)),
                "fraction_removed": np.repeat(counts / n_total_heads, len(pids)),
                "prompt": np.tile(pids, len(counts)), "prompt_half": group["half"],
                "kl": values.ravel()}))
    return pd.concat(parts, ignore_index=True)[LONG_COLUMNS]


def run_ablation(acts_path, heads_path, long_out, summary_out, auc_out, spec: dict, cfg: dict,
                 device: str = "auto") -> None:
    """Iterative ablation in synergistic-first, redundant-first and random orders (one model).

    ``kl_long.tsv`` columns: :data:`LONG_COLUMNS` (``prompt_half``: -1, or the prompt's half
    when the ranked orders are cross-validated: they then come from the other half's ranking).
    """
    arrays, _ = load_arrays(acts_path, ("tokens", "prompt_tokens", "prompt_ids", "categories"))
    columns = ("syn_red", "syn_red_half0", "syn_red_half1") if cfg.get("cross_validate") else ("syn_red",)
    table = read_table(heads_path, columns)
    # planned from the ranking before the model is loaded: a max_fraction that removes no head
    # (unknown at parse time for a hub model) fails in seconds
    plan = plan_ablation(table, arrays["categories"], len(table), cfg)
    device = resolve_device(device)
    model = load_model(spec, device=device)
    tokenizer = load_tokenizer(spec)
    shape = model_shape(model)
    if shape.n_total_heads != len(table):
        raise CorruptOutputError(f"{heads_path}: {len(table)} heads, but the model has "
                                 f"{shape.n_total_heads}; delete it and rerun")
    prompts = unpad_ragged(arrays["prompt_tokens"])
    kls, indexes = [], []
    with head_hooks(model, shape) as hooks:
        for group in plan:
            masks, index = masks_for_orders(group["orders"], group["counts"], shape.n_layers,
                                            shape.n_heads)
            log.info("ablation of %s, prompt group %d: %d heads, %d orders on %d (ranked) and %d "
                     "(random) removal counts = %d distinct masks, %d prompts, on %s",
                     spec.get("name"), group["half"], shape.n_total_heads, len(group["orders"]),
                     len(group["counts"][0]), len(group["counts"][-1]), len(masks),
                     len(group["prompts"]), device)
            kls.append(kl_for_masks(model, hooks, [prompts[p] for p in group["prompts"]],
                                    arrays["tokens"][group["prompts"]], masks,
                                    tokenizer.pad_token_id, cfg["prompt_batch"],
                                    cfg["mask_group"], device))
            indexes.append(index)
    long = long_table(plan, kls, indexes, arrays["prompt_ids"], shape.n_total_heads)
    made_from = [acts_path, heads_path]
    write_table(long_out, long, made_from)
    write_table(summary_out, summarise_curves(long), made_from)
    auc = auc_table(long)
    write_table(auc_out, auc, made_from)
    log.info("AUC ratios: %s", auc.to_dict("records"))

"""Ablation stage: iterative head ablation of one model in ranked and random orders (KL)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..ablation_curves import ablation_grids, ablation_orders, auc_table, summarise_curves
from ..ablation_plan import masks_for_orders
from ..io import CorruptOutputError, load_arrays, read_table, write_table
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


def read_plan(acts_path, heads_path, cfg: dict) -> tuple[dict, int, list[dict]]:
    """The activations' tokens and labels, the number of heads, and the plan
    (:func:`plan_ablation`) with each prompt group's distinct masks (flat, ``[M, 1, heads]``,
    :func:`..ablation_plan.masks_for_orders`) and mask index per order, ``masks`` and ``index``.
    Read from the ranking before any model is loaded: a max_fraction that removes no head
    (unknown at parse time for a hub model) fails in seconds."""
    arrays, _ = load_arrays(acts_path, ("tokens", "prompt_tokens", "prompt_ids", "categories"))
    columns = ("syn_red", "syn_red_half0", "syn_red_half1") if cfg.get("cross_validate") else ("syn_red",)
    table = read_table(heads_path, columns)
    plan = plan_ablation(table, arrays["categories"], len(table), cfg)
    for group in plan:
        group["masks"], group["index"] = masks_for_orders(group["orders"], group["counts"], 1, len(table))
    return arrays, len(table), plan


def evaluate_plan(arrays: dict, plan: list[dict], n_total_heads: int, heads_path, spec: dict, cfg: dict,
                  device: str = "auto", selections=None, compute: dict | None = None) -> list:
    """KL ``[masks, group prompts]`` of each prompt group of the plan, on the model.

    ``compute`` (:func:`synergy_core.compute.compute_settings`, stage ``ablation``): the dtype
    the model is loaded in (replacing the spec's; the KL is float32 whatever it is), TF32 and
    the GPUs the model is spread over; ``None``: the spec's dtype, no TF32, one device.

    ``selections``: per prompt group the indices of the masks to evaluate together, in
    :func:`..ablation.kl_for_masks`'s batches (the first must be the all-heads mask; an empty
    one skips the group: its entry is None); None evaluates every mask."""
    from ..ablation import kl_for_masks
    from ..compute import apply_compute
    from ..extract import resolve_device, unpad_ragged
    from ..hooks import head_hooks, model_shape
    from ..models import load_model, load_tokenizer, placement, tf32_mode

    spec, compute = apply_compute(spec, compute)
    device = resolve_device(device)
    model = load_model(spec, device=device, gpus=compute["gpus"])
    tokenizer = load_tokenizer(spec)
    log.info("ablation of %s in %s, TF32 %s, on %s", spec.get("name"), spec.get("dtype", "float32"),
             "on" if compute["tf32"] and device.startswith("cuda") else "off", ", ".join(placement(model)))
    shape = model_shape(model)
    if shape.n_total_heads != n_total_heads:
        raise CorruptOutputError(f"{heads_path}: {n_total_heads} heads, but the model has "
                                 f"{shape.n_total_heads}; delete it and rerun")
    prompts = unpad_ragged(arrays["prompt_tokens"])
    selections = [None] * len(plan) if selections is None else selections
    kls = []
    with tf32_mode(compute["tf32"]), head_hooks(model, shape) as hooks:
        for group, rows in zip(plan, selections):
            masks = group["masks"].reshape(-1, shape.n_layers, shape.n_heads)
            if rows is not None and not len(rows):
                kls.append(None)
                continue
            log.info("ablation of %s, prompt group %d: %d heads, %d orders on %d (ranked) and %d "
                     "(random) removal counts = %d distinct masks%s, %d prompts, on %s",
                     spec.get("name"), group["half"], shape.n_total_heads, len(group["orders"]),
                     len(group["counts"][0]), len(group["counts"][-1]), len(masks),
                     "" if rows is None else f" ({len(rows)} evaluated here)", len(group["prompts"]),
                     device)
            kls.append(kl_for_masks(model, hooks, [prompts[p] for p in group["prompts"]],
                                    arrays["tokens"][group["prompts"]],
                                    masks if rows is None else masks[rows], tokenizer.pad_token_id,
                                    cfg["prompt_batch"], cfg["mask_group"], device))
    return kls


def write_ablation(plan: list[dict], kls: list[np.ndarray], arrays: dict, n_total_heads: int,
                   made_from, long_out, summary_out, auc_out) -> None:
    """``kl_long.tsv``, ``summary.tsv`` and ``auc.tsv`` from each prompt group's KL."""
    long = long_table(plan, kls, [group["index"] for group in plan], arrays["prompt_ids"], n_total_heads)
    write_table(long_out, long, made_from)
    write_table(summary_out, summarise_curves(long), made_from)
    auc = auc_table(long)
    write_table(auc_out, auc, made_from)
    log.info("AUC ratios: %s", auc.to_dict("records"))


def run_ablation(acts_path, heads_path, long_out, summary_out, auc_out, spec: dict, cfg: dict,
                 device: str = "auto", compute: dict | None = None) -> None:
    """Iterative ablation in synergistic-first, redundant-first and random orders (one model).

    ``kl_long.tsv`` columns: :data:`LONG_COLUMNS` (``prompt_half``: -1, or the prompt's half
    when the ranked orders are cross-validated: they then come from the other half's ranking).
    The sharded form (``ablation.n_parts`` > 1) is in :mod:`.ablate_parts`.
    """
    arrays, n_total_heads, plan = read_plan(acts_path, heads_path, cfg)
    kls = evaluate_plan(arrays, plan, n_total_heads, heads_path, spec, cfg, device, compute=compute)
    write_ablation(plan, kls, arrays, n_total_heads, [acts_path, heads_path], long_out, summary_out, auc_out)

"""The head masks of the ablation and the units of work of its sharded form (no torch: the GPU
jobs, the CPU merge and the configuration check's tests all import it).

The ablation evaluates, for each prompt group of :func:`..stages.ablate.plan_ablation`, the
distinct keep-masks of every order and removal count (:func:`masks_for_orders`), ``mask_group``
masks per forward pass (:func:`..ablation.kl_for_masks`). A *unit* is one such group of masks:
masks ``u * mask_group .. (u + 1) * mask_group - 1`` of one prompt group, the last group padded
with the all-heads mask. With ``ablation.n_parts`` > 1, part ``p`` evaluates a contiguous range
of the units (:func:`units_of_part`); each of its forward passes is one the single job runs too
(the same masks in the same slots, the same padding, the same prompt batches), plus, for each
prompt group it touches, the pass of unit 0, whose all-heads rows are the reference
distribution. The KL of every (mask, prompt) is therefore computed by identical passes whichever
job evaluates it, and the merged tables are the same bytes as the single job's.
"""

from __future__ import annotations

import math

import numpy as np


def masks_for_orders(orders, counts, n_layers: int, n_heads: int):
    """Unique keep-masks ``[M, n_layers, n_heads]`` (index 0 = all heads kept) and, per order,
    the index of each count's mask.

    ``counts``: one array of removal counts shared by every order (the index is then an array
    ``[orders, counts]``), or a list with one array per order (the index is then a list of
    arrays), e.g. random orders on a coarser grid than the ranked ones.
    """
    shared = isinstance(counts, np.ndarray) and counts.ndim == 1
    per_order = [counts] * len(orders) if shared else list(counts)
    if len(per_order) != len(orders):
        raise ValueError(f"{len(per_order)} count arrays for {len(orders)} orders")
    unique: dict[bytes, int] = {}
    masks = []

    def add(mask):
        key = mask.tobytes()
        if key not in unique:
            unique[key] = len(masks)
            masks.append(mask)
        return unique[key]

    add(np.ones(n_layers * n_heads, dtype=np.float32))
    index = []
    for (_, _, order), order_counts in zip(orders, per_order):
        row = np.empty(len(order_counts), dtype=np.int64)
        for j, k in enumerate(order_counts):
            mask = np.ones(n_layers * n_heads, dtype=np.float32)
            mask[order[:k]] = 0
            row[j] = add(mask)
        index.append(row)
    masks = np.stack(masks).reshape(-1, n_layers, n_heads)
    if shared:
        return masks, np.stack(index) if index else np.empty((0, len(counts)), dtype=np.int64)
    return masks, index


def mask_units(n_masks: list[int], mask_group: int) -> list[tuple[int, int]]:
    """Every unit ``(prompt group, mask group)`` of one model, in the single job's order, for
    prompt groups of ``n_masks`` distinct masks each."""
    return [(g, u) for g, m in enumerate(n_masks) for u in range(math.ceil(m / mask_group))]


def units_of_part(units: list, part: int, n_parts: int) -> list:
    """The units job ``part`` of ``n_parts`` evaluates: the ``part``-th of ``n_parts``
    contiguous ranges, of equal size to within one unit (every unit costs the same forward
    passes). A part beyond the number of units gets none."""
    n = len(units)
    return units[part * n // n_parts:(part + 1) * n // n_parts]


def part_rows(n_masks: int, mask_group: int, groups: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """For a contiguous run ``groups`` of mask groups of one prompt group (as
    :func:`units_of_part` gives them): the masks to evaluate together (indices, group 0 first
    when the run does not start with it: the reference) and the masks the run covers. The KL of
    the covered masks are the last ``len(covered)`` rows of the evaluation."""
    if not groups:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    if list(groups) != list(range(groups[0], groups[0] + len(groups))):
        raise ValueError(f"mask groups {groups} are not contiguous")
    covered = np.arange(groups[0] * mask_group, min((groups[-1] + 1) * mask_group, n_masks))
    reference = np.arange(0, mask_group) if groups[0] > 0 else np.empty(0, dtype=np.int64)
    return np.concatenate([reference, covered]), covered

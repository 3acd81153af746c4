"""Comparison stage: one model's inverted-U scores minus another's, paired by prompt (a trained
model vs its random-init twin; the final vs the first training checkpoint)."""

from __future__ import annotations

import logging

import numpy as np

from ..comparisons import compare_profiles
from ..io import CorruptOutputError, head_layout, load_arrays, write_table

log = logging.getLogger(__name__)

KEYS = ("per_prompt_sts", "per_prompt_rtr", "pairs", "layer", "head", "prompt_ids")


def compare_models(phiid_a, phiid_b, out_tsv, cfg: dict) -> None:
    """Write the paired difference (A - B) of the inverted-U scores with a permutation p-value.

    ``cfg``: ``n_permutations``, ``seed``, ``ci``. Both files must hold the same prompts (by id,
    in order) and the same head layout; otherwise the comparison is refused, naming both files.
    """
    a, _ = load_arrays(phiid_a, KEYS)
    b, _ = load_arrays(phiid_b, KEYS)
    for key in ("prompt_ids", "pairs", "layer", "head"):
        if a[key].shape != b[key].shape or not np.array_equal(a[key], b[key]):
            raise CorruptOutputError(f"{phiid_a} and {phiid_b} differ in {key}: a paired comparison "
                                     "needs the same prompts and the same head layout")
    n_layers, _ = head_layout(a["layer"], a["head"])
    table = compare_profiles(a, b, a["pairs"], a["layer"], n_layers, cfg["n_permutations"],
                             cfg["seed"], cfg["ci"])
    log.info("A - B (paired by prompt):\n%s", table.to_string(index=False))
    write_table(out_tsv, table, [phiid_a, phiid_b])

"""PhiID stage: one chunk of the all-pairs PhiID of a model, and the merge of its chunks."""

from __future__ import annotations

import logging

import numpy as np

from ..io import (
    CorruptOutputError,
    check_made_from,
    load_activations,
    load_arrays,
    save_arrays,
    stable_hash,
)
from ..phiid.all_pairs import DEFAULT_MAX_BLOCK_PAIRS, phiid_all_pairs
from ..phiid.chunks import PairwisePhiID, atom_matrices, chunk_range, merge_chunks, pair_matrix
from ..phiid.kernel import ATOM_NAMES

log = logging.getLogger(__name__)

CHUNK_KEYS = ("pairs", "atoms", "per_prompt_sts", "per_prompt_rtr", "nan_count")
#: The PhiID settings that change numbers (``n_chunks`` and ``block_pairs`` do not).
NUMERIC_SETTINGS = ("tau", "redundancy", "aggregation")


def numeric_settings(cfg: dict) -> dict:
    return {k: cfg[k] for k in NUMERIC_SETTINGS}


def compute_phiid_chunk(acts_path, out_path, chunk: int, cfg: dict, threads: int = 1,
                        block_pairs: int = DEFAULT_MAX_BLOCK_PAIRS) -> None:
    """PhiID of chunk ``chunk`` of ``cfg['n_chunks']`` for one model's activations.

    ``cfg`` holds the numeric settings, ``backend`` and ``n_chunks``; ``block_pairs`` only
    bounds memory (the numbers do not depend on it).
    """
    arrays, acts_prov = load_activations(acts_path)
    acts = arrays["acts"]
    n_prompts, n_total_heads, n_steps = acts.shape
    pairs_all = n_total_heads * (n_total_heads - 1) // 2
    start, stop = chunk_range(pairs_all, cfg["n_chunks"], chunk)
    nonfinite = ~np.isfinite(acts)
    if nonfinite.any():
        heads = sorted({str(arrays["head_labels"][h]) for h in np.nonzero(nonfinite.any(axis=(0, 2)))[0]})
        log.warning("%d non-finite activations in heads %s: their (pair, prompt) cells are NaN",
                    int(nonfinite.sum()), heads[:20])
    log.info("chunk %d of %d: pairs [%d, %d) of %d, %d prompts x %d steps, backend %s, %s",
             chunk, cfg["n_chunks"], start, stop, pairs_all, n_prompts, n_steps, cfg["backend"],
             cfg["aggregation"])
    if cfg["backend"] == "phyid":
        from ..phiid.reference import phiid_all_pairs_phyid

        result = phiid_all_pairs_phyid(acts, cfg["tau"], pair_start=start, pair_stop=stop,
                                       n_workers=threads, aggregation=cfg["aggregation"])
    else:
        result = phiid_all_pairs(acts, cfg["tau"], cfg["aggregation"], start, stop,
                                 max_block_pairs=block_pairs)
    n_nan = int(result.nan_count.sum())
    log.info("done: %d of %d (pair, prompt) cells degenerate (NaN)", n_nan, (stop - start) * n_prompts)
    provenance = dict(activations_hash=acts_prov.get("config_hash"), settings=numeric_settings(cfg),
                      backend=cfg["backend"], n_chunks=cfg["n_chunks"], chunk=chunk,
                      pair_range=[start, stop], n_total_heads=n_total_heads)
    save_arrays(out_path, provenance, made_from=[acts_path], pairs=result.pairs, atoms=result.atoms,
                per_prompt_sts=result.per_prompt_sts, per_prompt_rtr=result.per_prompt_rtr,
                nan_count=result.nan_count, n_prompts=result.n_prompts, tau=result.tau,
                aggregation=result.aggregation)


def _load_chunk(path, acts_path, expect: dict) -> PairwisePhiID:
    arrays, prov = load_arrays(path, CHUNK_KEYS)
    check_made_from(path, prov, acts_path)
    for key, value in expect.items():
        if prov.get(key) != value:
            raise CorruptOutputError(
                f"{path}: made for {key} = {prov.get(key)!r}, but the current run has {value!r} "
                "(a chunk from another config or older activations); delete it and rerun")
    return PairwisePhiID(
        pairs=arrays["pairs"], atoms=arrays["atoms"], per_prompt_sts=arrays["per_prompt_sts"],
        per_prompt_rtr=arrays["per_prompt_rtr"], nan_count=arrays["nan_count"],
        n_prompts=int(arrays["n_prompts"]), tau=int(arrays["tau"]),
        aggregation=str(arrays["aggregation"]))


def merge_phiid_chunks(acts_path, chunk_paths: list, out_path, cfg: dict) -> None:
    """Gather chunk files into ``[16, H, H]`` atom matrices plus per-pair, per-prompt arrays."""
    arrays, acts_prov = load_activations(acts_path)
    n_total_heads = len(arrays["head_labels"])
    expect = dict(activations_hash=acts_prov.get("config_hash"), settings=numeric_settings(cfg),
                  n_chunks=len(chunk_paths))
    merged = merge_chunks([_load_chunk(p, acts_path, expect) for p in chunk_paths], n_total_heads)
    matrices = atom_matrices(merged.atoms, merged.pairs, n_total_heads)
    nan_matrix = pair_matrix(merged.nan_count.astype(float), merged.pairs, n_total_heads)
    per_head_nan = np.nansum(nan_matrix, axis=1).astype(np.int64)
    n_cells = len(merged.pairs) * merged.n_prompts
    log.info("merged %d chunks: %d pairs x %d prompts; %d degenerate cells (%.3g%%)",
             len(chunk_paths), len(merged.pairs), merged.n_prompts, int(merged.nan_count.sum()),
             100 * merged.nan_count.sum() / max(n_cells, 1))
    for h in np.nonzero(per_head_nan)[0]:
        log.info("  head %s: %d NaN (pair, prompt) cells", arrays["head_labels"][h], per_head_nan[h])
    # No chunk count, block size or chunk file in the provenance and record: the merged file is
    # the same bytes however the pairs were chunked (each chunk was verified on reading).
    provenance = dict(activations_hash=acts_prov.get("config_hash"), settings=numeric_settings(cfg),
                      backend=cfg["backend"], model=acts_prov.get("model"),
                      shape=acts_prov.get("shape"), phiid_hash=stable_hash(
                          [acts_prov.get("config_hash"), numeric_settings(cfg)]))
    save_arrays(out_path, provenance, made_from=[acts_path], atoms=matrices, atom_names=np.array(ATOM_NAMES),
                pairs=merged.pairs, per_prompt_sts=merged.per_prompt_sts,
                per_prompt_rtr=merged.per_prompt_rtr, nan_count=merged.nan_count,
                nan_count_matrix=nan_matrix, per_head_nan=per_head_nan,
                head_labels=arrays["head_labels"], prompt_ids=arrays["prompt_ids"],
                categories=arrays["categories"], layer=arrays["layer"], head=arrays["head"])



"""Extraction stage: greedy generation and per-head attention-output norms of one model."""

from __future__ import annotations

import logging

from ..extract import extract_activations
from ..io import save_arrays, stable_hash
from ..prompts import load_prompts, select_prompts

log = logging.getLogger(__name__)


def run_extraction(prompts_path, out_path, spec: dict, selection: dict, generation: dict,
                   compute: dict | None = None) -> None:
    """Generate ``generation['num_tokens']`` tokens for the selected prompts and save the
    per-head norms ``acts [prompts, heads, steps]`` with labels and provenance. ``compute``:
    dtype, TF32 and GPUs of the extraction (:func:`synergy_core.compute.compute_settings`;
    ``None``: the model's dtype, no TF32, one device)."""
    prompts = select_prompts(load_prompts(prompts_path), selection["categories"],
                             selection["per_category"], selection["first_k"])
    arrays, provenance = extract_activations(spec, prompts, generation["num_tokens"],
                                             generation["batch_size"], selection["chat_template"],
                                             generation["device"], compute)
    provenance["config_hash"] = stable_hash([spec, selection, generation, compute])
    save_arrays(out_path, provenance, made_from=[prompts_path], **arrays)
    log.info("wrote %s: acts %s", out_path, arrays["acts"].shape)

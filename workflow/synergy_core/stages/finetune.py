"""Fine-tuning stage (the paper's Fig 5), GPU side: the training parts and the evaluation parts.

Rules (``workflow/rules/finetune.smk``): ``download_datasets`` (login node) ->
``prepare_finetune_data`` -> ``finetune_train`` (GPU jobs, each a round-robin share of one
model's runs, :func:`..finetune_plan.plan_runs`; each run resumes from its last checkpoint in a
scratch directory that survives a killed job) -> ``finetune_eval`` (GPU jobs, each a share of
the checkpoints, greedy answers: :mod:`.finetune_eval`, which never imports the trainer or the
scoring) -> ``finetune_merge`` -> ``finetune_stats`` -> ``plot_finetune``.
The CPU side (data, merge with scoring, statistics) is in :mod:`.finetune_stats`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..finetune_plan import (
    METHOD_DATA_KEYS,
    RUN_KEYS,
    SPEC_KEYS,
    TRAIN_KEYS,
    TRAIN_RECORD,
    checkpoint_path,
    config_eval_steps,
    plan_runs,
    read_regions,
    region_heads,
    run_label,
    run_seed,
    share,
)
from ..io import CorruptOutputError, load_arrays, read_json, save_arrays, stable_hash, write_json

log = logging.getLogger(__name__)


def run_train_part(data_json, heads_path, out_dir, spec: dict, cfg: dict, part: int, n_parts: int,
                   scratch_root, device: str = "auto", checkpoint_every: int = 100,
                   code: str | None = None) -> None:
    """Train this part's runs one after the other (each from the same base weights) and write,
    into ``out_dir``, every run's trainable elements at each evaluation step plus ``record.json``
    (training curves, the frozen-weight check, resume points).

    A run's scratch directory (``scratch_root/<run>-<digest of settings, weights, data and
    code>``) keeps its trainer checkpoints until the run is done, so a rerun after a killed job
    resumes each run from its last checkpoint, and a run finished before the kill is not
    trained again; other settings or code give another directory, so nothing stale is resumed."""
    import torch

    from ..extract import resolve_device
    from ..finetune import masks_digest, restrict_training, snapshot, trainable_masks, verify_frozen, weights_digest
    from ..finetune_train import finish_run, read_done, train_run, write_done
    from ..hooks import model_shape
    from ..models import load_model, load_tokenizer
    from ..perturb import uses_chat_template

    data = read_json(data_json)
    runs = share(plan_runs(cfg["methods"], cfg["n_seeds"]), part, n_parts)
    steps = config_eval_steps(cfg)
    settings, weights = {k: cfg[k] for k in TRAIN_KEYS}, {k: spec.get(k) for k in SPEC_KEYS}
    device = resolve_device(device)
    tokenizer = load_tokenizer(spec)
    chat = uses_chat_template(tokenizer, cfg["chat_template"])
    from ..finetune_train import grpo_rows, sft_rows

    rows = dict(grpo=grpo_rows(data["grpo"], cfg["prompt_template"], chat),
                sft=sft_rows(data["sft"], cfg["prompt_template"], chat, tokenizer.eos_token or ""))
    model = load_model(spec, device=device)
    shape = model_shape(model)
    base = snapshot(model)
    base_digest = weights_digest(base)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for run in runs:
        label = run_label(run)
        region_sets, labels = read_regions(heads_path, cfg, run["seed"])
        if len(labels) != shape.n_total_heads:
            raise CorruptOutputError(f"{heads_path}: {len(labels)} heads, but the model has "
                                     f"{shape.n_total_heads}; delete it and rerun")
        masks = trainable_masks(model, shape, region_heads(region_sets[run["region"]], shape.n_heads), cfg["kv_heads"])
        digest = masks_digest(masks)
        provenance = dict(run=run, settings=settings, spec=weights, masks_digest=digest, code=code,
                          base_digest=base_digest)
        method = run["method"]
        # the scratch key: what this run's numbers depend on, nothing else (not the other method,
        # the number of seeds or the evaluation), so such changes never retrain a finished run
        key = dict(run=run, settings={k: cfg[k] for k in (*RUN_KEYS, *METHOD_DATA_KEYS[method], method)},
                   spec=weights, base_digest=base_digest, masks_digest=digest, code=code,
                   data=stable_hash(data[method]))
        scratch = Path(scratch_root) / f"{label}-{stable_hash(key)}"
        stale = [p.name for p in Path(scratch_root).glob(f"{label}-*") if p != scratch]
        if stale and not scratch.exists():
            log.warning("%s: other settings, weights, data or code than %s; starting afresh in %s (delete "
                        "them to free their disk space)", label, ", ".join(stale), scratch)
        done = read_done(scratch)
        if done is None:
            with torch.no_grad():                       # every run starts from the base weights
                for name, param in model.named_parameters():
                    param.copy_(base[name].to(param.device))
            handles = restrict_training(model, masks)
            try:
                result = train_run(model, tokenizer, run, masks, rows, cfg, scratch, steps, device,
                                   checkpoint_every, provenance)
            finally:
                for handle in handles:
                    handle.remove()
            check = verify_frozen(model, base, masks)
            log.info("%s: %d trainable elements (%d changed), %d frozen elements unchanged", label,
                     check["n_trainable"], check["n_trainable_changed"], check["n_frozen"])
            done = dict(result, **check, run=run, seed=run_seed(cfg["seed"], run), masks_digest=digest,
                        finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            write_done(scratch, done)
            finish_run(scratch)
        else:
            log.info("%s: finished before (%s); not trained again", label, scratch)
        for step in steps:
            arrays, prov = load_arrays(scratch / "eval" / f"step{step}.npz")
            if prov.get("masks_digest") != digest or prov.get("step") != step:
                raise CorruptOutputError(f"{scratch}/eval/step{step}.npz: not this run's checkpoint; "
                                         f"delete {scratch} and rerun")
            save_arrays(checkpoint_path(out_dir, run, step), dict(provenance, step=step), **arrays)
        records.append(dict(label=label, **{k: done[k] for k in ("run", "seed", "history", "resumed_from",
                                                                   "n_frozen", "n_trainable",
                                                                   "n_trainable_changed", "masks_digest")}))
    if device.startswith("cuda"):
        log.info("peak GPU memory %.2f GB", torch.cuda.max_memory_allocated() / 1e9)
    write_json(out_dir / TRAIN_RECORD, made_from=[data_json, heads_path], obj=dict(
        settings=settings, spec=weights, part=part, n_parts=n_parts, code=code, steps=steps,
        chat_template_used=chat, runs=records))


__all__ = ["run_train_part"]

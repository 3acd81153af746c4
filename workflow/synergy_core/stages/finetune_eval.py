"""Fine-tuning stage (the paper's Fig 5), the evaluation parts (GPU): greedy answers of the
base model and of every run at every evaluated step. Imports neither the trainer nor the scoring,
so a change to the reward's scoring reruns the training (its reward changed) and the merge, but
no evaluation job of a run that did not change."""

from __future__ import annotations

import logging
import time

from ..finetune_plan import (
    EVAL_KEYS,
    SPEC_KEYS,
    TRAIN_KEYS,
    checkpoint_path,
    config_eval_steps,
    plan_eval_units,
    plan_runs,
    read_regions,
    region_heads,
    run_label,
    share,
    unit_label,
)
from ..io import CorruptOutputError, load_arrays, read_json, write_json

log = logging.getLogger(__name__)


def run_eval_part(data_json, heads_path, train_dirs: dict, out_json, spec: dict, cfg: dict, part: int,
                  n_parts: int, device: str = "auto", code: str | None = None) -> None:
    """Answer every evaluation problem greedily with each checkpoint of this part (the base model
    and runs at evaluation steps, :func:`..finetune_plan.plan_eval_units`): one row per (unit,
    problem) with the generated text and its token count, scored by the merge on a CPU.
    ``train_dirs``: ``{run label: training part directory}``."""
    import torch

    from ..extract import resolve_device
    from ..finetune import load_values, masks_digest, snapshot, trainable_masks, weights_digest
    from ..hooks import model_shape
    from ..models import load_model, load_tokenizer
    from ..perturb import build_prompts, greedy_answers, uses_chat_template
    from ..stages.perturb import prompts_digest
    from ..tasks import format_prompt

    problems = read_json(data_json)["eval"]
    units = share(plan_eval_units(plan_runs(cfg["methods"], cfg["n_seeds"]), config_eval_steps(cfg)), part, n_parts)
    settings, weights = {k: cfg[k] for k in TRAIN_KEYS + EVAL_KEYS}, {k: spec.get(k) for k in SPEC_KEYS}
    tokenizer = load_tokenizer(spec)
    prompts, stop_ids = build_prompts(tokenizer, [format_prompt(cfg["prompt_template"], p["problem"])
                                                  for p in problems], cfg["chat_template"])
    device = resolve_device(device)
    model = load_model(spec, device=device)
    shape = model_shape(model)
    base = snapshot(model)
    base_digest = weights_digest(base)
    rows, used = [], []
    for unit in units:
        start = time.perf_counter()
        masks = {}
        if unit["method"] != "base":
            run = {k: unit[k] for k in ("method", "region", "seed")}
            region_sets, _ = read_regions(heads_path, cfg, run["seed"])
            heads = region_heads(region_sets[run["region"]], shape.n_heads)
            masks = trainable_masks(model, shape, heads, cfg["kv_heads"])
            path = checkpoint_path(train_dirs[run_label(run)], run, unit["step"])
            arrays, prov = load_arrays(path)
            used.append(path)
            expected = dict(run=run, settings={k: cfg[k] for k in TRAIN_KEYS}, spec=weights,
                            masks_digest=masks_digest(masks), step=unit["step"], base_digest=base_digest)
            if any(prov.get(k) != v for k, v in expected.items()):
                raise CorruptOutputError(f"{path}: made for another run, model, step, settings or base "
                                         "weights (a model re-downloaded since its training?) than "
                                         f"{unit_label(unit)}; delete it and rerun its training part")
            load_values(model, masks, {k.split(":", 1)[1]: v for k, v in arrays.items()})
        try:
            texts, counts = greedy_answers(model, tokenizer, prompts, cfg["eval_max_new_tokens"],
                                           cfg["eval_batch_size"], device, stop_ids)
        finally:
            with torch.no_grad():                       # back to the base weights
                params = dict(model.named_parameters())
                for name in masks:
                    params[name].copy_(base[name].to(params[name].device))
        rows += [dict(problem_id=p["id"], **unit, n_tokens=n, output=text)
                 for p, n, text in zip(problems, counts, texts)]
        log.info("%s: %d problems, %d tokens (%d cut at eval_max_new_tokens), %.1f s", unit_label(unit),
                 len(problems), sum(counts), sum(n >= cfg["eval_max_new_tokens"] for n in counts),
                 time.perf_counter() - start)
    write_json(out_json, made_from=[data_json, heads_path, *used], obj=dict(
        settings=settings, spec=weights, part=part, n_parts=n_parts, code=code,
        prompts_digest=prompts_digest(prompts), chat_template_used=uses_chat_template(tokenizer, cfg["chat_template"]),
        units=[unit_label(u) for u in units], rows=rows))


__all__ = ["run_eval_part"]

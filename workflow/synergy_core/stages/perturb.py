"""Perturbation stage (the paper's Fig 4b), GPU side: task download and the parts.

Rules (``workflow/rules/perturb.smk``): ``download_datasets`` (login node) -> ``prepare_task``
(the problems, read once)
-> ``perturbation_part`` (GPU jobs, each a round-robin share of the units of work of one model,
:func:`..perturbation_plan.plan_units`, answering every problem under each) ->
``perturbation_merge`` -> ``perturbation_stats``. The CPU side (task preparation, the merge with
its scoring, the statistics) is in :mod:`.perturbation_stats`, so that a change to the scoring
or the statistics never reruns a GPU job.
"""

from __future__ import annotations

import logging
import time

from ..io import CorruptOutputError, read_json, stable_hash, write_json
from ..perturbation_plan import PLAN_KEYS, SPEC_KEYS, noise_seed, plan_units, read_head_sets, unit_label, units_of_part
from ..tasks import download_task, format_prompt, load_task

log = logging.getLogger(__name__)

def run_download(task: str, out_path) -> None:
    n = download_task(task, out_path)
    log.info("stored %d problems of %s in %s", n, task, out_path)


def run_prepare_task(task: str, source, n_problems, out_json) -> None:
    """Read the task once and keep its first ``n_problems`` (all when None): ``problems.json``,
    which every part and the merge read. (Problems whose reference answer math-verify cannot
    parse are dropped by the merge, so that nothing upstream of the GPU parts imports the
    scoring.)"""
    problems = load_task(task, source)[:n_problems]
    if len(problems) < 2:
        raise ValueError(f"perturbation.task {task!r}: {len(problems)} problem(s); at least 2 are needed")
    write_json(out_json, dict(task=task, problems=problems, n_problems=len(problems)),
               made_from=[source] if source else ())


def prompts_digest(prompts: list[list[int]]) -> str:
    """Digest of the token ids of every prompt: every part of a model must have answered the
    same prompts (a chat template that inserts the date would not)."""
    return stable_hash(prompts)


def run_part(task_json, heads_path, out_json, spec: dict, cfg: dict, part: int, n_parts: int,
             device: str = "auto", code: str | None = None) -> None:
    """Answer every problem under each unit of this part: one row per (unit, problem) with the
    generated text and its token count (scored by the merge, on a CPU). ``code``: the rule's
    code hash, recorded so that the merge refuses parts made by other code."""
    import torch

    from ..extract import resolve_device
    from ..hooks import model_shape
    from ..models import load_model, load_tokenizer
    from ..perturb import (
        HeadPerturbation,
        build_prompts,
        greedy_answers,
        head_weight_slices,
        heads_of,
        uses_chat_template,
    )

    problems = read_json(task_json)["problems"]
    sets, labels = read_head_sets(heads_path, cfg)
    units = units_of_part(plan_units(cfg["alpha"], cfg["n_random_sets"], cfg["n_repeats"]), part, n_parts)
    # the prompts before the model: a tokenizer without the chat template asked for fails in seconds
    tokenizer = load_tokenizer(spec)
    prompts, stop_ids = build_prompts(tokenizer, [format_prompt(cfg["prompt_template"], p["problem"])
                                                  for p in problems], cfg["chat_template"])
    chat = uses_chat_template(tokenizer, cfg["chat_template"])
    log.info("%d prompts (%s), %d to %d tokens; extra stop tokens %s", len(prompts),
             "in the chat template" if chat else "raw text", min(map(len, prompts)), max(map(len, prompts)),
             stop_ids)
    device = resolve_device(device)
    model = load_model(spec, device=device)
    shape = model_shape(model)
    if shape.n_total_heads != len(labels):
        raise CorruptOutputError(f"{heads_path}: {len(labels)} heads, but the model has "
                                 f"{shape.n_total_heads}; delete it and rerun")
    perturbation = HeadPerturbation(head_weight_slices(model, shape))
    rows = []
    for unit in units:
        start = time.perf_counter()
        if unit["condition"] != "baseline":
            heads = heads_of(sets[unit["condition"]][unit["set"]], shape.n_heads)
            perturbation.apply(heads, unit["alpha"], noise_seed(cfg["seed"], unit["condition"], unit["set"],
                                                                unit["alpha"], unit["repeat"]))
        try:
            texts, counts = greedy_answers(model, tokenizer, prompts, cfg["max_new_tokens"], cfg["batch_size"],
                                           device, stop_ids)
        finally:
            perturbation.restore()
        rows += [dict(problem_id=p["id"], **unit, n_tokens=n, output=text)
                 for p, n, text in zip(problems, counts, texts)]
        log.info("%s: %d problems, %d tokens (%d cut at max_new_tokens), %.1f s", unit_label(unit),
                 len(problems), sum(counts), sum(n >= cfg["max_new_tokens"] for n in counts),
                 time.perf_counter() - start)
    if device.startswith("cuda"):
        log.info("peak GPU memory %.2f GB", torch.cuda.max_memory_allocated() / 1e9)
    write_json(out_json, made_from=[task_json, heads_path], obj=dict(
        settings={k: cfg[k] for k in PLAN_KEYS}, part=part, n_parts=n_parts, model=spec.get("name"),
        spec={k: spec.get(k) for k in SPEC_KEYS}, prompts_digest=prompts_digest(prompts),
        chat_template_used=chat, stop_ids=stop_ids, code=code, units=[unit_label(u) for u in units], rows=rows))


__all__ = ["prompts_digest", "run_download", "run_part", "run_prepare_task"]

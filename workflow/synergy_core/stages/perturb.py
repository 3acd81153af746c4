"""Perturbation stage (the paper's Fig 4b): task accuracy with noise on head sets.

Rules (``workflow/rules/perturb.smk``): ``download_datasets`` (login node) -> ``prepare_task``
(the problems, once per run) -> ``perturbation_part`` (GPU jobs, each a share of the units of
work of one model, :func:`perturb.plan_units`) -> ``perturbation_merge`` (every unit answered
every problem exactly once, all parts from the same ranking, task and settings) ->
``perturbation_stats`` (:mod:`..perturbation_stats`).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..io import CorruptOutputError, read_json, read_table, write_json
from ..perturbation_plan import PLAN_KEYS, head_sets, noise_seed, plan_units, unit_label, units_of_part
from ..tasks import download_task, format_prompt, load_task, parse_reference, prepare_task, score_answer

log = logging.getLogger(__name__)


def run_download(task: str, out_path) -> None:
    n = download_task(task, out_path)
    log.info("stored %d problems of %s in %s", n, task, out_path)


def run_prepare_task(task: str, data_dir: str, n_problems, out_json, source=None) -> None:
    """Read the task, keep the first ``n_problems`` with a parsable reference answer (dropped
    ones are counted by id), write ``problems.json``."""
    problems, unparsable = prepare_task(load_task(task, data_dir), n_problems)
    if unparsable:
        log.warning("%d problems dropped: math-verify cannot parse their reference answer (%s)",
                    len(unparsable), ", ".join(unparsable[:10]) + (" ..." if len(unparsable) > 10 else ""))
    if len(problems) < 2:
        raise ValueError(f"perturbation.task {task!r}: {len(problems)} problem(s) with a parsable "
                         "answer; at least 2 are needed")
    write_json(out_json, dict(task=task, problems=problems, n_problems=len(problems),
                              unparsable_ids=unparsable, n_unparsable=len(unparsable)),
               made_from=[source] if source else ())


def read_head_sets(heads_path, cfg: dict) -> tuple[dict, list[str]]:
    """The head sets (flat indices, :func:`perturbation_plan.head_sets`) from a ranking, and
    the head labels."""
    table = read_table(heads_path, ("head_label", "syn_red"))
    sets = head_sets(table.syn_red.to_numpy(), cfg["core_fraction"], cfg["n_random_sets"], cfg["seed"])
    return sets, list(table["head_label"])


def run_part(task_json, heads_path, out_json, spec: dict, cfg: dict, part: int, n_parts: int,
             device: str = "auto") -> None:
    """Answer every problem under each unit of this part; one row per (unit, problem)."""
    import torch

    from ..extract import resolve_device
    from ..hooks import model_shape
    from ..models import load_model, load_tokenizer
    from ..perturb import HeadPerturbation, build_prompts, greedy_answers, head_weight_slices, heads_of

    task = read_json(task_json)
    sets, labels = read_head_sets(heads_path, cfg)
    units = units_of_part(plan_units(cfg["alpha"], cfg["n_random_sets"], cfg["n_repeats"]), part, n_parts)
    device = resolve_device(device)
    model = load_model(spec, device=device)
    tokenizer = load_tokenizer(spec)
    shape = model_shape(model)
    if shape.n_total_heads != len(labels):
        raise CorruptOutputError(f"{heads_path}: {len(labels)} heads, but the model has "
                                 f"{shape.n_total_heads}; delete it and rerun")
    problems = task["problems"]
    prompts = build_prompts(tokenizer, [format_prompt(cfg["prompt_template"], p["problem"]) for p in problems],
                            cfg["chat_template"])
    references = [parse_reference(p["answer"]) for p in problems]
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
                                           device)
        finally:
            perturbation.restore()
        scored = [score_answer(ref, text) for ref, text in zip(references, texts)]
        rows += [dict(problem_id=p["id"], **unit, correct=int(ok), answer=answer, n_tokens=n, output=text)
                 for p, (ok, answer), n, text in zip(problems, scored, counts, texts)]
        log.info("%s: accuracy %.3f over %d problems, %d tokens, %.1f s", unit_label(unit),
                 np.mean([ok for ok, _ in scored]), len(problems), sum(counts), time.perf_counter() - start)
    if device.startswith("cuda"):
        log.info("peak GPU memory %.2f GB", torch.cuda.max_memory_allocated() / 1e9)
    write_json(out_json, made_from=[task_json, heads_path], obj=dict(
        settings={k: cfg[k] for k in PLAN_KEYS}, part=part, n_parts=n_parts, model=spec.get("name"),
        units=[unit_label(u) for u in units], rows=rows))


__all__ = ["PLAN_KEYS", "run_download", "run_part", "run_prepare_task"]

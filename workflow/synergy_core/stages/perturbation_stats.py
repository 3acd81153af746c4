"""Perturbation stage, CPU side (no torch): the merge with its scoring, and the statistics.

* ``perturbation_merge``: checks that every unit of work (:func:`..perturbation_plan.plan_units`)
  answered every problem exactly once, from the same ranking, task, settings, weights, prompts
  and code; drops the problems whose reference answer math-verify cannot parse (every answer to
  them would score 0), scores every answer (:mod:`..scoring`) and writes ``problems.tsv``,
  ``scoring.json`` (the counts) and ``head_sets.json``. Nothing upstream of the GPU parts
  imports this module or :mod:`..scoring`, so a change to them reruns no GPU job;
* ``perturbation_stats``: accuracy with intervals and the tests of :mod:`..perturbation_stats`.
"""

from __future__ import annotations

import logging

import pandas as pd

from ..io import CorruptOutputError, read_json, read_table, write_json, write_table
from ..perturbation_plan import PLAN_KEYS, SPEC_KEYS, check_part, plan_units, read_head_sets, unit_label
from ..scoring import parse_reference, score_answer, usable_problems

log = logging.getLogger(__name__)

#: Columns of the merged per-problem table ``problems.tsv``.
PROBLEM_COLUMNS = ["problem_id", "condition", "set", "alpha", "repeat", "correct", "answer", "n_tokens",
                   "scoring_error"]
#: Text columns of ``problems.tsv``, read as written (ids such as "01" or "NA" stay themselves).
TEXT_COLUMNS = ("problem_id", "answer")


def merge_parts(part_paths, task_json, heads_path, problems_out, sets_out, cfg: dict,
                spec: dict, part_code: str | None = None, scoring_out=None) -> pd.DataFrame:
    """Gather and score the parts into ``problems.tsv`` (:data:`PROBLEM_COLUMNS`), write the
    scoring counts into ``scoring_out`` (when given) and the head sets into ``head_sets.json``,
    refusing a missing, repeated, foreign or stale part.

    Each part is read through the verified chain (a part made from another ranking or task is
    refused by :mod:`..io`); its settings and weights must equal this run's, its index must be
    one of ``0..n_parts-1`` exactly once, every part must have answered the same prompts, and
    together the parts must cover every unit with every problem exactly once. With
    ``part_code`` (the part rule's code hash) each part must have been made by that code."""
    problems = read_json(task_json)["problems"]
    problem_ids = [p["id"] for p in problems]
    n_parts = len(part_paths)
    settings, spec = {k: cfg[k] for k in PLAN_KEYS}, {k: spec.get(k) for k in SPEC_KEYS}
    seen, frames, digests = set(), [], set()
    for path in part_paths:
        part = read_json(path)
        check_part(path, part, settings, spec, n_parts, seen, part_code, "perturbation_part")
        digests.add(part.get("prompts_digest"))
        frames.append(pd.DataFrame(part["rows"], columns=["problem_id", "condition", "set", "alpha", "repeat",
                                                          "n_tokens", "output"]))
    if len(digests) > 1:
        raise CorruptOutputError(f"perturbation parts {', '.join(map(str, part_paths))}: answered different "
                                 "prompts (a chat template that changes between jobs?); rerun them")
    long = pd.concat(frames, ignore_index=True)
    labels = pd.Series([unit_label(u) for u in long[["condition", "set", "alpha", "repeat"]].to_dict("records")],
                       dtype=object)
    expected = {unit_label(u) for u in plan_units(cfg["alpha"], cfg["n_random_sets"], cfg["n_repeats"])}
    missing = sorted(expected - set(labels))
    if missing:
        raise CorruptOutputError(f"perturbation parts {', '.join(map(str, part_paths))}: {len(missing)} "
                                 f"units missing ({', '.join(missing[:5])}); rerun the missing parts")
    extra = sorted(set(labels) - expected)
    if extra:
        raise CorruptOutputError(f"perturbation parts: units not in this run's plan ({', '.join(extra[:5])})")
    for label, group in long.groupby(labels, sort=False):
        if len(group) != len(problem_ids) or set(group.problem_id) != set(problem_ids):
            raise CorruptOutputError(f"perturbation parts: unit {label} answered {len(group)} problems, "
                                     f"not each of the task's {len(problem_ids)} once")
    usable, unparsable = usable_problems(problems)
    if unparsable:
        log.warning("%d problems dropped: math-verify cannot parse their reference answer (%s)",
                    len(unparsable), ", ".join(unparsable[:10]) + (" ..." if len(unparsable) > 10 else ""))
    if len(usable) < 2:
        raise ValueError(f"{task_json}: {len(usable)} problem(s) with a reference answer math-verify can "
                         "parse; at least 2 are needed")
    long = long[long.problem_id.isin({p["id"] for p in usable})].copy()
    references = {p["id"]: parse_reference(p["answer"]) for p in usable}
    scored = [score_answer(references[pid], text) for pid, text in zip(long.problem_id, long.output)]
    long["correct"] = [int(ok) for ok, _, _ in scored]
    long["answer"] = [answer for _, answer, _ in scored]
    long["scoring_error"] = [int(err) for _, _, err in scored]
    n_errors = int(long.scoring_error.sum())
    if n_errors == len(long):
        raise RuntimeError("math-verify failed on every answer (is it installed and run in the main "
                           "thread?); refusing to report accuracy 0 everywhere")
    if n_errors:
        log.warning("%d of %d answers could not be scored by math-verify (counted as wrong; the "
                    "scoring_error column of problems.tsv marks them)", n_errors, len(long))
    long = long.sort_values(["alpha", "condition", "set", "repeat"], kind="stable")[PROBLEM_COLUMNS]
    made_from = [*part_paths, task_json, heads_path]
    write_table(problems_out, long.reset_index(drop=True), made_from)
    if scoring_out is not None:
        errors = long.groupby(["condition", "alpha"]).scoring_error.sum()
        write_json(scoring_out, made_from=made_from, obj=dict(
            n_problems=len(usable), n_answers=len(long), n_scoring_errors=n_errors,
            unparsable_reference_ids=unparsable, n_unparsable_references=len(unparsable),
            scoring_errors_by_condition=[dict(condition=c, alpha=float(a), n=int(n))
                                         for (c, a), n in errors.items()]))
    sets, head_labels = read_head_sets(heads_path, cfg)
    write_json(sets_out, made_from=[heads_path], obj=dict(
        core_fraction=cfg["core_fraction"], set_size=len(sets["synergistic"][0]),
        sets={c: [[head_labels[i] for i in s] for s in group] for c, group in sets.items()}))
    log.info("merged %d answers of %d units; %d scoring errors", len(long), len(expected), n_errors)
    return long


def run_stats(problems_path, accuracy_out, sets_out, tests_out, stats_cfg: dict) -> None:
    """Accuracy per condition and alpha with intervals, each head set's accuracy, and the
    set-rank and repeat-permutation tests (:func:`..perturbation_stats.perturbation_statistics`)."""
    from ..perturbation_stats import perturbation_statistics

    long = read_table(problems_path, tuple(PROBLEM_COLUMNS), text_columns=TEXT_COLUMNS)
    accuracy, sets, tests = perturbation_statistics(long, n_boot=stats_cfg["n_boot"], ci=stats_cfg["ci"],
                                                    seed=stats_cfg["seed"])
    for path, frame in ((accuracy_out, accuracy), (sets_out, sets), (tests_out, tests)):
        write_table(path, frame, [problems_path])
    log.info("accuracy:\n%s\ntests:\n%s", accuracy.to_string(index=False), tests.to_string(index=False))

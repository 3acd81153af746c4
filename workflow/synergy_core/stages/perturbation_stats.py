"""Perturbation stage, CPU side: the merge of the GPU parts and the statistics (no torch).

``perturbation_merge`` checks that every unit of work (:func:`..perturbation_plan.plan_units`)
answered every problem exactly once, from the same ranking, task and settings, and writes
``problems.tsv`` and ``head_sets.json``; ``perturbation_stats`` computes accuracy with intervals
and the tests of :mod:`..perturbation_stats`.
"""

from __future__ import annotations

import logging

import pandas as pd

from ..io import CorruptOutputError, read_json, read_table, write_json, write_table
from ..perturbation_plan import PLAN_KEYS, plan_units, unit_label
from .perturb import read_head_sets

log = logging.getLogger(__name__)

#: Columns of the merged per-problem table ``problems.tsv``.
PROBLEM_COLUMNS = ["problem_id", "condition", "set", "alpha", "repeat", "correct", "answer", "n_tokens"]


def merge_parts(part_paths, task_json, heads_path, problems_out, sets_out, cfg: dict) -> pd.DataFrame:
    """Gather the parts into ``problems.tsv`` (:data:`PROBLEM_COLUMNS`) and the head sets into
    ``head_sets.json``, refusing a missing, repeated, foreign or stale part.

    Each part is read through the verified chain (a part made from another ranking or task is
    refused by :mod:`..io`); its settings must equal this run's, its index must be one of
    ``0..n_parts-1`` exactly once, and together the parts must cover every unit of
    :func:`perturbation_plan.plan_units` with every problem exactly once."""
    problem_ids = [p["id"] for p in read_json(task_json)["problems"]]
    n_parts = len(part_paths)
    settings = {k: cfg[k] for k in PLAN_KEYS}
    seen_parts, frames = set(), []
    for path in part_paths:
        part = read_json(path)
        if part.get("settings") != settings or part.get("n_parts") != n_parts:
            raise CorruptOutputError(f"{path}: made with other settings ({part.get('settings')}, "
                                     f"{part.get('n_parts')} parts) than this run's ({settings}, {n_parts} "
                                     "parts); delete it and rerun")
        if part["part"] in seen_parts or not 0 <= part["part"] < n_parts:
            raise CorruptOutputError(f"{path}: part {part['part']} of {n_parts} is repeated or out of range")
        seen_parts.add(part["part"])
        frames.append(pd.DataFrame(part["rows"], columns=PROBLEM_COLUMNS + ["output"]))
    long = pd.concat(frames, ignore_index=True)
    expected = {unit_label(u) for u in plan_units(cfg["alpha"], cfg["n_random_sets"], cfg["n_repeats"])}
    found = long.apply(lambda r: unit_label(r), axis=1) if len(long) else pd.Series([], dtype=str)
    missing = sorted(expected - set(found))
    if missing:
        raise CorruptOutputError(f"perturbation parts {', '.join(map(str, part_paths))}: {len(missing)} "
                                 f"units missing ({', '.join(missing[:5])}); rerun the missing parts")
    extra = sorted(set(found) - expected)
    if extra:
        raise CorruptOutputError(f"perturbation parts: units not in this run's plan ({', '.join(extra[:5])})")
    for label, group in long.groupby(found, sort=False):
        if len(group) != len(problem_ids) or set(group.problem_id) != set(problem_ids):
            raise CorruptOutputError(f"perturbation parts: unit {label} answered {len(group)} problems, "
                                     f"not each of the task's {len(problem_ids)} once")
    long = long.sort_values(["alpha", "condition", "set", "repeat"], kind="stable")[PROBLEM_COLUMNS]
    made_from = [*part_paths, task_json, heads_path]
    write_table(problems_out, long.reset_index(drop=True), made_from)
    sets, labels = read_head_sets(heads_path, cfg)
    write_json(sets_out, made_from=[heads_path], obj=dict(
        core_fraction=cfg["core_fraction"], set_size=len(sets["synergistic"][0]),
        sets={c: [[labels[i] for i in s] for s in group] for c, group in sets.items()}))
    return long


def run_stats(problems_path, accuracy_out, sets_out, tests_out, stats_cfg: dict) -> None:
    """Accuracy per condition and alpha with intervals, each head set's accuracy, and the
    paired tests (:func:`..perturbation_stats.perturbation_statistics`)."""
    from ..perturbation_stats import perturbation_statistics

    long = read_table(problems_path, tuple(PROBLEM_COLUMNS))
    accuracy, sets, tests = perturbation_statistics(long, n_boot=stats_cfg["n_boot"], ci=stats_cfg["ci"],
                                                    seed=stats_cfg["seed"])
    for path, frame in ((accuracy_out, accuracy), (sets_out, sets), (tests_out, tests)):
        write_table(path, frame, [problems_path])
    log.info("accuracy:\n%s\ntests:\n%s", accuracy.to_string(index=False), tests.to_string(index=False))



"""Fine-tuning stage, CPU side (no torch): the training data, the merge with its scoring, and the
statistics.

* ``prepare_finetune_data``: the GRPO problems, the SFT worked solutions and the evaluation
  problems, read once (``data.json``); problems whose reference answer math-verify cannot parse
  are dropped and counted (they could never earn a reward or score);
* ``finetune_merge``: checks that every evaluation unit (:func:`..finetune_plan.plan_eval_units`)
  answered every problem exactly once, from the same ranking, data, settings, weights, prompts and
  code, and that every run of the training parts passed the frozen-weight check; scores every
  answer (:mod:`..scoring`) and writes ``problems.tsv``, ``accuracy.tsv`` (one row per
  checkpoint), ``training.tsv`` (the trainers' logged reward and loss per step) and ``runs.json``;
* ``finetune_stats``: best- and final-checkpoint accuracy per run and the two-sample tests of
  :mod:`..finetune_stats`.
"""

from __future__ import annotations

import logging

import pandas as pd

from ..finetune_plan import (
    EVAL_KEYS,
    SPEC_KEYS,
    TRAIN_KEYS,
    TRAIN_RECORD,
    eval_steps,
    plan_eval_units,
    plan_runs,
    run_label,
    unit_label,
)
from ..io import CorruptOutputError, read_json, read_table, write_json, write_table
from ..perturbation_plan import check_part
from ..scoring import parse_reference, score_answer, usable_problems
from ..tasks import load_sft, load_task

log = logging.getLogger(__name__)

#: Columns of the merged per-problem table ``problems.tsv``.
PROBLEM_COLUMNS = ["method", "region", "seed", "step", "problem_id", "correct", "answer", "n_tokens",
                   "scoring_error"]
TEXT_COLUMNS = ("method", "region", "problem_id", "answer")
#: Columns of ``accuracy.tsv``: one row per evaluated checkpoint (the base model: method "base").
ACCURACY_COLUMNS = ["method", "region", "seed", "step", "accuracy", "n_correct", "n_problems",
                    "n_scoring_errors", "mean_tokens"]
#: Columns of ``training.tsv``: the trainers' log, one row per run and logged step.
TRAINING_COLUMNS = ["method", "region", "seed", "step", "loss", "reward", "reward_std", "learning_rate",
                    "grad_norm"]


def _usable(problems: list[dict], what: str) -> tuple[list[dict], list[str]]:
    usable, unparsable = usable_problems(problems)
    if unparsable:
        log.warning("%s: %d problems dropped, math-verify cannot parse their reference answer (%s)", what,
                    len(unparsable), ", ".join(unparsable[:10]) + (" ..." if len(unparsable) > 10 else ""))
    if len(usable) < 2:
        raise ValueError(f"{what}: {len(usable)} problem(s) with a reference answer math-verify can parse; "
                         "at least 2 are needed")
    return usable, unparsable


def run_prepare_data(cfg: dict, sources: dict, out_json) -> None:
    """Read the three data sets once: ``data.json`` with ``grpo`` (training problems, the first
    ``n_train_problems``), ``sft`` (worked solutions, the first ``n_sft_examples``) and ``eval``
    (the first ``n_eval_problems``), and the counts of what was dropped. ``sources``: the file of
    each of ``train_task``, ``sft_data`` and ``eval_task`` (None for a built-in one)."""
    grpo, grpo_dropped = _usable(load_task(cfg["train_task"], sources["train_task"])[:cfg["n_train_problems"]],
                                 f"finetune.train_task {cfg['train_task']}")
    evaluation, eval_dropped = _usable(load_task(cfg["eval_task"], sources["eval_task"])[:cfg["n_eval_problems"]],
                                       f"finetune.eval_task {cfg['eval_task']}")
    sft = load_sft(cfg["sft_data"], sources["sft_data"])[:cfg["n_sft_examples"]]
    overlap = {p["problem"] for p in grpo} & {p["problem"] for p in evaluation}
    if overlap:
        log.warning("%d evaluation problems are also GRPO training problems (the built-in demo task has "
                    "only 36; MATH train and MATH-500 are disjoint)", len(overlap))
    write_json(out_json, made_from=[s for s in sources.values() if s], obj=dict(
        grpo=grpo, sft=sft, eval=evaluation, n_grpo=len(grpo), n_sft=len(sft), n_eval=len(evaluation),
        dropped_grpo=grpo_dropped, dropped_eval=eval_dropped, n_eval_in_train=len(overlap)))


def _training_records(train_dirs, cfg: dict, spec: dict, code) -> tuple[list[dict], pd.DataFrame]:
    """Every run's record from the training parts, checked: each run once, frozen weights intact."""
    settings = {k: cfg[k] for k in TRAIN_KEYS}
    seen, records = set(), {}
    for path in train_dirs:
        part = read_json(f"{path}/{TRAIN_RECORD}")
        check_part(path, part, settings, spec, len(train_dirs), seen, code, "finetune_train")
        for rec in part["runs"]:
            if rec["label"] in records:
                raise CorruptOutputError(f"{path}: run {rec['label']} also in another training part")
            if rec["n_trainable_changed"] == 0:
                raise CorruptOutputError(f"{path}: run {rec['label']} changed no trainable element; its "
                                         "training did nothing (learning rate 0?)")
            records[rec["label"]] = rec
    expected = [run_label(r) for r in plan_runs(cfg["methods"], cfg["n_seeds"])]
    missing = [label for label in expected if label not in records]
    if missing:
        raise CorruptOutputError(f"training parts {', '.join(map(str, train_dirs))}: runs missing "
                                 f"({', '.join(missing[:5])}); rerun their training part")
    rows = [dict(**records[label]["run"], **{k: h.get(k, float("nan")) for k in TRAINING_COLUMNS[3:]})
            for label in expected for h in records[label]["history"] if "step" in h and "loss" in h]
    return [records[label] for label in expected], pd.DataFrame(rows, columns=TRAINING_COLUMNS)


def merge(eval_parts, train_dirs, data_json, out: dict, cfg: dict, spec: dict,
          eval_code: str | None = None, train_code: str | None = None) -> pd.DataFrame:
    """Gather, check and score the evaluation parts; ``out`` names the outputs ``problems``,
    ``accuracy``, ``training`` and ``runs`` (see the module docstring). Refuses a missing,
    repeated, foreign or stale part, a run missing from the training parts, and a unit that did
    not answer every problem once."""
    problems = read_json(data_json)["eval"]
    problem_ids = {p["id"] for p in problems}
    spec = {k: spec.get(k) for k in SPEC_KEYS}
    runs, training = _training_records(train_dirs, cfg, spec, train_code)
    settings = {k: cfg[k] for k in TRAIN_KEYS + EVAL_KEYS}
    seen, frames, digests = set(), [], set()
    columns = ["problem_id", "method", "region", "seed", "step", "n_tokens", "output"]
    for path in eval_parts:
        part = read_json(path)
        check_part(path, part, settings, spec, len(eval_parts), seen, eval_code, "finetune_eval")
        digests.add(part.get("prompts_digest"))
        frames.append(pd.DataFrame(part["rows"], columns=columns))
    if len(digests) > 1:
        raise CorruptOutputError(f"evaluation parts {', '.join(map(str, eval_parts))}: answered different prompts")
    long = pd.concat(frames, ignore_index=True)
    labels = pd.Series([unit_label(u) for u in long[["method", "region", "seed", "step"]].to_dict("records")],
                       dtype=object)
    units = plan_eval_units(plan_runs(cfg["methods"], cfg["n_seeds"]),
                            eval_steps(cfg["max_steps"], cfg["eval_from"], cfg["eval_every"]))
    expected = {unit_label(u) for u in units}
    missing, extra = sorted(expected - set(labels)), sorted(set(labels) - expected)
    if missing or extra:
        raise CorruptOutputError(f"evaluation parts: {len(missing)} checkpoints missing ({', '.join(missing[:5])}), "
                                 f"{len(extra)} not in this run's plan ({', '.join(extra[:5])}); rerun them")
    for label, group in long.groupby(labels, sort=False):
        if len(group) != len(problem_ids) or set(group.problem_id) != problem_ids:
            raise CorruptOutputError(f"evaluation parts: checkpoint {label} answered {len(group)} problems, "
                                     f"not each of the {len(problem_ids)} once")
    references = {p["id"]: parse_reference(p["answer"]) for p in problems}
    scored = [score_answer(references[pid], text) for pid, text in zip(long.problem_id, long.output)]
    long["correct"] = [int(ok) for ok, _, _ in scored]
    long["answer"] = [answer for _, answer, _ in scored]
    long["scoring_error"] = [int(err) for _, _, err in scored]
    if long.scoring_error.sum() == len(long):
        raise RuntimeError("math-verify failed on every answer; refusing to report accuracy 0 everywhere")
    long = long.sort_values(["method", "region", "seed", "step"], kind="stable")[PROBLEM_COLUMNS].reset_index(drop=True)
    accuracy = (long.groupby(["method", "region", "seed", "step"], sort=False)
                .agg(accuracy=("correct", "mean"), n_correct=("correct", "sum"), n_problems=("correct", "size"),
                     n_scoring_errors=("scoring_error", "sum"), mean_tokens=("n_tokens", "mean"))
                .reset_index()[ACCURACY_COLUMNS])
    made_from = [*eval_parts, data_json]
    write_table(out["problems"], long, made_from)
    write_table(out["accuracy"], accuracy, made_from)
    write_table(out["training"], training, made_from)
    write_json(out["runs"], made_from=made_from, obj=dict(runs=runs, n_problems=len(problems),
                                                          n_scoring_errors=int(long.scoring_error.sum())))
    log.info("merged %d answers of %d checkpoints; accuracy:\n%s", len(long), len(expected),
             accuracy.to_string(index=False))
    return accuracy


def run_stats(accuracy_path, out: dict, cfg: dict, stats_cfg: dict) -> None:
    """Best- and final-checkpoint accuracy per run, group summaries, the two-sample tests and the
    RL-vs-SFT contrast (:func:`..finetune_stats.finetune_statistics`)."""
    from ..finetune_stats import finetune_statistics

    accuracy = read_table(accuracy_path, tuple(ACCURACY_COLUMNS), text_columns=("method", "region"))
    tables = finetune_statistics(accuracy, best_from_step=cfg["eval_from"], ci=stats_cfg["ci"])
    for name, path in out.items():
        write_table(path, tables[name], [accuracy_path])
    log.info("tests:\n%s", tables["tests"].to_string(index=False))

"""The runs, regions and evaluation units of the fine-tuning stage (the paper's Fig 5), with no
torch: the GPU jobs, the CPU merge and the configuration check all import it.

A *run* is one (method, region, seed): the model fine-tuned with ``method`` ("grpo" or "sft")
while only the heads of ``region`` learn. A *region* is a set of ``k = floor(region_fraction x
heads)`` heads (:func:`regions`): the ``k`` most synergistic (highest ``syn_red``), the ``k``
most redundant, or ``k`` heads drawn at random, a new draw for every seed, so the random
condition averages over regions as well as over training noise. Every region has the same size,
so every run trains the same number of parameters.

Runs of different regions with the same seed share the order of the training data and the
sampling seed; their outcomes may be positively correlated, which makes the unpaired two-sample
test of :mod:`.finetune_stats` conservative, never liberal.

An *evaluation unit* is one checkpoint: the base model (``base``, step 0, evaluated once) or a
run at one of the evaluation steps (:func:`eval_steps`). Units are dealt round-robin over the
``n_eval_parts`` evaluation jobs; runs over the ``n_train_parts`` training jobs.
"""

from __future__ import annotations

import numpy as np

from .perturbation_plan import ranked_heads

METHODS = ("grpo", "sft")
REGIONS = ("synergistic", "redundant", "random")
#: What identifies a model's weights (compared by the evaluation jobs and the merge).
SPEC_KEYS = ("hf_id", "revision", "init", "seed", "dtype", "local_path")
#: The settings every training job, evaluation job and the merge share (they change the numbers).
TRAIN_KEYS = ("methods", "region_fraction", "kv_heads", "n_seeds", "seed", "train_task", "sft_data",
              "n_train_problems", "n_sft_examples", "prompt_template", "chat_template", "max_steps",
              "eval_from", "eval_every", "grpo", "sft", "precision")
#: The settings one run's training depends on (with its method's section and training data): they
#: name its resumable scratch directory, so changing the other method, the number of seeds or
#: the evaluation never retrains a finished run.
RUN_KEYS = ("region_fraction", "kv_heads", "seed", "prompt_template", "chat_template", "max_steps", "eval_from",
            "eval_every", "precision")
METHOD_DATA_KEYS = {"grpo": ("train_task", "n_train_problems"), "sft": ("sft_data", "n_sft_examples")}
EVAL_KEYS = ("eval_task", "n_eval_problems", "eval_max_new_tokens", "eval_batch_size")
#: The record every training part writes beside its runs' checkpoints.
TRAIN_RECORD = "record.json"
#: How a shared key/value head of grouped-query attention is treated (``kv_heads``).
KV_CHOICES = ("none", "group")


def regions(syn_red: np.ndarray, fraction: float, seed: int, run_seed: int) -> dict[str, np.ndarray]:
    """The three regions of one run seed, as sorted flat head indices (``layer * n_heads + head``).

    Heads without a PhiID value (NaN ``syn_red``) are in no region. Ties in ``syn_red`` are broken
    in a seeded random order (``default_rng([seed, 4])``, the perturbation stage's), not by head
    index. The random region of run seed ``s`` is drawn from ``default_rng([seed, 5, s])``."""
    order, k = ranked_heads(syn_red, fraction, seed, "finetune.region_fraction", "regions")
    ranked = np.sort(order)
    return {"synergistic": np.sort(order[:k]), "redundant": np.sort(order[-k:]),
            "random": np.sort(np.random.default_rng([seed, 5, run_seed]).choice(ranked, k, replace=False))}


def plan_runs(methods, n_seeds: int) -> list[dict]:
    """Every run of one model, method-major: ``{"method", "region", "seed"}``."""
    return [dict(method=m, region=r, seed=s) for m in methods for s in range(n_seeds) for r in REGIONS]


def run_label(run: dict) -> str:
    return f"{run['method']}-{run['region']}-s{run['seed']}"


def eval_steps(max_steps: int, eval_from: int, eval_every: int) -> list[int]:
    """The training steps whose checkpoint is evaluated: ``eval_from``, ``eval_from +
    eval_every``, ... up to ``max_steps``, which is always included (the final checkpoint)."""
    steps = list(range(eval_from, max_steps + 1, eval_every)) if eval_from >= 1 else []
    if not steps or steps[-1] != max_steps:
        steps.append(max_steps)
    return steps


def config_eval_steps(cfg: dict) -> list[int]:
    """The evaluated steps of a ``finetune`` config section (:func:`eval_steps`)."""
    return eval_steps(cfg["max_steps"], cfg["eval_from"], cfg["eval_every"])


def checkpoint_path(part_dir, run: dict, step: int):
    """Where a training part stores a run's trainable elements at one evaluated step."""
    from pathlib import Path

    return Path(part_dir) / run_label(run) / f"step{step}.npz"


def region_heads(region, n_heads: int) -> list[tuple[int, int]]:
    """Flat head indices as ``(layer, head)`` pairs."""
    return [(int(i) // n_heads, int(i) % n_heads) for i in region]


def run_seed(seed: int, run: dict) -> int:
    """The training seed of a run: a function of the stage seed and the run seed only, so runs of
    every region with the same seed see the same data order and sampling seed."""
    return int(np.random.SeedSequence([seed, 6, run["seed"]]).generate_state(1, np.uint32)[0] >> 1)


def plan_eval_units(runs: list[dict], steps: list[int]) -> list[dict]:
    """The base model, then every run at every evaluation step: ``{"method", "region", "seed",
    "step"}`` (the base model is method "base", region "none", seed 0, step 0)."""
    units = [dict(method="base", region="none", seed=0, step=0)]
    return units + [dict(run, step=step) for run in runs for step in steps]


def unit_label(unit: dict) -> str:
    if unit["method"] == "base":
        return "base"
    return f"{run_label(unit)}/step{unit['step']}"


def share(items: list, part: int, n_parts: int) -> list:
    """Job ``part`` of ``n_parts`` takes every ``n_parts``-th item (similar work per job)."""
    return items[part::n_parts]


def read_regions(heads_path, cfg: dict, run_seed_value: int) -> tuple[dict, list[str]]:
    """The regions of one run seed from a ranking (:func:`regions`), and the head labels."""
    from .io import read_table

    table = read_table(heads_path, ("head_label", "syn_red"))
    return (regions(table.syn_red.to_numpy(), cfg["region_fraction"], cfg["seed"], run_seed_value),
            list(table["head_label"]))

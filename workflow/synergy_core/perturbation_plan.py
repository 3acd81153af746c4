"""The units of work of the perturbation stage and its head sets (no torch: the GPU parts, the
CPU merge and the configuration check all import it).

A *unit* is one (condition, set, alpha, repeat): the model with one noise draw on one head set
(or the unperturbed baseline), answering every problem of the task once.
"""

from __future__ import annotations

import numpy as np

from .head_counts import perturbation_set_size
from .io import CorruptOutputError, read_table

CONDITIONS = ("baseline", "synergistic", "redundant", "random")
_CONDITION_CODE = {c: i for i, c in enumerate(CONDITIONS)}
#: What identifies a model's weights in a part (compared by the merge).
SPEC_KEYS = ("hf_id", "revision", "init", "seed", "dtype", "local_path")
#: The settings every part must share with the merge (they change the numbers).
PLAN_KEYS = ("task", "n_problems", "prompt_template", "chat_template", "max_new_tokens", "batch_size",
             "core_fraction", "n_random_sets", "alpha", "n_repeats", "seed")


def ranked_heads(syn_red: np.ndarray, fraction: float, seed: int, key: str, what: str) -> tuple[np.ndarray, int]:
    """The ranked heads (finite ``syn_red``), highest first with ties in a seeded random order
    (``default_rng([seed, 4])``, not by head index, which would lean the cores towards early or
    late layers), and the size ``k = floor(fraction x heads)`` of a core; shared by the
    perturbation's head sets and the fine-tuning's regions. ``key``/``what`` name the setting
    and the sets in the error when ``k < 1`` or the two cores would overlap."""
    syn_red = np.asarray(syn_red, dtype=float)
    ranked = np.flatnonzero(np.isfinite(syn_red))
    k = perturbation_set_size(len(syn_red), fraction)
    if k < 1 or 2 * k > len(ranked):
        raise ValueError(f"{key} {fraction} of {len(syn_red)} heads ({len(ranked)} ranked) "
                         f"gives {what} of {k} heads; need 1 <= k and 2k <= ranked heads")
    tie_break = np.random.default_rng([seed, 4]).permutation(len(ranked))
    return ranked[np.lexsort((tie_break, -syn_red[ranked]))], k


def head_sets(syn_red: np.ndarray, fraction: float, n_random_sets: int, seed: int) -> dict:
    """The head sets of the stage, as sorted flat head indices (``layer * n_heads + head``), each of
    ``k = floor(fraction x heads)`` heads (:func:`head_counts.perturbation_set_size`).

    ``synergistic``: the ``k`` heads with the highest ``syn_red``; ``redundant``: the ``k``
    lowest (ties broken in a seeded random order, not by head index, which would lean the cores
    towards early or late layers); ``random``: ``n_random_sets`` sets of ``k`` heads drawn
    without replacement, set ``i`` from its own generator, ``default_rng([seed, 3, i])``. Heads
    whose ``syn_red`` is NaN (no PhiID value) are in no set; every set draws from the same
    ranked heads, so all have ``k``.
    """
    order, k = ranked_heads(syn_red, fraction, seed, "core_fraction", "sets")
    ranked = np.sort(order)
    sets = {"synergistic": [np.sort(order[:k])], "redundant": [np.sort(order[-k:])]}
    sets["random"] = [np.sort(np.random.default_rng([seed, 3, i]).choice(ranked, k, replace=False))
                      for i in range(n_random_sets)]
    return sets


def noise_seed(seed: int, condition: str, set_index: int, alpha: float, repeat: int) -> int:
    """The seed of one noise draw: a function of its labels only (alpha in millionths), so
    adding an alpha, a repeat or a set never changes the others' draws."""
    entropy = [seed, _CONDITION_CODE[condition], set_index, int(round(alpha * 1e6)), repeat]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def plan_units(alphas, n_random_sets: int, n_repeats: int) -> list[dict]:
    """Every unit of work of one model: the baseline, then per alpha each noised condition,
    set and repeat. A unit answers every problem once."""
    units = [dict(condition="baseline", set=0, alpha=0.0, repeat=0)]
    for alpha in alphas:
        for condition, n_sets in (("synergistic", 1), ("redundant", 1), ("random", n_random_sets)):
            units += [dict(condition=condition, set=s, alpha=float(alpha), repeat=r)
                      for s in range(n_sets) for r in range(n_repeats)]
    return units


def units_of_part(units: list[dict], part: int, n_parts: int) -> list[dict]:
    """The units job ``part`` of ``n_parts`` runs: every ``n_parts``-th, so each part gets a
    similar mix of conditions and alphas (and similar GPU time)."""
    return units[part::n_parts]


def unit_label(unit: dict) -> str:
    return f"{unit['condition']}/set{unit['set']}/alpha{unit['alpha']:g}/repeat{unit['repeat']}"


def read_head_sets(heads_path, cfg: dict) -> tuple[dict, list[str]]:
    """The head sets (flat indices, :func:`head_sets`) from a ranking, and the head labels."""
    table = read_table(heads_path, ("head_label", "syn_red"))
    sets = head_sets(table.syn_red.to_numpy(), cfg["core_fraction"], cfg["n_random_sets"], cfg["seed"])
    return sets, list(table["head_label"])


def check_part(path, part: dict, settings: dict, spec: dict, n_parts: int, seen: set, code, producer: str) -> None:
    """Refuse a part of a sharded GPU job (the perturbation's or the fine-tuning's) made with
    other settings, part count, weights or code (``code`` None: not checked) than this run's, or
    whose index is repeated (``seen``, updated) or out of range. ``producer``: the rule that
    made it, named in the message."""
    if part.get("settings") != settings or part.get("n_parts") != n_parts:
        raise CorruptOutputError(f"{path}: made with other settings ({part.get('settings')}, "
                                 f"{part.get('n_parts')} parts) than this run's ({settings}, {n_parts} "
                                 "parts); delete it and rerun")
    if part.get("spec") != spec:
        raise CorruptOutputError(f"{path}: made with other weights ({part.get('spec')}) than this "
                                 f"model's ({spec}); delete it and rerun")
    if code is not None and part.get("code") != code:
        raise CorruptOutputError(f"{path}: made by other code than this checkout's {producer} (e.g. kept by "
                                 "--touch after a code change); delete it and rerun")
    if part.get("part") in seen or not 0 <= part.get("part", -1) < n_parts:
        raise CorruptOutputError(f"{path}: part {part.get('part')} of {n_parts} is repeated or out of range")
    seen.add(part["part"])

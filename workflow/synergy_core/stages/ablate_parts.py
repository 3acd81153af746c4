"""Ablation stage, sharded (``ablation.n_parts`` > 1): the GPU parts and their CPU merge.

Rules (``workflow/rules/ablate.smk``): ``ablate_part`` (GPU jobs, part ``p`` evaluates the
``p``-th contiguous range of the model's groups of masks,
:func:`..ablation_plan.units_of_part`) -> ``ablate_merge`` (no torch) -> the same
``kl_long.tsv``, ``summary.tsv`` and ``auc.tsv`` as the single job ``ablate_heads``
(:func:`.ablate.run_ablation`), byte for byte: every forward pass of a part is one the single job
runs (:mod:`..ablation_plan`), and the tables record the same inputs (activations and ranking;
each part is verified when merged), so nothing downstream can tell which path made them.
"""

from __future__ import annotations

import logging

import numpy as np

from ..ablation_plan import mask_units, part_rows, units_of_part
from ..io import CorruptOutputError, arrays_digest, check_made_from, load_arrays, save_arrays
from ..perturbation_plan import SPEC_KEYS, check_part
from .ablate import evaluate_plan, read_plan, write_ablation

log = logging.getLogger(__name__)


def _units(plan: list[dict], cfg: dict) -> list[tuple[int, int]]:
    return mask_units([len(group["masks"]) for group in plan], cfg["mask_group"])


def _settings(cfg: dict, compute: dict | None) -> dict:
    """What every part must share with the merge: the ablation settings and the compute ones."""
    return dict(cfg, compute=compute)


def _masks_digests(plan: list[dict]) -> list[str]:
    """Digest of each prompt group's masks: every part and the merge must have planned the same."""
    return [arrays_digest({"masks": group["masks"]}) for group in plan]


def run_ablation_part(acts_path, heads_path, out_path, spec: dict, cfg: dict, part: int, n_parts: int,
                      device: str = "auto", code: str | None = None, compute: dict | None = None) -> None:
    """Evaluate part ``part`` of ``n_parts`` of one model's ablation: for each prompt group the
    KL ``[covered masks, group prompts]`` (``kl_<g>``) and the masks' indices
    (``mask_index_<g>``), with the settings, weights, part, units and ``code`` (the rule's code
    hash) that the merge checks; ``compute`` as in :func:`.ablate.evaluate_plan`, a setting too.
    A part without units (more parts than groups of masks) loads no model and covers nothing."""
    arrays, n_total_heads, plan = read_plan(acts_path, heads_path, cfg)
    units = _units(plan, cfg)
    mine = units_of_part(units, part, n_parts)
    rows = [part_rows(len(group["masks"]), cfg["mask_group"], [u for g, u in mine if g == i])
            for i, group in enumerate(plan)]
    log.info("ablation part %d of %d of %s: %d of %d groups of %d masks (%s)", part, n_parts,
             spec.get("name"), len(mine), len(units), cfg["mask_group"],
             ", ".join(f"prompt group {plan[i]['half']}: masks {c[0]}-{c[-1]}"
                       for i, (_, c) in enumerate(rows) if len(c)) or "nothing")
    if not mine:
        log.warning("part %d of %d has no masks to evaluate (%d groups of masks in all): it only "
                    "records that; use ablation.n_parts <= %d", part, n_parts, len(units), len(units))
        kls = [None] * len(plan)
    else:
        kls = evaluate_plan(arrays, plan, n_total_heads, heads_path, spec, cfg, device,
                            selections=[evaluated for evaluated, _ in rows], compute=compute)
    out = {}
    for i, ((_, covered), kl, group) in enumerate(zip(rows, kls, plan)):
        out[f"mask_index_{i}"] = covered
        out[f"kl_{i}"] = (np.empty((0, len(group["prompts"]))) if kl is None
                          else kl[len(kl) - len(covered):])
    provenance = dict(settings=_settings(cfg, compute), part=part, n_parts=n_parts, model=spec.get("name"),
                      spec={k: spec.get(k) for k in SPEC_KEYS}, code=code,
                      units=[list(u) for u in mine], masks_digests=_masks_digests(plan))
    save_arrays(out_path, provenance, made_from=[acts_path, heads_path], **out)


def merge_ablation_parts(part_paths, acts_path, heads_path, long_out, summary_out, auc_out, spec: dict,
                         cfg: dict, part_code: str | None = None, compute: dict | None = None) -> None:
    """Gather the parts into the single job's ``kl_long.tsv``, ``summary.tsv`` and ``auc.tsv``,
    refusing a missing, repeated, foreign or stale part.

    Each part is read through the verified chain and must have been made from this model's
    activations and ranking as they are now; its settings, part count, weights and (with
    ``part_code``, the part rule's code hash) code must be this run's (``compute``: the dtype,
    TF32 and GPUs, a setting too)
    (:func:`..perturbation_plan.check_part`), its index one of ``0..n_parts-1`` exactly once, its
    units the ones its index gets, and together the parts must cover every mask of every prompt
    group exactly once."""
    arrays, n_total_heads, plan = read_plan(acts_path, heads_path, cfg)
    n_parts = len(part_paths)
    units = _units(plan, cfg)
    digests = _masks_digests(plan)
    settings, weights = _settings(cfg, compute), {k: spec.get(k) for k in SPEC_KEYS}
    kls = [np.full((len(g["masks"]), len(g["prompts"])), np.nan) for g in plan]
    covered = [np.zeros(len(g["masks"]), dtype=np.int64) for g in plan]
    seen: set = set()
    for path in part_paths:
        part_arrays, part = load_arrays(path)
        check_made_from(path, part, acts_path)
        check_made_from(path, part, heads_path)
        check_part(path, part, settings, weights, n_parts, seen, part_code, "ablate_part")
        expected = [list(u) for u in units_of_part(units, part["part"], n_parts)]
        if part.get("units") != expected or part.get("masks_digests") != digests:
            raise CorruptOutputError(f"{path}: covers other masks than part {part['part']} of {n_parts} of this "
                                     "run's plan; delete it and rerun")
        for i, group in enumerate(plan):
            index, kl = part_arrays.get(f"mask_index_{i}"), part_arrays.get(f"kl_{i}")
            if (index is None or kl is None or kl.shape != (len(index), len(group["prompts"]))
                    or not np.all((index >= 0) & (index < len(group["masks"])))):
                raise CorruptOutputError(f"{path}: its KL of prompt group {group['half']} do not fit this "
                                         "run's plan; delete it and rerun")
            covered[i][index] += 1
            kls[i][index] = kl
    for i, group in enumerate(plan):
        if np.any(covered[i] != 1):
            missing, repeated = np.flatnonzero(covered[i] == 0), np.flatnonzero(covered[i] > 1)
            raise CorruptOutputError(f"ablation parts {', '.join(map(str, part_paths))}: prompt group "
                                     f"{group['half']}: {len(missing)} masks missing, {len(repeated)} covered "
                                     "twice; rerun the parts")
    log.info("merged %d ablation parts of %s: %d groups of %d masks", n_parts, spec.get("name"),
             len(units), cfg["mask_group"])
    # the record names the activations and the ranking only, as the single job's does: the
    # tables are the same bytes whichever path made them, and the parts were verified above
    write_ablation(plan, kls, arrays, n_total_heads, [acts_path, heads_path], long_out, summary_out,
                   auc_out)


__all__ = ["merge_ablation_parts", "run_ablation_part"]

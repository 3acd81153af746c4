"""Ablation statistics stage: each ranked order's ablation curve against the random orders.

Its own module (not stages/stats.py) so that the rule's code hash covers only the ablation
curve code: editing the profile statistics or the graph analysis does not rerun it.
"""

from __future__ import annotations

import math

import numpy as np

from ..ablation_curves import ablation_auc_stats
from ..io import read_table, write_json, write_table

LONG_REQUIRED = ("order", "seed", "fraction_removed", "prompt", "kl")


def _number(value):
    """JSON-ready number: ints stay ints, NaN/inf become None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def ablation_statistics(long_path, out_tsv, out_json, cfg: dict) -> None:
    """Each ranked order's ablation AUC against the random orders: rank p-values, ratio to the
    median random AUC with an interval over (prompt resample, random order) pairs, the AUCs with
    bootstrap CIs, and the fraction of random orders beaten (``ablation_auc_stats``).

    ``cfg``: ``n_boot``, ``seed``, ``ci``. ``out_tsv``: one row per quantity, numbers only;
    ``out_json``: the same rows under ``quantities`` plus the test's settings.
    """
    long = read_table(long_path, LONG_REQUIRED)
    res = ablation_auc_stats(long, cfg["n_boot"], cfg["seed"], cfg["ci"])
    summary = res["summary"]
    write_table(out_tsv, summary, [long_path])
    quantities = {row["quantity"]: {k: _number(v) for k, v in row.items() if k != "quantity"}
                  for row in summary.to_dict("records")}
    levels = res["ratio_levels"]
    write_json(out_json, made_from=[long_path], obj=dict(
        quantities=quantities, frac_random_beaten=_number(res["frac_random_beaten"]),
        n_random=int(res["n_random"]), n_prompts=int(res["n_prompts"]),
        n_nonfinite_kl=int(res["n_nonfinite_kl"]), n_prompts_excluded=int(res["n_prompts_excluded"]),
        prompts_excluded=[str(p) for p in res["prompts_excluded"]], n_boot=int(res["n_boot"]),
        ci=res["ci"], seed=res["seed"], grid_fractions=[float(f) for f in res["grid_fractions"]],
        ratio_levels=None if levels is None else [float(x) for x in levels],
        cross_validated=bool(res["cross_validated"]),
        note=("p: one-sided rank p-value, ranked order more damaging than random, "
              "(1 + #random >= ranked) / (1 + n_random); ratio interval over pairs (prompt resample, "
              "random order), calibrated by simulation (tests/calib_ablation.py)")))

"""Summary stage: the verdict table, one row per model, one number (or word) per cell.

Outputs (rule ``summary``):

* ``summary.tsv``: every interval is two columns (``<x>_ci_low``, ``<x>_ci_high``), every p-value
  one column (``<x>_p`` or ``<x>_p_<test>``) with its floor beside it (``<p>_floor``: the
  smallest value that test can give, its resolution), counts as integers. **Precision**: every
  non-integer number is written with 6 significant digits (``%.6g``), counts as integers, a
  missing or non-finite value as an empty cell.
* ``summary.json``: the same table, ``{"columns": {name: meaning}, "rows": [{name: value}]}``,
  numbers at full precision (float64, shortest round-trip form), a missing value as ``null``.
* ``summary.html``: the same table for the report (3 significant digits), the verdict table
  first, every column with its meaning (:mod:`synergy_core.report_tables`).
* per model, HTML renderings of ``stats/profile_scores.tsv``, ``stats/graphs.tsv``,
  ``ablation/auc_ci.tsv`` and ``perturbation/accuracy.tsv`` and ``tests.tsv`` with their column
  explanations (:func:`write_model_tables`).

:data:`COLUMN_DOCS` is the one owner of the columns' meanings: the JSON's ``columns``, the HTML's
explanations and README "Reading the summary" (:func:`readme_table`, checked by
``tests/test_summary.py``) all come from it. The verdict columns apply :data:`VERDICTS` at
:data:`ALPHA`.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pandas as pd

from .. import report_tables
from ..io import CorruptOutputError, read_json, read_table, write_json, write_table, write_text

log = logging.getLogger(__name__)

#: Level of every verdict.
ALPHA = 0.05
#: Significant digits of non-integer numbers in summary.tsv (the JSON keeps full precision).
TSV_DIGITS = 6
VERDICT_VALUES = ("supported", "not supported", "inconclusive")
QUANTITY_PREFIX = {"syn_red": "", "synergy": "synergy_rank_", "redundancy": "redundancy_rank_"}
GRAPH_METRICS = ("global_efficiency", "modularity")

#: One claim per verdict column: the p-value column that decides it (its floor is
#: ``<p>_floor``), the estimate it tests (shown beside the verdict in the report), the claim, and
#: what an empty cell means.
VERDICTS = {
    "verdict_inverted_u": dict(
        p="mid_minus_outer_p_layer_perm", estimate="mid_minus_outer",
        claim="the layer profile of syn_red is an inverted U over depth (synergistic middle "
              "layers; for a random-init twin the paper expects `not supported`)",
        empty=None),
    "verdict_ablation": dict(
        p="ratio_synergistic_random_p", estimate="ratio_synergistic_random",
        claim="removing the most synergistic heads first damages the model more than removing "
              "heads in random orders",
        empty="the model is not ablated (`ablation.models`)"),
    "verdict_perturbation": dict(
        p="perturbation_diff_synergistic_vs_random_p",
        estimate="perturbation_diff_synergistic_vs_random",
        claim="perturbing the synergistic core costs more task accuracy than perturbing random "
              "head sets of the same size (at `perturbation_alpha`)",
        empty="the model is not perturbed (`perturbation.models`)"),
    "verdict_finetune": dict(
        p="finetune_grpo_diff_synergistic_vs_random_p_greater",
        estimate="finetune_grpo_diff_synergistic_vs_random",
        claim="fine-tuning only the synergistic heads with RL (GRPO) gains more task accuracy than "
              "fine-tuning a random region of the same size (at the `finetune_selection` "
              "checkpoint)",
        empty="the model is not fine-tuned with GRPO (`finetune.models`, `finetune.methods`)"),
}


def _verdict_meaning(name: str) -> str:
    v = VERDICTS[name]
    text = (f"`supported` if `{v['p']}` <= {ALPHA} and its floor `{v['p']}_floor` <= {ALPHA}; "
            f"`inconclusive` if that floor is above {ALPHA} (the test cannot reach {ALPHA}) or "
            f"`{v['p']}` is missing; else `not supported`. Claim: {v['claim']}.")
    if v["empty"]:
        text += f" Empty: {v['empty']}."
    return text


#: What a placeholder in a :data:`COLUMN_DOCS` name stands for (a regular expression).
PLACEHOLDERS = {
    "<score>": r"(?:synergy_rank_|redundancy_rank_)?(?:mid_minus_outer|quad_coef)",
    "<variant>": r"(?:thresholded|weighted)",
    "<network>": r"(?:synergy|redundancy)",
    "<metric>": r"(?:global_efficiency|modularity)",
    "<order>": r"(?:synergistic|redundant)",
    "<kind>": r"(?:random|first)",
    "<condition>": r"(?:baseline|synergistic|redundant|random)",
    "<comparison>": r"(?:synergistic_vs_random|synergistic_vs_redundant|redundant_vs_random)",
    "<core>": r"(?:synergistic|redundant)",
    "<method>": r"(?:grpo|sft)",
    "<region>": r"(?:synergistic|redundant|random)",
    "<x>": r"(?P<x>.+)",        # any documented column (generic entries, resolved last)
    "<p>": r"(?P<p>.+)",        # any documented p-value column
}
#: Sections of the table, in column order (the HTML groups rows by them; columns no entry
#: documents would come last, under "other").
SECTIONS = {
    "identity": "Model",
    "verdicts": "Verdicts",
    "diagnostics": "Size and diagnostics",
    "inverted_u": "Inverted U (layer profile)",
    "graphs": "Graph analysis",
    "ablation": "Ablation",
    "perturbation": "Perturbation (task accuracy, Fig 4b)",
    "finetune": "Fine-tuning one region of heads (Fig 5)",
    "comparisons": "Paired comparisons",
}
_LAYER_NULL = "whole layers exchangeable over depth"
_GRAPH_NET = ("graph_<variant>_<network>_<metric>")
_GRAPH_DIFF = ("graph_<variant>_synergy_minus_redundancy_<metric>")
_SET_NULL = ("the core is one more random head set: the head sets' accuracies exchangeable "
             "(exact under that exchangeability)")
_REPEAT_NULL = ("the noise draws exchangeable between the two cores (exact under that "
                "exchangeability)")
_FT_NULL = "the runs' accuracies exchangeable between the two regions (exact under that exchangeability)"
_FT_CALIB = ("tests/calib_finetune.py; the unit is the run: problems are shared by every run, so "
             "they are not independent replicates of the comparison")
_PERT_CALIB = ("tests/calib_perturbation.py; problem-level tests are not used: the noise draws "
               "and head sets are shared by all problems, so problems are not independent "
               "replicates of the comparison")


def _doc(section, kind, meaning, null="", calibration="", floor=""):
    return dict(section=section, kind=kind, meaning=meaning, null=null, calibration=calibration,
                floor=floor)


#: Every column of the summary: name (with placeholders) -> ``section``, ``kind`` (``str``,
#: ``int``, ``float``, ``p``, ``verdict``), ``meaning``, the ``null`` of its test and its measured
#: ``calibration`` (README "Calibration"), and for p-values how its ``floor`` arises. Entries
#: whose name holds ``<x>`` or ``<p>`` apply to any documented column ``x`` / p-value ``p``.
COLUMN_DOCS = {
    "model": _doc("identity", "str", "the model's name in the config (an entry with `revisions` "
                  "becomes one model per checkpoint, `<entry>-<revision>`)"),
    "family": _doc("identity", "str", "the config entry it comes from (`family`): the checkpoints "
                   "of one training progression share it"),
    "hf_id": _doc("identity", "str", "the Hugging Face model id (`builtin:...`: a built-in "
                  "offline model)"),
    "revision": _doc("identity", "str", "the checkpoint (hub revision); empty: the default branch"),
    "init": _doc("identity", "str", "`pretrained` (the checkpoint's weights) or `random` (the "
                 "same architecture, freshly initialised)"),
    "random_twin": _doc("identity", "str", "on a trained model's row: its random-init twin (the "
                        "first `init: random` model with the same `hf_id`), the model its "
                        "`vs_random_*` columns compare with; empty when it has none"),
    "random_twin_of": _doc("identity", "str", "on a random-init twin's row: the family of the "
                           "trained models whose `random_twin` it is (families joined by `,` in "
                           "the rare case of several); empty on other rows"),
    "verdict_inverted_u": _doc("verdicts", "verdict", _verdict_meaning("verdict_inverted_u")),
    "verdict_ablation": _doc("verdicts", "verdict", _verdict_meaning("verdict_ablation")),
    "verdict_perturbation": _doc("verdicts", "verdict", _verdict_meaning("verdict_perturbation")),
    "verdict_finetune": _doc("verdicts", "verdict", _verdict_meaning("verdict_finetune")),
    "heads": _doc("diagnostics", "int", "attention heads analysed (all layers)"),
    "n_parameters": _doc("diagnostics", "int", "parameters of the model as the extraction loaded "
                         "it (the sum of `numel` over `model.parameters()`: embeddings and output "
                         "layer included, a tied weight once; a random-init twin has its trained "
                         "model's count), from the provenance of `activations.npz` (`model."
                         "n_parameters`) via `ranking/diagnostics.json`; the x axis of the scaling "
                         "figure. Empty for activations extracted before the count was recorded"),
    "layers": _doc("diagnostics", "int", "layers"),
    "prompts": _doc("diagnostics", "int", "prompts analysed"),
    "nan_cells": _doc("diagnostics", "int", "degenerate (pair, prompt) cells: PhiID undefined "
                      "there, skipped by the prompt mean"),
    "unranked_heads": _doc("diagnostics", "int", "heads with no valid score (every pair "
                           "degenerate)"),
    "synergy_redundancy_spearman": _doc("diagnostics", "float", "Spearman correlation of "
                                        "per-head synergy and redundancy: near 1, syn_red rests "
                                        "on a small residual"),
    "synergy_redundancy_pearson": _doc("diagnostics", "float", "the same, Pearson"),
    "<score>": _doc(
        "inverted_u", "float",
        "inverted-U score of the layer profile: `mid_minus_outer` = mean of the heads in the "
        "middle third of depth minus the outer thirds (> 0: synergistic middle), `quad_coef` = "
        "coefficient of depth^2 of a quadratic fit to the layer means (< 0: inverted U); of "
        "syn_red, or with the prefix `synergy_rank_` / `redundancy_rank_` of that rank alone. "
        "Its interval (`_ci_low`, `_ci_high`): the estimate -+ the 95% quantile of the "
        "layer-permutation null's absolute value, so it excludes 0 exactly when the two-sided "
        "permutation test rejects",
        _LAYER_NULL, "interval excludes 0 in 5.3% [3.1, 8.5] (mid_minus_outer) and 6.0% "
        "[3.6, 9.3] (quad_coef) of 300 null data sets"),
    "<score>_p_layer_perm": _doc(
        "inverted_u", "p", "the inverted-U test: one-sided p-value from permuting whole layers "
        "over depth (`mid_minus_outer`'s decides `verdict_inverted_u`)",
        _LAYER_NULL, "3.7-6.2% at alpha 0.05, every binomial interval contains 5%; power 95-100%",
        "1/(1 + `n_layer_perm`), and at least 1 / (the distinct values over layer arrangements: "
        "C(L, m) middle-layer sets for mid_minus_outer, L!/2 for quad_coef)"),
    "n_layer_perm": _doc("inverted_u", "int", "layer permutations behind every `_p_layer_perm`"),
    "<score>_p_surrogate": _doc(
        "inverted_u", "p", "does the profile need timing between heads? one-sided p-value "
        "against trimmed-shift surrogates; empty with `stats.n_surrogates: 0`",
        "heads independent, each keeping its autocorrelation",
        "5.0% (4,000 data sets); rank quantities about 2% (ties)", "1/(1 + `n_surrogates`)"),
    "n_surrogates": _doc("inverted_u", "int", "surrogates behind every `_p_surrogate`"),
    "split_half_reliability": _doc("inverted_u", "float", "Spearman-Brown reliability of the "
                                   "syn_red ranking between random prompt halves"),
    "split_half_r": _doc("inverted_u", "float", "the mean half-sample Spearman r behind it"),
    _GRAPH_NET: _doc(
        "graphs", "float", "graph metric of the synergy or redundancy network (variant "
        "`thresholded`: the top `stats.graph_fraction` of pairs as binary edges, `weighted`: pair "
        "values as edge weights); `global_efficiency` (integration) or Louvain `modularity`"),
    f"{_GRAPH_NET}_null_low": _doc("graphs", "float", "lower end of the null band: the metric "
                                   "with the pair values shuffled among the pairs (not a "
                                   "confidence interval)"),
    f"{_GRAPH_NET}_null_high": _doc("graphs", "float", "upper end of that null band"),
    f"{_GRAPH_NET}_p_null": _doc(
        "graphs", "p", "two-sided permutation p-value against the null band: more or less "
        "integrated than a random arrangement of the same values",
        "pair values exchangeable among pairs", "3.4-6.6% per row, pooled 4.7% (see Calibration)",
        "1/(1 + the null draws, `stats.n_null_graph`)"),
    _GRAPH_DIFF: _doc("graphs", "float", "the synergy network's metric minus the redundancy "
                      "network's, paired by prompt (its bootstrap t interval stays in graphs.tsv, "
                      "descriptive: up to 7% false positives)"),
    f"{_GRAPH_DIFF}_p": _doc(
        "graphs", "p", "two-sided exact sign-flip p-value of the difference over K random "
        "folds of prompts", "each prompt's synergy and redundancy vectors exchangeable",
        "2.7-7.0% per row, pooled 4.25-5.0% (see Calibration)", "2/2^K, K = `_n_folds`"),
    f"{_GRAPH_DIFF}_n_folds": _doc("graphs", "int", "K: the folds with a finite difference "
                                   "behind `_p`"),
    "ratio_<order>_random": _doc(
        "ablation", "float", "ablation area under the KL curve of the synergistic-first "
        "(redundant-first) order over the median area of the random orders (> 1: more damaging "
        "than random); its interval covers (prompt resample, random order) pairs",
        "the ranked order is one more random order", "interval excludes 1 in 1.8-3.9%"),
    "ratio_<order>_random_p": _doc(
        "ablation", "p", "rank p-value, one-sided \"more damaging than random\": "
        "(1 + #random areas >= ranked) / (1 + `ablation_n_random`)",
        "the ranked order is one more random order", "4.2-5.4%; power 97-100%",
        "1/(1 + `ablation_n_random`)"),
    "ablation_n_random": _doc("ablation", "int", "random orders behind the rank test"),
    "frac_random_beaten": _doc("ablation", "float", "share of the random orders whose area is "
                               "below the synergistic-first area"),
    "ablation_n_nonfinite_kl": _doc("ablation", "int", "KL values that were inf or NaN"),
    "ablation_n_prompts_excluded": _doc("ablation", "int", "prompts left out of every ablation "
                                        "curve because of them (all orders stay paired on the "
                                        "same prompts)"),
    "perturbation_alpha": _doc(
        "perturbation", "float", "the noise scale of every `perturbation_*` column "
        "(`perturbation.verdict_alpha`): Gaussian noise N(0, (alpha x std(W))^2), std(W) of the "
        "whole weight matrix, added to the query-projection rows and output-projection columns "
        "of each head of the set; greedy decoding, answers scored with math-verify"),
    "perturbation_accuracy_<condition>": _doc(
        "perturbation", "float", "task accuracy (share of problems answered correctly) of the "
        "unperturbed model (`baseline`), with the noise on the synergistic core (`synergistic`: "
        "the top `perturbation.core_fraction` of heads by syn_red), the redundant core "
        "(`redundant`: the bottom fraction) or random head sets of the same size (`random`: "
        "the mean over the sets); noised conditions averaged over the noise draws. Its interval "
        "(level `stats.ci`) as perturbation/accuracy.tsv gives it"),
    "perturbation_diff_<comparison>": _doc(
        "perturbation", "float", "accuracy of the first condition minus the second's "
        "(`synergistic_vs_random`: synergistic core minus the random sets' mean; < 0: "
        "perturbing the first costs more accuracy); its interval as perturbation/tests.tsv "
        "gives it (descriptive; the p-value is the test)"),
    "perturbation_effect_<comparison>": _doc(
        "perturbation", "float", "standardised effect size of the comparison, of the kind "
        "`perturbation_effect_<comparison>_kind` names"),
    "perturbation_effect_<comparison>_kind": _doc(
        "perturbation", "str", "what `perturbation_effect_<comparison>` is (perturbation/"
        "tests.tsv `effect_size_kind`)"),
    "perturbation_diff_<core>_vs_random_p": _doc(
        "perturbation", "p", "set-rank p-value of the core against the random head sets, "
        "one-sided: `synergistic` lower accuracy than random (decides `verdict_perturbation`), "
        "`redundant` higher: (1 + #random sets at least as extreme) / (1 + "
        "`perturbation_n_random_sets`)", _SET_NULL, _PERT_CALIB,
        "1/(1 + `perturbation_n_random_sets`) (19 sets reach 0.05)"),
    "perturbation_diff_synergistic_vs_redundant_p": _doc(
        "perturbation", "p", "permutation p-value of the synergistic against the redundant "
        "core over their noise draws (each draw's accuracy over all problems), one-sided: "
        "synergistic lower; exact over all C(2n, n) splits of the 2n draws, n = "
        "`perturbation_n_repeats`", _REPEAT_NULL, _PERT_CALIB,
        "1/C(2n, n), n = `perturbation_n_repeats` (3 draws reach 0.05, 4 reach 0.014)"),
    "perturbation_n_problems": _doc("perturbation", "int", "problems every accuracy is "
                                    "measured on (`perturbation.task`, `n_problems`)"),
    "perturbation_n_random_sets": _doc("perturbation", "int", "random head sets behind "
                                       "`perturbation_accuracy_random` and the set-rank tests"),
    "perturbation_n_repeats": _doc("perturbation", "int", "noise draws per head set and alpha"),
    "finetune_selection": _doc(
        "finetune", "str", "the checkpoint of every run behind the `finetune_*` columns "
        "(`finetune.verdict_selection`): `final` (the last step) or `best` (the best evaluated "
        "step from `finetune.eval_from`, chosen on the evaluation set itself as the paper does, so "
        "optimistic)"),
    "finetune_base_accuracy": _doc(
        "finetune", "float", "accuracy on the evaluation task of the model before fine-tuning"),
    "finetune_<method>_accuracy_<region>": _doc(
        "finetune", "float", "mean accuracy over the runs (seeds) of the method that trained only "
        "that region of heads (synergistic: the top `finetune.region_fraction` by syn_red; "
        "redundant: the bottom; random: a random region per seed); its interval a t interval "
        "over runs (finetune/groups.tsv)"),
    "finetune_<method>_diff_<comparison>": _doc(
        "finetune", "float", "mean accuracy of the first region's runs minus the second's "
        "(positive: training the first region gains more); its interval a Welch t interval "
        "(finetune/tests.tsv)", "", "tests/calib_finetune.py"),
    "finetune_<method>_g_<comparison>": _doc(
        "finetune", "float", "Hedges' g of the comparison (bias-corrected standardised "
        "difference over runs; the paper's effect size)"),
    "finetune_<method>_diff_<comparison>_p": _doc(
        "finetune", "p", "two-sided exact permutation p-value of the difference of means over "
        "runs", _FT_NULL, _FT_CALIB, "2/C(2n, n) for n runs per region (5 runs: 2/252 = 0.0079)"),
    "finetune_<method>_diff_<comparison>_p_greater": _doc(
        "finetune", "p", "one-sided exact permutation p-value (H1: the first region's runs more "
        "accurate; for GRPO synergistic_vs_random it decides `verdict_finetune`)", _FT_NULL,
        _FT_CALIB, "1/C(2n, n) for n runs per region (2 runs: 1/6, so the demo is inconclusive)"),
    "finetune_interaction_<comparison>": _doc(
        "finetune", "float", "the comparison's difference under GRPO minus under SFT (the paper: "
        "RL shows the synergistic advantage, SFT does not); its interval and p from a "
        "Welch-Satterthwaite t over the four groups of runs (finetune/interaction.tsv)"),
    "finetune_interaction_<comparison>_p": _doc(
        "finetune", "p", "two-sided Welch-Satterthwaite t p-value of the interaction",
        "no difference of the comparison between GRPO and SFT (approximate: t)", _FT_CALIB,
        "none (a t test has no floor; 0 here)"),
    "finetune_n_seeds": _doc("finetune", "int", "runs per (method, region)"),
    "finetune_n_problems": _doc("finetune", "int", "evaluation problems behind every accuracy"),
    "vs_<kind>_model": _doc("comparisons", "str", "the other model of a paired comparison: "
                            "`vs_random_*` this model minus its random-init twin, `vs_first_*` "
                            "this (final) checkpoint minus its family's first"),
    "vs_<kind>_<score>": _doc(
        "comparisons", "float", "the paired difference of the inverted-U score, this model "
        "minus `vs_<kind>_model` on the same prompts; its interval excludes 0 exactly when the "
        "label-swap test rejects", "the two models' per-prompt PhiID exchangeable",
        "interval 5.0% [2.8, 8.1]"),
    "vs_<kind>_<score>_p": _doc(
        "comparisons", "p", "two-sided label-swap permutation p-value (each prompt's two models "
        "swapped with probability 1/2)", "the two models' per-prompt PhiID exchangeable",
        "3.3% [1.6, 6.0]; power 82-85%", "1/(1 + `vs_<kind>_n_permutations`)"),
    "vs_<kind>_n_permutations": _doc("comparisons", "int", "label swaps behind `vs_<kind>_*_p`"),
    "<x>_ci_low": _doc("", "float", "lower end of the interval of `{x}` (level `stats.ci`, 95% "
                       "by default; how it is built: see `{x}`)"),
    "<x>_ci_high": _doc("", "float", "upper end of the interval of `{x}`"),
    "<p>_floor": _doc("", "float", "the resolution of the p-value `{p}`: {floor}, the smallest "
                      "value its test can give (for the layer permutation, which samples "
                      "arrangements at random, the smallest in expectation: a Monte Carlo p "
                      "scatters around it by about its standard error). A p near its floor "
                      "reads \"p <= floor\"; a verdict whose p has a floor above 0.05 is "
                      "`inconclusive`"),
}


def _compile(name: str) -> re.Pattern:
    rx = re.escape(name)
    for placeholder, sub in PLACEHOLDERS.items():
        rx = rx.replace(re.escape(placeholder), sub)
    return re.compile(rx + r"\Z")


_PATTERNS = {name: _compile(name) for name in COLUMN_DOCS}


def column_doc(column: str) -> dict | None:
    """The :data:`COLUMN_DOCS` entry that documents ``column`` (with ``name``: the entry's key,
    and its meaning filled in for the column), or None when no entry does. An entry for
    ``<x>_...`` applies only when ``x`` is documented itself, ``<p>_floor`` only when ``p`` is a
    p-value."""
    for name, rx in _PATTERNS.items():
        m = rx.match(column)
        if not m:
            continue
        groups = m.groupdict()
        base = column_doc(groups.get("x") or groups.get("p") or "") if groups else None
        if groups and (base is None or ("p" in groups and base["kind"] != "p")):
            continue
        doc = dict(COLUMN_DOCS[name], name=name)
        if base is not None:
            doc["section"] = base["section"]
            doc["meaning"] = doc["meaning"].format(x=groups.get("x"), p=groups.get("p"),
                                                   floor=base["floor"])
        return doc
    return None


def readme_table() -> str:
    """The table of README "Reading the summary", made from :data:`COLUMN_DOCS` (markdown)."""
    lines = ["| column | meaning | null of the test | calibration |", "|---|---|---|---|"]
    for name, d in COLUMN_DOCS.items():
        meaning = d["meaning"].replace("{x}", "<x>").replace("{p}", "<p>")
        meaning = meaning.replace("{floor}", "1/(1 + the draws behind it), see each p-value")
        if d["floor"]:
            meaning += f"; floor (`{name}_floor`): {d['floor']}"
        lines.append(f"| `{name}` | {meaning} | {d['null']} | {d['calibration']} |")
    return "\n".join(lines)


# --- building the rows ----------------------------------------------------------------------

def _verdict(p: float, floor: float) -> str:
    """``supported`` when ``p <= ALPHA``; ``inconclusive`` when the test cannot reach ``ALPHA``
    (its floor is above it) or p is missing; else ``not supported``."""
    if not np.isfinite(p) or not np.isfinite(floor) or floor > ALPHA:
        return "inconclusive"
    return "supported" if p <= ALPHA else "not supported"


def _resolution(n) -> float:
    """1/(1 + n): the smallest p-value of a test with ``n`` random draws (NaN without any)."""
    return 1.0 / (1 + n) if n is not None and np.isfinite(n) and n > 0 else np.nan


def _profile_columns(row: dict, scores: pd.DataFrame, perm: dict, surrogate: dict,
                     n_layers: int) -> None:
    perm_res = _resolution(perm["n_perm"])
    # the distinct values of a score over arrangements of the layers: mid_minus_outer depends
    # only on the set of middle layers; quad_coef is unchanged when depth is reversed
    smallest = {"mid_minus_outer": 1.0 / max(perm["n_distinct_middle_sets"], 1),
                "quad_coef": min(1.0, 2 / math.factorial(max(n_layers, 1)))}
    for r in scores.itertuples():
        key = f"{QUANTITY_PREFIX[r.quantity]}{r.score}"
        row[key] = r.estimate
        row[f"{key}_ci_low"] = r.ci_low
        row[f"{key}_ci_high"] = r.ci_high
        row[f"{key}_p_layer_perm"] = r.p_layer_perm
        row[f"{key}_p_layer_perm_floor"] = max(perm_res, smallest[r.score])
        row[f"{key}_p_surrogate"] = r.p_surrogate
        row[f"{key}_p_surrogate_floor"] = _resolution(surrogate["n_surrogates"])
    row["n_layer_perm"] = perm["n_perm"]
    row["n_surrogates"] = surrogate["n_surrogates"]


def _graph_columns(row: dict, graphs: pd.DataFrame) -> None:
    for g in graphs[graphs.metric.isin(GRAPH_METRICS)].itertuples():
        key = f"graph_{g.variant}_{g.network}_{g.metric}"
        row[key] = g.estimate
        if g.network == "synergy_minus_redundancy":
            # the exact fold sign-flip p only: the bootstrap t interval of the difference was
            # measured at up to 7% false positives, so it stays in graphs.tsv (descriptive)
            row[f"{key}_p"] = g.p
            k = g.n_folds if np.isfinite(g.n_folds) else 0
            row[f"{key}_p_floor"] = 2.0 / 2 ** k if k > 0 else np.nan
            row[f"{key}_n_folds"] = g.n_folds
        else:
            row[f"{key}_null_low"], row[f"{key}_null_high"] = g.null_low, g.null_high
            row[f"{key}_p_null"] = g.p_null
            row[f"{key}_p_null_floor"] = _resolution(g.n_null)


def _ablation_columns(row: dict, tsv, json_path) -> None:
    abl = read_table(tsv, ("quantity", "estimate", "ci_low", "ci_high", "p", "n_random"))
    abl = abl.set_index("quantity")
    n_random = int(abl.loc["ratio_synergistic_random", "n_random"])
    for q in ("ratio_synergistic_random", "ratio_redundant_random"):
        row[q], row[f"{q}_ci_low"], row[f"{q}_ci_high"] = abl.loc[q, ["estimate", "ci_low", "ci_high"]]
        row[f"{q}_p"] = abl.loc[q, "p"]
        row[f"{q}_p_floor"] = _resolution(n_random)
    row["ablation_n_random"] = n_random
    abl_json = read_json(json_path)
    row["frac_random_beaten"] = abl_json["frac_random_beaten"]
    # non-finite KL values: their prompts are left out of every curve, counted here
    row["ablation_n_nonfinite_kl"] = abl_json["n_nonfinite_kl"]
    row["ablation_n_prompts_excluded"] = abl_json["n_prompts_excluded"]


PERTURBATION_CONDITIONS = ("baseline", "synergistic", "redundant", "random")
PERTURBATION_COMPARISONS = ("synergistic_vs_random", "synergistic_vs_redundant",
                            "redundant_vs_random")
_ACCURACY_COLUMNS = ("condition", "alpha", "accuracy", "ci_low", "ci_high", "n_problems", "n_sets",
                     "n_repeats")
_TESTS_COLUMNS = ("comparison", "alpha", "diff", "diff_ci_low", "diff_ci_high", "effect_size",
                  "effect_size_kind", "p", "p_floor")
_FT_GROUP_COLUMNS = ("method", "region", "selection", "n_runs", "mean", "ci_lo", "ci_hi")
_FT_TEST_COLUMNS = ("method", "selection", "comparison", "diff", "diff_lo", "diff_hi", "hedges_g", "p",
                    "p_floor", "p_one_sided", "p_one_sided_floor")
_FT_INTERACTION_COLUMNS = ("selection", "comparison", "contrast", "lo", "hi", "p")


def _at_alpha(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    return frame[np.isclose(frame.alpha.astype(float), alpha, rtol=1e-9, atol=1e-12)]


def _perturbation_columns(row: dict, accuracy_path, tests_path, alpha: float) -> None:
    """The perturbation columns at ``alpha`` (``perturbation.verdict_alpha``) from the model's
    ``perturbation/accuracy.tsv`` and ``tests.tsv``; a condition or comparison the tables lack
    (no random sets) stays empty, so its verdict is ``inconclusive``."""
    acc = read_table(accuracy_path, _ACCURACY_COLUMNS)
    tests = read_table(tests_path, _TESTS_COLUMNS)
    alpha = float(alpha)
    noised = _at_alpha(acc[acc.condition != "baseline"], alpha)
    if noised.empty:
        raise CorruptOutputError(
            f"{accuracy_path}: no rows at perturbation.verdict_alpha {alpha:g} (its alphas: "
            f"{sorted(set(acc.alpha.astype(float)))}); delete it and rerun perturbation_stats")
    row["perturbation_alpha"] = alpha
    by_condition = {c: part.iloc[0] for c, part in
                    [("baseline", acc[acc.condition == "baseline"])]
                    + [(c, noised[noised.condition == c]) for c in PERTURBATION_CONDITIONS[1:]]
                    if len(part)}
    for c in PERTURBATION_CONDITIONS:
        r = by_condition.get(c)
        key = f"perturbation_accuracy_{c}"
        row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = (
            (r.accuracy, r.ci_low, r.ci_high) if r is not None else (np.nan,) * 3)
    tests = _at_alpha(tests, alpha).set_index("comparison")
    for comparison in PERTURBATION_COMPARISONS:
        key = f"perturbation_diff_{comparison}"
        t = tests.loc[comparison] if comparison in tests.index else None
        if isinstance(t, pd.DataFrame):
            raise CorruptOutputError(f"{tests_path}: {comparison} twice at alpha {alpha:g}; "
                                     "delete it and rerun perturbation_stats")
        t = {} if t is None else t.to_dict()
        row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = (
            t.get("diff", np.nan), t.get("diff_ci_low", np.nan), t.get("diff_ci_high", np.nan))
        row[f"perturbation_effect_{comparison}"] = t.get("effect_size", np.nan)
        kind = t.get("effect_size_kind")
        row[f"perturbation_effect_{comparison}_kind"] = kind if isinstance(kind, str) else None
        row[f"{key}_p"], row[f"{key}_p_floor"] = t.get("p", np.nan), t.get("p_floor", np.nan)
    counts = {"perturbation_n_problems": ("baseline", "n_problems"),
              "perturbation_n_random_sets": ("random", "n_sets"),
              "perturbation_n_repeats": ("synergistic", "n_repeats")}
    for column, (c, field) in counts.items():
        r = by_condition.get(c)
        row[column] = r[field] if r is not None else (0 if c == "random" else np.nan)


FINETUNE_REGIONS = ("synergistic", "redundant", "random")


def _finetune_columns(row: dict, paths: dict, selection: str) -> None:
    """The fine-tuning columns at the ``selection`` checkpoint ("final" or "best") from the
    model's ``finetune/accuracy.tsv``, ``groups.tsv``, ``tests.tsv`` and ``interaction.tsv``; a
    method or comparison the tables lack stays empty (its verdict: ``inconclusive``)."""
    acc = read_table(paths["accuracy"], ("method", "step", "accuracy", "n_problems"),
                     text_columns=("method", "region"))
    groups = read_table(paths["groups"], _FT_GROUP_COLUMNS)
    tests = read_table(paths["tests"], _FT_TEST_COLUMNS)
    inter = read_table(paths["interaction"], _FT_INTERACTION_COLUMNS)
    row["finetune_selection"] = selection
    base = acc[acc.method == "base"]
    row["finetune_base_accuracy"] = float(base.accuracy.iloc[0]) if len(base) else np.nan
    row["finetune_n_problems"] = int(acc.n_problems.iloc[0]) if len(acc) else np.nan
    groups = groups[groups.selection == selection]
    tests = tests[tests.selection == selection]
    inter = inter[inter.selection == selection]
    row["finetune_n_seeds"] = int(groups.n_runs.max()) if len(groups) else np.nan
    for method in ("grpo", "sft"):
        for region in FINETUNE_REGIONS:
            g = groups[(groups.method == method) & (groups.region == region)]
            key = f"finetune_{method}_accuracy_{region}"
            row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = (
                (g["mean"].iloc[0], g.ci_lo.iloc[0], g.ci_hi.iloc[0]) if len(g) else (np.nan,) * 3)
        for comparison in PERTURBATION_COMPARISONS:
            t = tests[(tests.method == method) & (tests.comparison == comparison)]
            if len(t) > 1:
                raise CorruptOutputError(f"{paths['tests']}: {method} {comparison} twice; delete it and "
                                         "rerun finetune_stats")
            t = t.iloc[0].to_dict() if len(t) else {}
            key = f"finetune_{method}_diff_{comparison}"
            row[key] = t.get("diff", np.nan)
            row[f"{key}_ci_low"], row[f"{key}_ci_high"] = t.get("diff_lo", np.nan), t.get("diff_hi", np.nan)
            row[f"finetune_{method}_g_{comparison}"] = t.get("hedges_g", np.nan)
            row[f"{key}_p"], row[f"{key}_p_floor"] = t.get("p", np.nan), t.get("p_floor", np.nan)
            row[f"{key}_p_greater"] = t.get("p_one_sided", np.nan)
            row[f"{key}_p_greater_floor"] = t.get("p_one_sided_floor", np.nan)
    for comparison in PERTURBATION_COMPARISONS:
        t = inter[inter.comparison == comparison]
        t = t.iloc[0].to_dict() if len(t) else {}
        key = f"finetune_interaction_{comparison}"
        row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = (
            t.get("contrast", np.nan), t.get("lo", np.nan), t.get("hi", np.nan))
        row[f"{key}_p"], row[f"{key}_p_floor"] = t.get("p", np.nan), 0.0 if t else np.nan


def _comparison_columns(row: dict, kind: str, comp: dict) -> None:
    # vs_random: this model minus its random-init twin; vs_first: this (final) checkpoint minus
    # the family's first. Paired by prompt, label-swap permutation p-value.
    table = read_table(comp["path"], ("score", "difference", "ci_low", "ci_high", "p",
                                      "n_permutations"))
    row[f"vs_{kind}_model"] = comp["other"]
    n_perm = int(table.n_permutations.iloc[0])
    for r in table.itertuples():
        row[f"vs_{kind}_{r.score}"] = r.difference
        row[f"vs_{kind}_{r.score}_ci_low"] = r.ci_low
        row[f"vs_{kind}_{r.score}_ci_high"] = r.ci_high
        row[f"vs_{kind}_{r.score}_p"] = r.p
        row[f"vs_{kind}_{r.score}_p_floor"] = _resolution(n_perm)
    row[f"vs_{kind}_n_permutations"] = n_perm


def _twins(models: dict) -> tuple[dict, dict]:
    """``(twin of each trained model, families each twin is the twin of)`` from the models'
    ``random`` comparisons (config.paired_comparisons)."""
    twin = {name: m["comparisons"]["random"]["other"] for name, m in models.items()
            if "random" in m.get("comparisons", {})}
    twin_of: dict[str, list] = {}
    for name, t in twin.items():
        family = models[name]["spec"].get("family", name)
        if family not in twin_of.setdefault(t, []):
            twin_of[t].append(family)
    return twin, twin_of


def _row(name: str, m: dict, twin: dict, twin_of: dict) -> dict:
    spec = m["spec"]
    diag = read_json(m["diagnostics"])
    stats = read_json(m["stats"])
    scores = read_table(m["scores"], ("quantity", "score", "estimate", "ci_low", "ci_high",
                                      "p_layer_perm", "p_surrogate"))
    graphs = read_table(m["graphs"], ("network", "variant", "metric", "estimate"))
    row = dict(model=name, family=spec.get("family", name), hf_id=spec["hf_id"],
               revision=spec.get("revision") or "", init=spec.get("init") or "pretrained",
               random_twin=twin.get(name, ""), random_twin_of=",".join(twin_of.get(name, [])),
               verdict_inverted_u=None, verdict_ablation=None, verdict_perturbation=None,
               verdict_finetune=None,
               heads=diag["n_layers"] * diag["n_heads_per_layer"],
               n_parameters=(diag.get("model") or {}).get("n_parameters", np.nan),
               layers=diag["n_layers"],
               prompts=diag["n_prompts"], nan_cells=diag["nan_cells"],
               unranked_heads=diag["unranked_heads"],
               synergy_redundancy_spearman=diag["spearman"],
               synergy_redundancy_pearson=diag["pearson"])
    _profile_columns(row, scores, stats["layer_perm"], stats["surrogate"], diag["n_layers"])
    row["split_half_reliability"] = stats["split_half"]["reliability"]
    row["split_half_r"] = stats["split_half"]["half_sample_r"]
    _graph_columns(row, graphs)
    if m.get("ablation"):
        _ablation_columns(row, m["ablation"], m["ablation_json"])
    if m.get("perturbation_accuracy"):
        _perturbation_columns(row, m["perturbation_accuracy"], m["perturbation_tests"],
                              m["perturbation_alpha"])
    if m.get("finetune"):
        _finetune_columns(row, m["finetune"], m["finetune_selection"])
    for kind, comp in m.get("comparisons", {}).items():
        _comparison_columns(row, kind, comp)
    for column, v in VERDICTS.items():
        if v["p"] in row:
            row[column] = _verdict(row[v["p"]], row[f"{v['p']}_floor"])
    return row


_UNDOCUMENTED = _doc("other", "float", "(not documented)")


def _doc_of(column: str, values=None) -> dict:
    """:func:`column_doc`, or for a column no entry documents (tests/test_summary.py keeps there
    being none) a stand-in in a last section, typed by its values."""
    doc = column_doc(column)
    if doc is None:
        log.warning("summary column %s has no entry in COLUMN_DOCS", column)
        numeric = values is None or pd.api.types.is_numeric_dtype(values)
        doc = dict(_UNDOCUMENTED, name=column, kind="float" if numeric else "str")
    return doc


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns grouped by :data:`SECTIONS` (first appearance within each)."""
    sections = [*SECTIONS, "other"]
    docs = {c: _doc_of(c, frame[c]) for c in frame.columns}
    order = sorted(range(len(frame.columns)),
                   key=lambda i: (sections.index(docs[frame.columns[i]]["section"]), i))
    return frame[[frame.columns[i] for i in order]]


def summary_frame(models: dict) -> pd.DataFrame:
    """The verdict table at full precision, one row per model (see :func:`build_summary`)."""
    twin, twin_of = _twins(models)
    frame = pd.DataFrame([_row(name, m, twin, twin_of) for name, m in models.items()])
    return _ordered(frame)


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)) or \
        (isinstance(v, str) and v == "")


def _cell(v, kind: str):
    """A value as the JSON holds it: None when missing, int for counts, float, or str."""
    if _is_missing(v) or (not isinstance(v, str) and pd.isna(v)):
        return None
    if kind == "int":
        return int(round(float(v)))
    if kind in ("float", "p"):
        return float(v)
    return str(v)


def _tsv_text(v, kind: str) -> str:
    v = _cell(v, kind)
    if v is None:
        return ""
    if kind in ("float", "p"):
        return f"{v:.{TSV_DIGITS}g}"
    return str(v)


def build_summary(models: dict, out_path, json_path=None, html_path=None) -> pd.DataFrame:
    """The verdict table, one row per model: ``summary.tsv`` at ``out_path`` and, when given, the
    same table as JSON (``json_path``) and as an HTML page for the report (``html_path``).

    ``models`` maps a model name to a dict with its ``spec`` (``hf_id``, ``revision``, ``init``,
    ``family``) and the paths ``diagnostics``, ``scores``, ``stats``, ``graphs``, for ablated
    models ``ablation`` and ``ablation_json``, for perturbed models ``perturbation_accuracy``
    and ``perturbation_tests`` (``perturbation/accuracy.tsv``, ``tests.tsv``) with
    ``perturbation_alpha`` (``perturbation.verdict_alpha``), and ``comparisons``: ``{kind:
    {"other": model, "path": tsv}}`` for the paired comparisons this model is the first of
    (kind ``random`` names its random-init twin). Returns the table at full precision."""
    frame = summary_frame(models)
    docs = {c: _doc_of(c, frame[c]) for c in frame.columns}
    kinds = {c: d["kind"] for c, d in docs.items()}
    made_from = [m[k] for m in models.values()
                 for k in ("diagnostics", "stats", "scores", "graphs", "ablation", "ablation_json",
                           "perturbation_accuracy", "perturbation_tests") if m.get(k)]
    made_from += [path for m in models.values() for path in m.get("finetune", {}).values()]
    made_from += [c["path"] for m in models.values() for c in m.get("comparisons", {}).values()]
    text = pd.DataFrame({c: [_tsv_text(v, kinds[c]) for v in frame[c]] for c in frame.columns},
                        columns=frame.columns)
    write_table(out_path, text, made_from)
    if json_path is not None:
        rows = [{c: _cell(v, kinds[c]) for c, v in row.items()}
                for row in frame.to_dict(orient="records")]
        # JSON objects are written with sorted keys: "column_order" keeps the TSV's order
        write_json(json_path, {"columns": {c: d["meaning"] for c, d in docs.items()},
                               "column_order": list(frame.columns), "rows": rows}, made_from)
    if html_path is not None:
        write_text(html_path, report_tables.summary_page(frame, docs, SECTIONS, VERDICTS, ALPHA))
    return frame


#: The per-model tables rendered for the report: key -> (the ``models`` entry holding its path,
#: the columns it must have).
MODEL_TABLES = {
    "profile_scores": ("scores", ("quantity", "score", "estimate")),
    "graphs": ("graphs", ("network", "variant", "metric", "estimate")),
    "auc_ci": ("ablation", ("quantity", "estimate")),
    "perturbation_accuracy": ("perturbation_accuracy", _ACCURACY_COLUMNS),
    "perturbation_tests": ("perturbation_tests", _TESTS_COLUMNS),
    "finetune_tests": ("finetune_tests", _FT_TEST_COLUMNS),
}


def write_model_tables(models: dict, outputs: dict) -> None:
    """HTML renderings of each model's key tables, with their column explanations, for the
    report. ``outputs``: model -> {table key of :data:`MODEL_TABLES`: html path}; ``models`` as
    in :func:`build_summary`."""
    for name, tables in outputs.items():
        for key, html in tables.items():
            entry, required = MODEL_TABLES[key]
            path = models[name][entry]
            frame = read_table(path, required)
            write_text(html, report_tables.model_table_page(frame, key, name, path))

"""HTML renderings of the result tables for Snakemake's report, which shows a TSV only as a
download but embeds an HTML file.

Each page is self-contained (inline style, no script, no external resource), shows numbers with
:data:`DIGITS` significant digits (the TSV and JSON files keep more) and explains every column
next to the table. The summary's column meanings come from
:data:`synergy_core.stages.summary.COLUMN_DOCS`; the per-model tables' from
:data:`MODEL_TABLE_DOCS` here. Pure functions: strings in, a string out (the summary stage writes
the files).
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd

#: Significant digits of the numbers shown.
DIGITS = 3

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       font-size: 14px; color: #222; margin: 1em; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
p.note { color: #555; max-width: 60em; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; vertical-align: top; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.meaning { max-width: 34em; min-width: 18em; color: #333; }
tr.section th { background: #dde4ee; font-size: 1.05em; }
.sub { color: #666; font-size: 0.85em; }
td.verdict { font-weight: bold; text-align: center; white-space: nowrap; }
td.supported { background: #c8e6c9; color: #1b5e20; }
td.not-supported { background: #ffcdd2; color: #8e1c1c; }
td.inconclusive { background: #fff3c4; color: #6d5200; }
td.not-tested { background: #eee; color: #777; font-weight: normal; }
dl.legend { max-width: 62em; } dl.legend dt { font-weight: bold; margin-top: 0.4em; }
dl.legend dd { margin-left: 1.5em; color: #333; }
code { font-size: 0.95em; }
"""

MISSING = "–"


def _missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v == ""
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fmt(v, kind: str = "float", digits: int = DIGITS) -> str:
    """A cell as text: ``digits`` significant digits, positional between 1e-4 and 1e5 (so
    p-values read 0.0001, not 1e-04), integers for counts, :data:`MISSING` when missing."""
    if _missing(v):
        return MISSING
    if kind in ("str", "verdict") or isinstance(v, str):
        return str(v)
    if kind == "int":
        return str(int(round(float(v))))
    v = float(f"{float(v):.{digits}g}")
    a = abs(v)
    if a == 0:
        return "0"
    if 1e-4 <= a < 1e5:
        return f"{v:.{max(0, digits - 1 - math.floor(math.log10(a)))}f}"
    return f"{v:.{digits - 1}e}"


def prose(text: str) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")


def _verdict_cell(v) -> str:
    if _missing(v):
        return '<td class="verdict not-tested">not tested</td>'
    return f'<td class="verdict {str(v).replace(" ", "-")}">{html.escape(str(v))}</td>'


def _cell(v, kind: str) -> str:
    if kind == "verdict":
        return _verdict_cell(v)
    if kind in ("str",):
        return f"<td>{html.escape(fmt(v, 'str'))}</td>"
    return f'<td class="num">{fmt(v, kind)}</td>'


def _legend(items) -> str:
    """``items``: (name, meaning) pairs, as a definition list."""
    rows = "".join(f"<dt><code>{html.escape(n)}</code></dt><dd>{prose(m)}</dd>\n" for n, m in items)
    return f'<dl class="legend">\n{rows}</dl>'


# --- the summary ----------------------------------------------------------------------------

def _value(row, column, kind="float"):
    return fmt(row.get(column), kind)


def _with_interval(row, x) -> str:
    est = _value(row, x)
    lo, hi = row.get(f"{x}_ci_low"), row.get(f"{x}_ci_high")
    if est == MISSING or (_missing(lo) and _missing(hi)):
        return f'<td class="num">{est}</td>'
    return f'<td class="num">{est} <span class="sub">[{fmt(lo)}, {fmt(hi)}]</span></td>'


def _with_floor(row, p) -> str:
    val = _value(row, p)
    floor = row.get(f"{p}_floor")
    if val == MISSING or _missing(floor):
        return f'<td class="num">{val}</td>'
    return f'<td class="num">{val} <span class="sub">(floor {fmt(floor)})</span></td>'


def _model_cell(row) -> str:
    details = [row.get("family"), row.get("init"), row.get("revision")]
    sub = " · ".join(html.escape(str(d)) for d in details if not _missing(d))
    if not _missing(row.get("random_twin")):
        sub += f"<br>twin: {html.escape(str(row['random_twin']))}"
    if not _missing(row.get("random_twin_of")):
        sub += f"<br>twin of: {html.escape(str(row['random_twin_of']))}"
    return f'<td><b>{html.escape(str(row["model"]))}</b><br><span class="sub">{sub}</span></td>'


def _headline(frame: pd.DataFrame, docs: dict, verdicts: dict) -> str:
    """The verdict table: one row per model, each verdict with the estimate and p-value behind
    it (``verdicts``: column -> ``p``, ``estimate``), the difference to the random-init twin,
    the ranking's reliability and the synergy-redundancy correlation."""
    columns = []   # (header, cell function, documented columns)
    columns.append(("model", _model_cell, ["model", "family", "init", "revision", "random_twin",
                                           "random_twin_of"]))
    for verdict, v in verdicts.items():
        if verdict not in frame.columns:
            continue
        columns.append((verdict, lambda r, c=verdict: _verdict_cell(r.get(c)), [verdict]))
        x = v.get("estimate")
        if x in frame.columns:
            columns.append((f"{x} [interval]", lambda r, c=x: _with_interval(r, c), [x]))
        if v["p"] in frame.columns:
            columns.append((f"{v['p']} (floor)", lambda r, c=v["p"]: _with_floor(r, c),
                            [v["p"], f"{v['p']}_floor"]))
    for x, p in (("vs_random_mid_minus_outer", "vs_random_mid_minus_outer_p"),):
        if x in frame.columns:
            columns.append((f"{x} [interval]", lambda r, c=x: _with_interval(r, c), [x]))
            columns.append((f"{p} (floor)", lambda r, c=p: _with_floor(r, c), [p, f"{p}_floor"]))
    for x in ("split_half_reliability", "synergy_redundancy_spearman"):
        if x in frame.columns:
            columns.append((x, lambda r, c=x: f'<td class="num">{_value(r, c)}</td>', [x]))
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in columns)
    body = "".join("<tr>" + "".join(f(row) for _, f, _ in columns) + "</tr>\n"
                   for row in frame.to_dict(orient="records"))
    used = dict.fromkeys(c for _, _, cs in columns for c in cs if c in docs)
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}'
            f"</tbody></table></div>\n" + _legend((c, docs[c]["meaning"]) for c in used))


def _every_column(frame: pd.DataFrame, docs: dict, sections: dict) -> str:
    """The whole table transposed: one row per column, its meaning, one value per model."""
    models = [str(m) for m in frame["model"]]
    head = "<th>column</th><th>meaning</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows, section = [], None
    for c in frame.columns:
        d = docs[c]
        if d["section"] != section:
            section = d["section"]
            rows.append(f'<tr class="section"><th colspan="{2 + len(models)}">'
                        f"{html.escape(sections.get(section, 'Other'))}</th></tr>")
        cells = "".join(_cell(v, d["kind"]) for v in frame[c])
        rows.append(f'<tr><td><code>{html.escape(c)}</code></td><td class="meaning">'
                    f"{prose(d['meaning'])}</td>{cells}</tr>")
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>\n")


def summary_page(frame: pd.DataFrame, docs: dict, sections: dict, verdicts: dict,
                 alpha: float) -> str:
    """The summary for the report: the verdict table, then every column with its meaning.
    ``docs``: column -> its documentation (``meaning``, ``kind``, ``section``)."""
    body = (
        f'<p class="note">One row per model. Verdicts at alpha {alpha}: '
        f"<b>supported</b>, <b>not supported</b>, or <b>inconclusive</b> (the test cannot reach "
        f"{alpha}, or its p-value is missing); <i>not tested</i>: the claim was not tested on "
        f"this model. Numbers with {DIGITS} significant digits; intervals in brackets; the floor "
        "of a p-value is the smallest value its test can give. The same table: summary.tsv "
        "(6 significant digits, for pandas or R) and summary.json (full precision, with every "
        "column's meaning).</p>\n"
        "<h2>Verdicts</h2>\n" + _headline(frame, docs, verdicts)
        + "<h2>Every column</h2>\n" + _every_column(frame, docs, sections))
    return page("synergy-core: the verdict table (summary.tsv)", body)


# --- the per-model tables -------------------------------------------------------------------

_BOOT = "prompt bootstrap"
#: What each per-model table is, and what each of its columns means.
MODEL_TABLE_DOCS = {
    "profile_scores": dict(
        file="stats/profile_scores.tsv",
        intro="Inverted-U scores of the layer profile, of syn_red and of the synergy and "
              "redundancy ranks on their own, with the tests behind the summary's verdict "
              "(`p_layer_perm`) and the descriptive prompt-bootstrap spread.",
        columns={
            "quantity": "the per-head quantity: `syn_red` (normalised rank difference, synergy "
                        "rank minus redundancy rank; 1 = most synergistic), `synergy` (the "
                        "synergy rank alone), `redundancy` (the redundancy rank alone)",
            "score": "`mid_minus_outer`: mean of the heads in the middle third of depth minus "
                     "the outer thirds (> 0: synergistic middle); `quad_coef`: coefficient of "
                     "depth^2 of a quadratic fit to the layer means (< 0: inverted U)",
            "estimate": "the score on all prompts",
            "boot_ci_low": f"lower end of the {_BOOT} percentile interval (level `stats.ci`); "
                           "descriptive: without layer structure it excludes 0 in 5-8% of data "
                           "sets, so it is not a test",
            "boot_ci_high": f"upper end of the {_BOOT} percentile interval",
            "boot_mean": "mean of the bootstrap resamples (compare with `estimate` to see the "
                         "shrinkage of resampled ranks)",
            "boot_se": "standard deviation of the bootstrap resamples",
            "n_valid": "bootstrap resamples with a finite score",
            "ci_low": "the summary's interval: the estimate minus the 95% quantile of the "
                      "layer-permutation null's absolute value (excludes 0 exactly when the "
                      "two-sided permutation test rejects)",
            "ci_high": "the estimate plus that quantile",
            "p_layer_perm": "one-sided p-value from permuting whole layers over depth (null: "
                            "the quantity is unrelated to depth); syn_red's `mid_minus_outer` "
                            "decides the summary's `verdict_inverted_u`",
            "p_surrogate": "one-sided p-value against trimmed-shift surrogates (null: heads "
                           "independent, each keeping its own autocorrelation); empty with "
                           "`stats.n_surrogates: 0`",
        }),
    "graphs": dict(
        file="stats/graphs.tsv",
        intro="Graph analysis (paper Fig 3b-c) of the synergy and redundancy networks: global "
              "efficiency and Louvain modularity, each network against a null band, and their "
              "paired difference with an exact test.",
        columns={
            "network": "`synergy` (pairwise sts) or `redundancy` (rtr) network; "
                       "`synergy_minus_redundancy`: their paired difference",
            "variant": "`thresholded`: the top `stats.graph_fraction` of pairs as binary edges; "
                       "`weighted`: pair values as edge weights (as in the paper)",
            "metric": "`global_efficiency` (integration: mean inverse shortest path) or "
                      "`modularity` (Louvain: segregation into modules)",
            "estimate": "the metric on all prompts (difference rows: synergy minus redundancy)",
            "boot_mean": f"mean over {_BOOT} resamples (resampled graphs drift towards random "
                         "ones, so this is no interval)",
            "boot_se": f"standard deviation over {_BOOT} resamples",
            "ci_low": "difference rows: lower end of a bootstrap t interval, descriptive "
                      "(measured at up to 7% false positives)",
            "ci_high": "difference rows: upper end of that interval",
            "p": "difference rows: exact two-sided sign-flip p-value over K random folds of "
                 "prompts (smallest 2/2^K; null: each prompt's synergy and redundancy vectors "
                 "exchangeable)",
            "null_low": "network rows: lower end of the null band, the metric with the pair "
                        "values shuffled among the pairs (not a confidence interval)",
            "null_median": "network rows: median of that null",
            "null_high": "network rows: upper end of the null band",
            "p_null": "network rows: two-sided permutation p-value against that null (more or "
                      "less integrated than a random arrangement of the same values)",
            "n_boot": "bootstrap resamples",
            "n_null": "null draws (smallest `p_null`: 1/(1 + n_null))",
            "n_folds": "K: folds of prompts behind `p`",
        }),
    "auc_ci": dict(
        file="ablation/auc_ci.tsv",
        intro="Each ranked ablation order against the random orders: the areas under the KL "
              "curves, their ratios to the median random area, and the rank test behind the "
              "summary's `verdict_ablation`.",
        columns={
            "quantity": "`auc_<order>_first`: area under the order's KL curve (nats x fraction "
                        "of heads removed, on the order's full grid); `auc_random`: the median "
                        "random area; `ratio_<order>_random`: the order's area on the random "
                        "orders' grid over the median random area (> 1: more damaging than "
                        "random); `frac_random_beaten_<order>`: share of the random orders whose "
                        "area is below the order's",
            "estimate": "the value on all prompts",
            "ci_low": "lower end of the interval (level `stats.ci`): `auc_<order>_first` a "
                      "percentile bootstrap over prompts; `auc_random` where one random order's "
                      "area falls over (random order, prompt resample) pairs; ratios over the "
                      "same pairs, excluding 1 about as often as the two-sided rank test rejects",
            "ci_high": "upper end of that interval",
            "p": "ratio rows: rank p-value, one-sided \"more damaging than random\": "
                 "(1 + #random areas >= ranked) / (1 + n_random)",
            "p_less": "ratio rows: the other direction, \"less damaging than random\"",
            "n_random": "random orders (smallest `p`: 1/(1 + n_random))",
            "n_prompts": "prompts in every curve (prompts with a non-finite KL are left out of "
                         "all of them)",
            "n_grid": "removal counts on the curve's grid",
        }),
    "perturbation_accuracy": dict(
        file="perturbation/accuracy.tsv",
        intro="Task accuracy (paper Fig 4b) of the unperturbed model and with Gaussian noise "
              "N(0, (alpha x std(W))^2) on the query-projection rows and output-projection "
              "columns of the heads of a set: the synergistic core, the redundant core, and "
              "random head sets of the same size; greedy decoding, answers scored with "
              "math-verify.",
        columns={
            "condition": "`baseline` (no noise), `synergistic` (the top "
                         "`perturbation.core_fraction` of heads by syn_red), `redundant` (the "
                         "bottom fraction) or `random` (random head sets of the same size)",
            "alpha": "noise scale: the noise's standard deviation over the weight matrix's "
                     "(0 for the baseline)",
            "accuracy": "share of the problems answered correctly, averaged over the "
                        "condition's head sets and noise draws",
            "ci_low": "lower end of the interval of `accuracy` (level `stats.ci`)",
            "ci_high": "upper end of that interval",
            "n_problems": "problems answered under every head set and noise draw",
            "n_sets": "head sets of the condition (`random`: `perturbation.n_random_sets`)",
            "n_repeats": "noise draws per head set (`perturbation.n_repeats`; 1 for the "
                         "baseline)",
            "unit_sd": "standard deviation of the accuracy over the condition's units (head "
                       "set x noise draw, each over all problems): how much one draw scatters",
        }),
    "perturbation_tests": dict(
        file="perturbation/tests.tsv",
        intro="The tests of the perturbation stage at each alpha: each core against the random "
              "head sets (set-rank test) and the synergistic against the redundant core "
              "(permutation over noise draws); `synergistic_vs_random` at "
              "`perturbation.verdict_alpha` decides the summary's `verdict_perturbation`. "
              "Problems are not the unit of any test: the noise draws and head sets are shared "
              "by every problem.",
        columns={
            "comparison": "`synergistic_vs_random`, `synergistic_vs_redundant` or "
                          "`redundant_vs_random`: the first condition against the second",
            "alpha": "noise scale",
            "alternative": "the one-sided alternative: `less` (the first condition has lower "
                           "accuracy) or `greater`",
            "test": "set-rank test (the core's accuracy ranked among the random sets'; null: "
                    "the core is one more random set; exact under exchangeability of head "
                    "sets) or repeat permutation test (the 2n noise draws' accuracies split in "
                    "every way into two groups of n; null: draws exchangeable between the two "
                    "cores; exact)",
            "diff": "accuracy of the first condition minus the second's (< 0: perturbing the "
                    "first costs more)",
            "diff_ci_low": "lower end of the interval of `diff` (descriptive; `p` is the test)",
            "diff_ci_high": "upper end of that interval",
            "effect_size": "standardised effect size, of the kind `effect_size_kind` names",
            "effect_size_kind": "what `effect_size` is",
            "p": "one-sided p-value of the test in the direction `alternative`",
            "p_floor": "the smallest value `p` can take: 1/(1 + n random sets) for the "
                       "set-rank test, 1/C(2n, n) for the repeat permutation test (n noise "
                       "draws per core)",
            "n_a": "units of the first condition behind the test (head sets or noise draws)",
            "n_b": "units of the second condition",
        }),
    "finetune_tests": dict(
        file="finetune/tests.tsv",
        intro="The two-sample tests of the fine-tuning stage (paper Fig 5): per method and "
              "checkpoint choice, each region's runs against another's. The unit is the run: the "
              "evaluation problems are shared by every run. GRPO `synergistic_vs_random` at "
              "`finetune.verdict_selection` decides the summary's `verdict_finetune` (one-sided).",
        columns={
            "method": "`grpo` (RL) or `sft`",
            "selection": "`best` (each run's best evaluated checkpoint from `finetune.eval_from`, "
                         "chosen on the evaluation set: the paper's, optimistic) or `final` (the "
                         "last step)",
            "comparison": "`synergistic_vs_random`, `synergistic_vs_redundant` or "
                          "`redundant_vs_random`: the first region's runs against the second's",
            "test": "`exact_permutation` (every relabelling of the runs) or "
                    "`monte_carlo_permutation` (99,999 random relabellings, p = (1 + k)/(1 + B))",
            "n_a": "runs of the first region",
            "n_b": "runs of the second region",
            "mean_a": "mean accuracy of the first region's runs",
            "mean_b": "mean accuracy of the second region's runs",
            "diff": "`mean_a` minus `mean_b` (> 0: training the first region gains more)",
            "diff_lo": "lower end of the Welch t interval of `diff` (level `stats.ci`)",
            "diff_hi": "upper end of that interval",
            "hedges_g": "Hedges' g: `diff` over the pooled standard deviation of the runs, "
                        "bias-corrected for few runs (the paper's effect size)",
            "p": "two-sided exact permutation p-value over all relabellings of the runs (null: "
                 "the runs' accuracies exchangeable between the two regions)",
            "p_one_sided": "one-sided p-value of the same test (H1: the first region higher)",
            "p_floor": "the smallest value `p` can take (2/C(n_a + n_b, n_a) with equal sides; 5 "
                       "against 5 runs: 0.0079)",
            "p_one_sided_floor": "the smallest value `p_one_sided` can take (1/C(n_a + n_b, n_a))",
            "g_note": "why `hedges_g` is empty, if it is (fewer than 2 runs, or no spread)",
            "n_relabellings": "relabellings of the runs behind `p` (all C(n_a + n_b, n_a) when "
                              "`test` is `exact_permutation`, else the Monte Carlo draws)",
        }),
}


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_numeric_dtype(series):
        finite = series[np.isfinite(series)]
        counts = str(series.name).startswith("n_")
        return "int" if counts and (finite == finite.round()).all() else "float"
    return "str"


def model_table_page(frame: pd.DataFrame, key: str, model: str, source) -> str:
    """One of a model's tables (:data:`MODEL_TABLE_DOCS`) with its column explanations."""
    spec = MODEL_TABLE_DOCS[key]
    kinds = {c: _kind(frame[c]) for c in frame.columns}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(_cell(v, kinds[c]) for c, v in row.items()) + "</tr>\n"
                   for row in frame.to_dict(orient="records"))
    legend = _legend((c, spec["columns"].get(c, "(not documented)")) for c in frame.columns)
    note = (f'<p class="note">{prose(spec["intro"])} Numbers with {DIGITS} significant '
            f"digits; the file <code>{html.escape(str(source))}</code> has them at full "
            f"precision; {MISSING}: empty (not applicable to the row).</p>\n")
    return page(f"{model}: {spec['file']}",
                note + f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
                f"{body}</tbody></table></div>\n<h2>Columns</h2>\n" + legend)

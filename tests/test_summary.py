"""The verdict table (summary.tsv, summary.json, summary.html) and the report's HTML tables.

A small results tree is built with the stage functions (a training progression of two
checkpoints with a random-init twin, one ablated; a 7-layer model without a twin, whose
layer-permutation test can reach 0.05; three models perturbed, with synthetic perturbation
tables whose verdicts are supported, not supported and inconclusive), then the summary stage
writes every output of the `summary` rule. Checked: the TSV loads with pandas as numbers (intervals, p-values and floors
float, counts integer, 6 significant digits), the verdicts and the twin links, the JSON equals
the TSV, every column is documented (COLUMN_DOCS, and README "Reading the summary" lists each
entry), the HTML pages show the verdicts and the column explanations, and the report's intro
names exactly the report's sections.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic import kl_long, save_activations

from synergy_core.io import CorruptOutputError, read_json, read_table, write_table
from synergy_core.report_tables import MODEL_TABLE_DOCS, fmt
from synergy_core.stages import summary as summary_stage
from synergy_core.stages.ablation_stats import ablation_statistics
from synergy_core.stages.compare import compare_models
from synergy_core.stages.phiid import compute_phiid_chunk, merge_phiid_chunks
from synergy_core.stages.rank import rank_model
from synergy_core.stages.stats import model_statistics
from synergy_core.stages.summary import (
    COLUMN_DOCS,
    VERDICT_VALUES,
    VERDICTS,
    build_summary,
    column_doc,
    write_model_tables,
)

REPO = Path(__file__).resolve().parents[1]
PHIID = dict(tau=1, redundancy="MMI", aggregation="per_prompt", backend="closed_form", n_chunks=1,
             block_pairs=8192)
STATS = dict(n_boot=10, ci=0.95, n_splits=3, n_surrogates=3, graph_fraction=0.25, n_boot_graph=2,
             n_null_graph=4, n_layer_perm=99, surrogate_trim=0.25, seed=0)
N_PROMPTS, N_STEPS = 6, 30
#: name -> (spec, layers, heads per layer)
MODELS = {
    "fam-step0": (dict(hf_id="x/fam", revision="step0", init="pretrained", family="fam"), 3, 4),
    "fam-step9": (dict(hf_id="x/fam", revision="step9", init="pretrained", family="fam"), 3, 4),
    "fam-random": (dict(hf_id="x/fam", revision=None, init="random", family="fam-random"), 3, 4),
    "solo": (dict(hf_id="x/solo", revision=None, init="pretrained", family="solo"), 7, 2),
}
COMPARISONS = [("fam-step0", "fam-random", "random"), ("fam-step9", "fam-random", "random"),
               ("fam-step9", "fam-step0", "first")]
ABLATED = ["fam-step9"]
#: perturbed model -> (synergistic_vs_random p, random sets, noise draws): supported, not
#: supported, inconclusive (9 random sets: floor 0.1)
PERTURBED = {"fam-step9": (0.05, 19, 3), "fam-step0": (0.4, 19, 4), "solo": (0.1, 9, 3)}
PERTURBATION_ALPHAS = (0.5, 1.0)
VERDICT_ALPHA = 0.5
P_COLUMN = re.compile(r".*_p(_layer_perm|_surrogate|_null)?\Z")


def _dir(m: str) -> Path:
    return Path("results") / m


def _activations(m: str, seed: int, n_layers: int, per_layer: int) -> None:
    save_activations(_dir(m) / "activations.npz", seed, n_layers, per_layer, N_PROMPTS, N_STEPS,
                     made_from=[Path("prompts.tsv")], config_hash=m)


def _kl_long(seed: int) -> pd.DataFrame:
    return kl_long(seed, N_PROMPTS, 12)


def perturbation_tables(p_syn_random: float, n_sets: int, n_repeats: int, n_problems: int = 50,
                        alphas=PERTURBATION_ALPHAS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """accuracy.tsv and tests.tsv of one model as the perturbation stage writes them, with the
    synergistic-vs-random p-value ``p_syn_random`` at every alpha (n_sets = 0: no random sets,
    so no random row and no set-rank tests)."""
    base = 0.6
    acc = [dict(condition="baseline", alpha=0.0, accuracy=base, ci_low=0.46, ci_high=0.72,
                n_problems=n_problems, n_sets=1, n_repeats=1, unit_sd=0.0)]
    tests = []
    drop = {"synergistic": 0.3, "redundant": 0.05, "random": 0.12}
    for a in alphas:
        for c, d in drop.items():
            if c == "random" and n_sets == 0:
                continue
            acc.append(dict(condition=c, alpha=a, accuracy=base - d * a, ci_low=base - d * a - 0.1,
                            ci_high=base - d * a + 0.1, n_problems=n_problems,
                            n_sets=n_sets if c == "random" else 1, n_repeats=n_repeats, unit_sd=0.03))
        floor = 1 / math.comb(2 * n_repeats, n_repeats)     # every synergistic draw lowest: p = floor
        comparisons = [("synergistic_vs_redundant", "less", "repeat_permutation", -0.25 * a, floor,
                        floor, n_repeats, n_repeats)]
        if n_sets:
            comparisons += [("synergistic_vs_random", "less", "set_rank", -0.18 * a, p_syn_random,
                             1 / (1 + n_sets), 1, n_sets),
                            ("redundant_vs_random", "greater", "set_rank", 0.07 * a, 0.3,
                             1 / (1 + n_sets), 1, n_sets)]
        tests += [dict(comparison=c, alpha=a, alternative=alt, test=test, diff=d, diff_ci_low=d - 0.05,
                       diff_ci_high=d + 0.05, effect_size=10 * d, effect_size_kind="z_vs_random_sets"
                       if test == "set_rank" else "cohen_d", p=p, p_floor=floor, n_a=na, n_b=nb)
                  for c, alt, test, d, p, floor, na, nb in comparisons]
    return pd.DataFrame(acc), pd.DataFrame(tests)


def _write_perturbation(d: Path, p: float, n_sets: int, n_repeats: int) -> dict:
    acc, tests = perturbation_tables(p, n_sets, n_repeats)
    write_table(d / "accuracy.tsv", acc)
    write_table(d / "tests.tsv", tests)
    return dict(perturbation_accuracy=d / "accuracy.tsv", perturbation_tests=d / "tests.tsv",
                perturbation_alpha=VERDICT_ALPHA)


def _build() -> dict:
    """The results tree and the ``models`` dict the summary script hands to build_summary."""
    Path("prompts.tsv").write_text("prompt_id\tcategory\ttext\np0\tx\thello\n")
    models = {}
    for seed, (m, (spec, n_layers, per_layer)) in enumerate(MODELS.items()):
        d = _dir(m)
        _activations(m, seed, n_layers, per_layer)
        chunk = d / "phiid" / "chunk_0.npz"
        compute_phiid_chunk(d / "activations.npz", chunk, 0, PHIID)
        merge_phiid_chunks(d / "activations.npz", [chunk], d / "phiid" / "phiid.npz", PHIID)
        rank_model(d / "phiid" / "phiid.npz", d / "activations.npz", d / "ranking" / "heads.tsv",
                   d / "ranking" / "layer_profile.tsv", d / "ranking" / "diagnostics.json")
        stats = {k: d / "stats" / f"{name}.tsv" for k, name in (
            ("scores", "profile_scores"), ("layers", "layer_ci"), ("categories", "category_profiles"),
            ("graphs", "graphs"))}
        stats["json"] = d / "stats" / "stats.json"
        model_statistics(d / "phiid" / "phiid.npz", d / "activations.npz", stats, STATS, tau=1)
        models[m] = dict(spec=spec, diagnostics=d / "ranking" / "diagnostics.json",
                         scores=stats["scores"], stats=stats["json"], graphs=stats["graphs"])
    for m in ABLATED:
        d = _dir(m) / "ablation"
        write_table(d / "kl_long.tsv", _kl_long(0), [_dir(m) / "activations.npz"])
        ablation_statistics(d / "kl_long.tsv", d / "auc_ci.tsv", d / "auc_ci.json",
                            dict(n_boot=20, seed=0, ci=0.95))
        models[m].update(ablation=d / "auc_ci.tsv", ablation_json=d / "auc_ci.json")
    for m, (p, n_sets, n_repeats) in PERTURBED.items():
        models[m].update(_write_perturbation(_dir(m) / "perturbation", p, n_sets, n_repeats))
    for m, other, kind in COMPARISONS:
        out = _dir(m) / "comparisons" / f"vs_{other}.tsv"
        compare_models(_dir(m) / "phiid" / "phiid.npz", _dir(other) / "phiid" / "phiid.npz", out,
                       dict(n_permutations=19, seed=0, ci=0.95))
        models[m].setdefault("comparisons", {})[kind] = dict(other=other, path=out)
    return models


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every output of the summary rule, from a results tree built with the stage functions."""
    root = tmp_path_factory.mktemp("summary")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        models = _build()
        build_summary(models, "results/summary.tsv", "results/summary.json", "results/summary.html")
        tables = {m: dict(profile_scores=_dir(m) / "stats" / "profile_scores.html",
                          graphs=_dir(m) / "stats" / "graphs.html") for m in MODELS}
        for m in ABLATED:
            tables[m]["auc_ci"] = _dir(m) / "ablation" / "auc_ci.html"
        for m in PERTURBED:
            tables[m].update(perturbation_accuracy=_dir(m) / "perturbation" / "accuracy.html",
                             perturbation_tests=_dir(m) / "perturbation" / "tests.html")
        write_model_tables(models, tables)
    finally:
        os.chdir(cwd)
    return root / "results", tables


@pytest.fixture(scope="module")
def table(built):
    return pd.read_csv(built[0] / "summary.tsv", sep="\t")


def test_one_row_per_model_in_config_order_identity_and_verdicts_first(table):
    assert list(table.model) == list(MODELS)
    assert list(table.columns[:10]) == ["model", "family", "hf_id", "revision", "init", "random_twin",
                                        "random_twin_of", "verdict_inverted_u", "verdict_ablation",
                                        "verdict_perturbation"]
    assert table.columns.is_unique


def test_intervals_p_values_and_floors_are_floats_counts_integers(table):
    numeric = [c for c in table.columns if c.endswith(("_ci_low", "_ci_high", "_floor", "_null_low",
                                                       "_null_high")) or P_COLUMN.match(c)]
    assert len(numeric) > 60
    for c in numeric:
        assert pd.api.types.is_float_dtype(table[c]), c
    for c in table.columns:
        kind = column_doc(c)["kind"]
        if kind == "int":
            values = table[c].dropna()
            assert pd.api.types.is_numeric_dtype(table[c]) and (values == values.round()).all(), c
        elif kind in ("float", "p"):
            assert pd.api.types.is_float_dtype(table[c]) or pd.api.types.is_integer_dtype(table[c]), c
    for c in table.columns:
        if P_COLUMN.match(c):
            p = table[c].dropna()
            assert ((p > 0) & (p <= 1)).all(), c
            assert f"{c}_floor" in table.columns, f"{c} has no floor column"


def test_parameter_count_is_empty_when_the_extraction_recorded_none(table):
    """n_parameters comes from the extraction's provenance (model.n_parameters, carried by the
    ranking's diagnostics.json; the real path: tests/test_staleness.py, scaling figure): these
    synthetic activations record none, so the cell is empty, never 0."""
    assert "n_parameters" in table.columns and table["n_parameters"].isna().all()
    assert column_doc("n_parameters")["section"] == "diagnostics"


def test_every_p_value_has_its_floor(table):
    rows = table.set_index("model")
    # whole-layer permutations: 3 layers -> 3 middle-layer sets and 3 quad_coef values
    assert rows.loc["fam-step0", "mid_minus_outer_p_layer_perm_floor"] == pytest.approx(1 / 3, rel=1e-5)
    assert rows.loc["fam-step0", "quad_coef_p_layer_perm_floor"] == pytest.approx(1 / 3, rel=1e-5)
    # 7 layers: C(7, 3) = 35 middle sets, 99 permutations -> 1/35; quad_coef 2/7! < 1/100
    assert rows.loc["solo", "mid_minus_outer_p_layer_perm_floor"] == pytest.approx(1 / 35, rel=1e-5)
    assert rows.loc["solo", "quad_coef_p_layer_perm_floor"] == pytest.approx(1 / 100, rel=1e-5)
    assert rows.loc["solo", "synergy_rank_mid_minus_outer_p_surrogate_floor"] == pytest.approx(1 / 4)
    assert rows.loc["fam-step9", "ratio_synergistic_random_p_floor"] == pytest.approx(1 / 10)
    assert rows.loc["fam-step9", "vs_first_quad_coef_p_floor"] == pytest.approx(1 / 20)
    k = rows.loc["solo", "graph_weighted_synergy_minus_redundancy_modularity_n_folds"]
    assert rows.loc["solo", "graph_weighted_synergy_minus_redundancy_modularity_p_floor"] == \
        pytest.approx(2 / 2 ** k, rel=1e-5)
    assert rows.loc["solo", "graph_thresholded_synergy_modularity_p_null_floor"] == pytest.approx(1 / 5)
    # no test gives a p below its floor (ties count as extreme)
    for c in table.columns:
        if P_COLUMN.match(c) and not c.endswith("_p_layer_perm"):
            both = table[[c, f"{c}_floor"]].dropna()
            assert (both[c] >= both[f"{c}_floor"] * (1 - 1e-5)).all(), c


def test_layer_permutation_p_is_not_below_its_floor(table):
    """Sampled arrangements: the floor holds up to Monte Carlo error (ties are counted, so no
    rounding pushes p far below it; tests/test_stats.py checks that over 200 data sets)."""
    for c in table.columns:
        if c.endswith("_p_layer_perm"):
            both = table[[c, f"{c}_floor"]].dropna()
            n = table["n_layer_perm"].iloc[0]
            se = np.sqrt(both[f"{c}_floor"] * (1 - both[f"{c}_floor"]) / n)
            assert (both[c] >= both[f"{c}_floor"] - 4 * se).all(), c


def test_six_significant_digits_in_the_tsv(built, table):
    text = (built[0] / "summary.tsv").read_text().splitlines()
    header = text[0].split("\t")
    for line in text[1:]:
        for c, cell in zip(header, line.split("\t")):
            kind = column_doc(c)["kind"]
            if cell and kind in ("float", "p"):
                digits = re.sub(r"e[-+]\d+$", "", cell.lstrip("-")).replace(".", "").lstrip("0")
                assert len(digits) <= 6, (c, cell)
            if cell and kind == "int":
                assert re.fullmatch(r"-?\d+", cell), (c, cell)


def test_verdicts_take_the_allowed_values_by_their_rules(table):
    rows = table.set_index("model")
    for column, v in VERDICTS.items():
        for model, verdict in rows[column].items():
            p = rows.loc[model].get(v["p"], np.nan)
            if pd.isna(verdict):       # not tested on this model
                assert (column == "verdict_ablation" and model not in ABLATED) or \
                    (column == "verdict_perturbation" and model not in PERTURBED) or \
                    column == "verdict_finetune", (column, model)   # no model here is fine-tuned
                continue
            assert verdict in VERDICT_VALUES
            floor = rows.loc[model, f"{v['p']}_floor"]
            expected = ("inconclusive" if not np.isfinite(p) or floor > summary_stage.ALPHA else
                        "supported" if p <= summary_stage.ALPHA else "not supported")
            assert verdict == expected, (column, model)
    # 3 layers: the layer permutation cannot reach 0.05; 7 layers can
    assert rows.loc["fam-step0", "verdict_inverted_u"] == "inconclusive"
    assert rows.loc["solo", "verdict_inverted_u"] in ("supported", "not supported")
    # 9 random orders: smallest p 0.1
    assert rows.loc["fam-step9", "verdict_ablation"] == "inconclusive"


def test_perturbation_columns_at_the_verdict_alpha(table):
    rows = table.set_index("model")
    assert rows.loc["fam-step9", "verdict_perturbation"] == "supported"
    assert rows.loc["fam-step0", "verdict_perturbation"] == "not supported"
    assert rows.loc["solo", "verdict_perturbation"] == "inconclusive"        # floor 1/10 > 0.05
    assert pd.isna(rows.loc["fam-random", "verdict_perturbation"])           # not perturbed
    pert = [c for c in table.columns if c.startswith("perturbation_")]
    assert rows.loc["fam-random", pert].isna().all()
    step9 = rows.loc["fam-step9"]
    assert step9.perturbation_alpha == VERDICT_ALPHA
    # values at alpha 0.5, not 1.0; baseline from its alpha-0 row
    assert step9.perturbation_accuracy_baseline == pytest.approx(0.6)
    assert step9.perturbation_accuracy_synergistic == pytest.approx(0.6 - 0.3 * 0.5)
    assert step9.perturbation_accuracy_random_ci_high == pytest.approx(0.6 - 0.06 + 0.1)
    assert step9.perturbation_diff_synergistic_vs_random == pytest.approx(-0.09)
    assert step9.perturbation_diff_synergistic_vs_random_ci_low == pytest.approx(-0.14)
    assert step9.perturbation_effect_synergistic_vs_redundant == pytest.approx(-1.25)
    assert step9.perturbation_effect_synergistic_vs_random_kind == "z_vs_random_sets"
    # floors: set-rank 1/(1 + n sets), repeat permutation 1/C(2n, n)
    assert step9.perturbation_diff_synergistic_vs_random_p_floor == pytest.approx(1 / 20)
    assert step9.perturbation_diff_redundant_vs_random_p_floor == pytest.approx(1 / 20)
    assert step9.perturbation_diff_synergistic_vs_redundant_p_floor == pytest.approx(1 / 20)
    assert rows.loc["fam-step0", "perturbation_diff_synergistic_vs_redundant_p_floor"] == pytest.approx(1 / 70)
    assert rows.loc["solo", "perturbation_diff_synergistic_vs_random_p_floor"] == pytest.approx(1 / 10)
    assert (step9.perturbation_n_problems, step9.perturbation_n_random_sets, step9.perturbation_n_repeats) \
        == (50, 19, 3)
    for comparison in ("synergistic_vs_random", "synergistic_vs_redundant", "redundant_vs_random"):
        for suffix in ("", "_ci_low", "_ci_high", "_p", "_p_floor"):
            assert f"perturbation_diff_{comparison}{suffix}" in table.columns
        assert f"perturbation_effect_{comparison}" in table.columns
    for condition in ("baseline", "synergistic", "redundant", "random"):
        for suffix in ("", "_ci_low", "_ci_high"):
            assert f"perturbation_accuracy_{condition}{suffix}" in table.columns
    # the verdict's estimate and p-value are in the report's verdict table
    assert VERDICTS["verdict_perturbation"]["p"] == "perturbation_diff_synergistic_vs_random_p"


def test_perturbation_numbers_are_numbers_in_the_json(built):
    doc = read_json(built[0] / "summary.json")
    rows = {r["model"]: r for r in doc["rows"]}
    for name, value in rows["fam-step9"].items():
        if name.startswith("perturbation_"):
            kind = column_doc(name)["kind"]
            expected = {"int": int, "float": float, "p": float, "str": str}[kind]
            assert type(value) is expected, (name, value)
    assert rows["fam-step9"]["perturbation_n_random_sets"] == 19
    assert rows["fam-step9"]["perturbation_diff_synergistic_vs_random_p"] == 0.05
    assert rows["fam-step9"]["verdict_perturbation"] == "supported"
    assert rows["fam-random"]["verdict_perturbation"] is None
    assert all(v is None for k, v in rows["fam-random"].items() if k.startswith("perturbation_"))
    assert "set-rank" in doc["columns"]["perturbation_diff_synergistic_vs_random_p"]


def test_perturbation_without_random_sets_or_verdict_alpha(tmp_path):
    """No random sets (`n_random_sets: 0`): the random columns stay empty and the verdict is
    inconclusive; a verdict alpha the tables lack is refused with the file's name."""
    row = {}
    paths = _write_perturbation(tmp_path / "none", 0.01, 0, 3)
    summary_stage._perturbation_columns(row, paths["perturbation_accuracy"], paths["perturbation_tests"], 1.0)
    assert np.isnan(row["perturbation_accuracy_random"]) and np.isnan(row["perturbation_diff_synergistic_vs_random_p"])
    assert row["perturbation_n_random_sets"] == 0
    assert row["perturbation_accuracy_synergistic"] == pytest.approx(0.3)
    assert summary_stage._verdict(row["perturbation_diff_synergistic_vs_random_p"],
                                  row["perturbation_diff_synergistic_vs_random_p_floor"]) == "inconclusive"
    with pytest.raises(CorruptOutputError, match="accuracy.tsv: no rows at perturbation.verdict_alpha 0.25"):
        summary_stage._perturbation_columns({}, paths["perturbation_accuracy"], paths["perturbation_tests"], 0.25)


def test_verdict_rule():
    verdict = summary_stage._verdict
    assert verdict(0.01, 0.001) == "supported"
    assert verdict(0.05, 0.01) == "supported"
    assert verdict(0.2, 0.001) == "not supported"
    assert verdict(0.1, 0.1) == "inconclusive"
    assert verdict(float("nan"), 0.001) == "inconclusive"


def test_random_twin_linked_to_its_trained_models(table):
    rows = table.set_index("model")
    assert rows.loc["fam-step0", "random_twin"] == rows.loc["fam-step9", "random_twin"] == "fam-random"
    assert rows.loc["fam-random", "random_twin_of"] == "fam"
    assert pd.isna(rows.loc["fam-random", "random_twin"]) and pd.isna(rows.loc["solo", "random_twin"])
    assert pd.isna(rows.loc["fam-step0", "random_twin_of"]) and pd.isna(rows.loc["solo", "random_twin_of"])
    assert (rows.random_twin.dropna() == rows.vs_random_model.dropna()).all()
    # the link as a pandas user follows it: each trained model next to its twin
    pairs = table.merge(table, left_on="random_twin", right_on="model", suffixes=("", "_twin"))
    assert set(pairs.model) == {"fam-step0", "fam-step9"}
    assert (pairs.family == pairs.random_twin_of_twin).all()
    assert rows.loc["fam-step9", "vs_first_model"] == "fam-step0"


def test_json_equals_the_tsv(built, table):
    doc = read_json(built[0] / "summary.json")
    assert set(doc) == {"columns", "column_order", "rows"}
    assert list(doc["columns"]) == sorted(table.columns)      # written with sorted keys
    assert doc["column_order"] == list(table.columns)
    assert len(doc["rows"]) == len(table)
    for i, row in enumerate(doc["rows"]):
        assert set(row) == set(table.columns)
        for c, value in row.items():
            cell = table.at[i, c]
            if value is None:
                assert pd.isna(cell), (c, cell)
                continue
            kind = column_doc(c)["kind"]
            if kind in ("float", "p"):
                assert isinstance(value, float) and float(f"{value:.6g}") == cell, (c, value, cell)
            elif kind == "int":
                assert isinstance(value, int) and value == cell, (c, value, cell)
            else:
                assert value == cell, (c, value, cell)
    assert doc["columns"]["verdict_inverted_u"].startswith("`supported` if `mid_minus_outer_p_layer_perm` <= 0.05")
    assert doc["columns"]["mid_minus_outer_ci_low"].startswith("lower end of the interval of `mid_minus_outer`")


def test_json_and_tsv_carry_their_records(built):
    for name in ("summary.tsv", "summary.json"):
        record = json.loads((built[0] / f"{name}.meta.json").read_text())
        assert any(k.endswith("fam-step9/ablation/auc_ci.tsv") for k in record["made_from"])
        assert any(k.endswith("fam-step9/comparisons/vs_fam-step0.tsv") for k in record["made_from"])
    read_table(built[0] / "summary.tsv")


def test_every_column_is_documented(table):
    for c in table.columns:
        doc = column_doc(c)
        assert doc is not None, f"{c}: no entry in COLUMN_DOCS"
        assert doc["meaning"] and "{" not in doc["meaning"], c
    # every entry documents at least one column of this table
    used = {column_doc(c)["name"] for c in table.columns}
    finetune = {name for name in COLUMN_DOCS if "finetune" in name}   # test_finetune_columns_and_verdict
    assert set(COLUMN_DOCS) - used - finetune == set()
    # a generic entry applies to documented columns only
    assert column_doc("not_a_column_ci_low") is None
    assert column_doc("mid_minus_outer_floor") is None          # not a p-value


def test_readme_reading_the_summary_lists_every_entry():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Reading the summary", 1)[1].split("\n### ", 1)[0]
    missing = [name for name in COLUMN_DOCS if f"`{name}`" not in section]
    assert not missing, f"README 'Reading the summary' lacks {missing}"


def test_summary_html_shows_the_verdicts_and_every_column_with_its_meaning(built, table):
    page = (built[0] / "summary.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"<script|<link|src=|https?://", page)      # self-contained
    assert page.count('class="verdict inconclusive"') >= 2
    assert 'class="verdict not-tested">not tested<' in page
    for c in table.columns:
        assert f"<code>{c}</code>" in page, c
    assert "<code>supported</code> if <code>mid_minus_outer_p_layer_perm</code> &lt;= 0.05" in page
    solo = table.set_index("model").loc["solo"]
    assert fmt(solo.mid_minus_outer) in page and len(fmt(solo.mid_minus_outer).lstrip("-0.")) <= 3
    assert "(floor 0.0286)" in page             # 1/35, the 7-layer model's floor


def test_model_tables_as_html_with_their_column_explanations(built):
    _, tables = built
    root = built[0].parent
    for pages in tables.values():
        for key, path in pages.items():
            text = (root / path).read_text()
            source = read_table(root / path.with_suffix(".tsv"))
            assert text.count("<tr>") == len(source) + 1
            for c in source.columns:
                assert f"<th>{c}</th>" in text and f"<dt><code>{c}</code></dt>" in text
                assert MODEL_TABLE_DOCS[key]["columns"][c][:30].split("`")[0] in text.replace(
                    "<code>", "").replace("</code>", ""), (key, c)
            assert "(not documented)" not in text
            assert not re.search(r"<script|src=|https?://", text)
    assert set(tables["fam-step9"]) == {"profile_scores", "graphs", "auc_ci", "perturbation_accuracy",
                                        "perturbation_tests"}


def test_html_number_format():
    assert fmt(0.170454545) == "0.170" and fmt(-0.68181818) == "-0.682"
    assert fmt(0.0001) == "0.000100" and fmt(9999, "int") == "9999"
    assert fmt(1.23456e-7) == "1.23e-07" and fmt(float("nan")) == "–" and fmt(None) == "–"
    assert fmt(9.996) == "10.0" and fmt(0) == "0" and fmt("x", "str") == "x"


def _categories() -> list[str]:
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        found += re.findall(r'(?<!sub)category="([^"]+)"', smk.read_text())
    return sorted(set(found), key=lambda c: int(c.split(".")[0]))


def test_report_intro_lists_exactly_the_report_sections_in_order():
    categories = _categories()
    assert [int(c.split(".")[0]) for c in categories] == list(range(len(categories)))
    intro = (REPO / "workflow" / "report" / "workflow.rst").read_text()
    listed = re.findall(r"^\s*(\d+\. [^:\n]+?)(?::|\n)", intro, flags=re.M)
    assert listed == categories


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH")
def test_dry_run_plans_every_summary_output():
    out = subprocess.run(["snakemake", "-n", "--forceall", "--configfile", "config/demo.yaml"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for path in ("summary.tsv", "summary.json", "summary.html", "tiny-llama/stats/profile_scores.html",
                 "tiny-neox-random/stats/graphs.html", "tiny-neox-step150/ablation/auc_ci.html"):
        assert f"results/demo/{path}" in out.stdout, path
    assert "results/demo/tiny-neox-random/ablation/auc_ci.html" not in out.stdout


def _finetune_tables(tmp_path, gain: float) -> dict:
    """Fine-tuning tables of one model: 5 seeds per region and method, the synergistic GRPO runs
    ``gain`` more accurate than the others (each run at steps 10 and 20)."""
    from synergy_core.finetune_stats import finetune_statistics
    from synergy_core.io import write_table

    rng = np.random.default_rng(0)
    rows = [dict(method="base", region="none", seed=0, step=0, accuracy=0.5, n_problems=100)]
    for method in ("grpo", "sft"):
        for region in ("synergistic", "redundant", "random"):
            for seed in range(5):
                level = 0.55 + (gain if (method, region) == ("grpo", "synergistic") else 0)
                for step in (10, 20):
                    rows.append(dict(method=method, region=region, seed=seed, step=step,
                                     accuracy=level + rng.normal(0, 0.005), n_problems=100))
    accuracy = pd.DataFrame(rows)
    paths = {"accuracy": tmp_path / "accuracy.tsv"}
    write_table(paths["accuracy"], accuracy)
    for name, frame in finetune_statistics(accuracy, best_from_step=10).items():
        if name != "runs":
            paths[name] = tmp_path / f"{name}.tsv"
            write_table(paths[name], frame)
    return paths


@pytest.mark.parametrize("gain, verdict", [(0.05, "supported"), (0.0, "not supported")])
def test_finetune_columns_and_verdict(tmp_path, gain, verdict):
    """The GRPO synergistic-vs-random one-sided exact permutation p decides verdict_finetune; its
    floor 1/252 for 5 against 5 runs; every finetune column is documented."""
    row = {}
    summary_stage._finetune_columns(row, _finetune_tables(tmp_path, gain), "final")
    p = row["finetune_grpo_diff_synergistic_vs_random_p_greater"]
    assert row["finetune_grpo_diff_synergistic_vs_random_p_greater_floor"] == pytest.approx(1 / 252)
    assert row["finetune_grpo_diff_synergistic_vs_random_p_floor"] == pytest.approx(2 / 252)
    assert (p <= 0.05) == (verdict == "supported")
    assert row["finetune_grpo_diff_synergistic_vs_random"] == pytest.approx(gain, abs=0.01)
    assert row["finetune_base_accuracy"] == 0.5 and row["finetune_n_seeds"] == 5
    assert np.isfinite(row["finetune_interaction_synergistic_vs_random_p"])
    assert summary_stage._verdict(p, row["finetune_grpo_diff_synergistic_vs_random_p_greater_floor"]) == verdict
    undocumented = [c for c in row if summary_stage.column_doc(c) is None]
    assert undocumented == []
    used = {summary_stage.column_doc(c)["name"] for c in row}
    assert {n for n in summary_stage.COLUMN_DOCS if n.startswith("finetune")} <= used

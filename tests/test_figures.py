"""Every figure of synergy_core.plots, on small synthetic data shaped like the demo's (and the edge
cases: 3 layers, no NaN, one model, a family with and without a random-init twin, Pythia-1B's
shape): no text is clipped and layers, heads and counts get integer ticks.

The figures use constrained layout and plots.save writes them as laid out (no bbox_inches
cropping), so the drawn canvas at the saved resolution is the saved image: each figure is drawn at
150 dpi (the PNG) and 72 dpi (the PDF's points), every visible, non-empty text artist (titles,
labels, tick labels that are drawn, legend texts, colour-bar labels, annotations) must lie inside
the figure (1 px slack) and overlap no other text, legends placed outside must not cover any
axes, and the PNG that plots.save writes must have exactly the canvas's size.
"""
import inspect
import re
import struct
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from synergy_core import plots

matplotlib.use("Agg")

DEMO_TITLE = "tiny-neox-random | builtin:tiny-gpt-neox | random init, seed 1"
PAPER_TITLE = "pythia-1b-step143000 | EleutherAI/pythia-1b | step143000"
CATEGORIES = ["Syntax and Grammar Correction", "Part of Speech Tagging", "Basic Numerical Reasoning",
              "Basic Common Sense Reasoning", "Abstract Reasoning and Creative Thinking",
              "Emotional Intelligence and Social Cognition"]


# ----------------------------------------------------------------------------- synthetic data
def heads_table(n_layers, n_heads, nan_heads=(), seed=0):
    rng = np.random.default_rng(seed)
    n = n_layers * n_heads
    layer, head = np.divmod(np.arange(n), n_heads)
    syn_red = rng.permutation(n) / (n - 1)
    nan_cells = np.zeros(n, dtype=int)
    for h in nan_heads:
        syn_red[h] = np.nan
        nan_cells[h] = (n - 1) * 12
        nan_cells[[k for k in range(n) if k != h]] += 12
    return pd.DataFrame({"layer": layer, "head": head, "depth": layer / max(n_layers - 1, 1),
                         "synergy": rng.random(n) * 0.02, "redundancy": rng.random(n) * 0.01,
                         "syn_red": syn_red, "nan_cells": nan_cells})


def layer_ci(n_layers, seed=0, band=True):
    rng = np.random.default_rng(seed)
    est = 0.5 + 0.2 * rng.standard_normal(n_layers).clip(-2, 2)
    frame = pd.DataFrame({"layer": np.arange(n_layers),
                          "depth": np.arange(n_layers) / max(n_layers - 1, 1), "estimate": est})
    if band:
        frame["ci_low"] = (est - 0.15 - 0.05 * rng.random(n_layers)).clip(0, 1)
        frame["ci_high"] = (est + 0.15 + 0.05 * rng.random(n_layers)).clip(0, 1)
    return frame


def scores(seed):
    rng = np.random.default_rng(seed)
    est = rng.normal(0, 0.15, 2)
    return pd.DataFrame({"score": ["mid_minus_outer", "quad_coef"], "estimate": est,
                         "ci_low": est - 0.2, "ci_high": est + 0.2})


def family(revisions, name="tiny-neox"):
    return {f"{name}-{r}": r for r in revisions}


DEMO_FAMILY = family(["step0", "step30", "step150"])
PAPER_FAMILY = family(["step0", "step16", "step128", "step512", "step1000", "step2000", "step4000",
                       "step8000", "step16000", "step32000", "step64000", "step143000"], "pythia-1b")


def demo_specs():
    specs = {m: {"init": "pretrained", "family": "tiny-neox", "revision": r,
                 "twin": "tiny-neox-random"} for m, r in DEMO_FAMILY.items()}
    specs["tiny-neox-random"] = {"init": "random", "family": "tiny-neox-random", "revision": None,
                                 "twin": None}
    specs["tiny-llama"] = {"init": "pretrained", "family": "tiny-llama", "revision": "step150",
                           "twin": None}
    return specs


def demo_profiles():
    layers = {"tiny-llama": 3}
    return {m: layer_ci(layers.get(m, 6), seed=k) for k, m in enumerate(demo_specs())}


def ablation_summary(n_heads=24, max_fraction=0.4):
    n = int(n_heads * max_fraction)
    frac = np.arange(n + 1) / n_heads
    rows = []
    for order, slope in (("synergistic_first", 1.2), ("redundant_first", 0.8)):
        rows += [dict(order=order, fraction_removed=f, kl_mean=slope * f, kl_std=0.0) for f in frac]
    rows += [dict(order="random", fraction_removed=f, kl_mean=f, kl_std=0.2 * f) for f in frac[::4]]
    return pd.DataFrame(rows)


def atoms(n, seed=0):
    m = np.random.default_rng(seed).random((n, n))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 0)
    return m


CONDITIONS = ("baseline", "synergistic", "redundant", "random")


def perturbation_tables(alphas=(0.5, 1.0), n_sets=19, n_problems=200, seed=0, with_tests=True):
    """accuracy.tsv, sets.tsv and tests.tsv of one model, shaped as perturbation_stats writes
    them: the synergistic core hurt most, the redundant core least."""
    rng = np.random.default_rng(seed)
    base = 0.35 + 0.1 * rng.random()
    drop = {"synergistic": 0.25, "redundant": 0.05, "random": 0.12}
    acc = [dict(condition="baseline", alpha=0.0, accuracy=base, n_sets=1)]
    sets = []
    for a in alphas:
        for c, d in drop.items():
            acc.append(dict(condition=c, alpha=a, accuracy=max(base - d * a, 0.0),
                            n_sets=n_sets if c == "random" else 1))
        sets += [dict(condition="random", set=i, alpha=a,
                      accuracy=float(np.clip(base - drop["random"] * a + rng.normal(0, 0.04), 0, 1)))
                 for i in range(n_sets)]
    acc = pd.DataFrame(acc)
    half = 1.96 * np.sqrt(acc.accuracy * (1 - acc.accuracy) / n_problems)
    acc = acc.assign(ci_low=(acc.accuracy - half).clip(0, 1), ci_high=(acc.accuracy + half).clip(0, 1),
                     n_problems=n_problems, n_repeats=3, unit_sd=0.02)
    tables = dict(accuracy=acc, sets=pd.DataFrame(sets))
    if with_tests:
        tables["tests"] = pd.DataFrame([dict(comparison="synergistic_vs_random", alpha=a, alternative="less",
                                             test="set_rank", diff=-0.13 * a, diff_ci_low=-0.2, diff_ci_high=-0.05,
                                             effect_size=-2.0, effect_size_kind="z", p=0.05, p_floor=0.05,
                                             n_a=1, n_b=n_sets) for a in alphas])
    return tables


def categories_table(n_layers):
    rng = np.random.default_rng(0)
    return pd.DataFrame([dict(category=c, layer=k, depth=k / (n_layers - 1),
                              syn_red_mean=rng.random(), n_prompts=2)
                         for c in CATEGORIES for k in range(n_layers)])


#: The Pythia suite's parameter counts (the summary's n_parameters), the scaling figure's x.
PYTHIA_SIZES = {"pythia-70m": 70426624, "pythia-160m": 162322944, "pythia-410m": 405334016,
                "pythia-1b": 1011781632, "pythia-1.4b": 1414647808, "pythia-2.8b": 2775208960,
                "pythia-6.9b": 6857302016, "pythia-12b": 11846072320}


def scaling_summary(sizes=PYTHIA_SIZES, missing_params=(), nan_estimate=(), no_interval=()):
    """Summary rows of trained models and their random-init twins, as summary.tsv has them: the
    inverted-U score grows with size for the trained models (supported; the 6-layer 70M
    inconclusive: floor 1/15), stays near 0 for the twins (not supported); only trained models
    are ablated (every third not supported). The named models lose their parameter count, their
    inverted-U estimate or its interval."""
    rows = []
    for k, (m, n) in enumerate(sizes.items()):
        for twin in (False, True):
            name = f"{m}-random" if twin else m
            est = 0.01 * (-1) ** k if twin else 0.05 + 0.02 * k
            p, floor = (0.4 + 0.05 * k, 1e-4) if twin else (1e-4 * (k + 1), 1e-4)
            if k == 0:
                floor = 1 / 15
            verdict = "inconclusive" if floor > 0.05 else "supported" if p <= 0.05 else "not supported"
            row = dict(model=name, init="random" if twin else "pretrained",
                       n_parameters=np.nan if name in missing_params else n,
                       mid_minus_outer=np.nan if name in nan_estimate else est,
                       mid_minus_outer_ci_low=np.nan if name in no_interval else est - 0.03,
                       mid_minus_outer_ci_high=np.nan if name in no_interval else est + 0.03,
                       mid_minus_outer_p_layer_perm=p, mid_minus_outer_p_layer_perm_floor=floor,
                       verdict_inverted_u=verdict, ratio_synergistic_random=np.nan,
                       ratio_synergistic_random_ci_low=np.nan, ratio_synergistic_random_ci_high=np.nan,
                       ratio_synergistic_random_p=np.nan, ratio_synergistic_random_p_floor=np.nan,
                       verdict_ablation=None)
            if not twin:
                ratio, p_abl = 1.1 + 0.05 * k, (0.3 if k % 3 == 0 else 0.01)
                row.update(ratio_synergistic_random=ratio, ratio_synergistic_random_ci_low=ratio - 0.1,
                           ratio_synergistic_random_ci_high=ratio + 0.15, ratio_synergistic_random_p=p_abl,
                           ratio_synergistic_random_p_floor=0.01,
                           verdict_ablation="supported" if p_abl <= 0.05 else "not supported")
            rows.append(row)
    return pd.DataFrame(rows)


def scaling_case(**kwargs):
    from synergy_core.scaling import scaling_points

    summary = scaling_summary(**kwargs)
    points, notes = scaling_points(summary, list(summary.model))
    return plots.scaling_figure(points, notes, "the verdicts against model size: 16 models of the "
                                "summary table")


# --------------------------------------------------------------------------------- the figures
# id -> (function name, builder, [(axes index, axis)] that must have integer tick labels,
#        whether a legend may sit on the axes)
def finetune_tables(methods=("grpo", "sft"), n_seeds=5, steps=(2500, 3000, 5000), seed=0, with_tests=True):
    """accuracy.tsv, run_accuracy.tsv and tests.tsv of one fine-tuned model, as finetune_stats
    writes them: under GRPO the synergistic region gains most."""
    from synergy_core.finetune_stats import finetune_statistics

    rng = np.random.default_rng(seed)
    rows = [dict(method="base", region="none", seed=0, step=0, accuracy=0.52, n_problems=500)]
    for method in methods:
        for region in ("synergistic", "redundant", "random"):
            gain = 0.02 + (0.01 if (method, region) == ("grpo", "synergistic") else 0)
            for s in range(n_seeds):
                rows += [dict(method=method, region=region, seed=s, step=st, n_problems=500,
                              accuracy=0.52 + gain * (i + 1) / len(steps) + rng.normal(0, 0.004))
                         for i, st in enumerate(steps)]
    accuracy = pd.DataFrame(rows)
    stats = finetune_statistics(accuracy, best_from_step=steps[0])
    tables = dict(accuracy=accuracy, runs=stats["runs"])
    if with_tests:
        tables["tests"] = stats["tests"]
    return tables


CASES = {
    "fig2a-demo": ("pairwise_heatmaps", lambda: plots.pairwise_heatmaps(atoms(24), atoms(24, 1), 6, 4,
                                                                        DEMO_TITLE),
                   [(0, "x"), (0, "y"), (1, "x"), (1, "y")], False),
    "fig2a-3-layers": ("pairwise_heatmaps", lambda: plots.pairwise_heatmaps(atoms(12), atoms(12, 1), 3, 4,
                                                                            PAPER_TITLE),
                       [(0, "x"), (0, "y")], False),
    "fig2b-demo": ("syn_red_heatmap", lambda: plots.syn_red_heatmap(heads_table(6, 4), DEMO_TITLE),
                   [(0, "x"), (0, "y")], False),
    "fig2b-3-layers": ("syn_red_heatmap",
                       lambda: plots.syn_red_heatmap(heads_table(3, 4), "tiny-llama | builtin:tiny-llama | step150"),
                       [(0, "x"), (0, "y")], False),
    "fig2b-pythia-unranked": ("syn_red_heatmap",
                              lambda: plots.syn_red_heatmap(heads_table(16, 8, nan_heads=(5,)), PAPER_TITLE),
                              [(0, "x"), (0, "y")], False),
    "fig2c-demo": ("layer_profiles", lambda: plots.layer_profiles(demo_profiles(), "layer profile of syn_red",
                                                                  demo_specs()), [], False),
    "fig2c-one-model": ("layer_profiles",
                        lambda: plots.layer_profiles({"tiny-llama": layer_ci(3)}, "layer profile",
                                                     {"tiny-llama": demo_specs()["tiny-llama"]}), [], False),
    "fig2c-no-specs-no-bands": ("layer_profiles",
                                lambda: plots.layer_profiles({"a": layer_ci(6, band=False),
                                                              "b": layer_ci(6, 1, band=False)}, "profiles"),
                                [], False),
    "fig2c-paper": ("layer_profiles",
                    lambda: plots.layer_profiles(
                        {**{m: layer_ci(16, k) for k, m in enumerate(PAPER_FAMILY)},
                         "pythia-1b-random": layer_ci(16, 99)}, "layer profile of syn_red",
                        {**{m: {"init": "pretrained", "family": "pythia-1b", "revision": r,
                                "twin": "pythia-1b-random"} for m, r in PAPER_FAMILY.items()},
                         "pythia-1b-random": {"init": "random", "family": "pythia-1b-random"}}),
                    [], False),
    "fig2c-orphan-random": ("layer_profiles",
                            lambda: plots.layer_profiles({"r": layer_ci(6), "t": layer_ci(3, 1)}, "profiles",
                                                         {"r": {"init": "random"}, "t": {"init": "pretrained"}}),
                            [], False),
    "fig4a-demo": ("ablation_curves",
                   lambda: plots.ablation_curves(ablation_summary(), "tiny-neox-step150\nsynergistic/random "
                                                 "AUC 0.95, redundant/random AUC 0.65"), [], True),
    "fig5-one-model": ("finetune_figure",
                       lambda: plots.finetune_figure({"qwen2.5-math-1.5b": finetune_tables()}, "best",
                                                     "accuracy after fine-tuning one region of heads (Fig 5)"),
                       [], False),
    "fig5-two-models-grpo-only": ("finetune_figure",
                                  lambda: plots.finetune_figure(
                                      {"tiny-llama": finetune_tables(("grpo",), 2, (5, 10), seed=1),
                                       "a-model-with-a-rather-long-name": finetune_tables(with_tests=False, seed=2)},
                                      "final", "accuracy after fine-tuning | 2 models"),
                                  [], False),
    "fig4b-one-model": ("perturbation_figure",
                        lambda: plots.perturbation_figure({"tiny-llama": perturbation_tables()}, 0.5,
                                                          "task accuracy with noise on head sets (Fig 4b)"),
                        [], False),
    "fig4b-three-models": ("perturbation_figure",
                           lambda: plots.perturbation_figure(
                               {"qwen2.5-1.5b-instruct-with-a-long-name": perturbation_tables((0.1, 0.5, 1.0), 19),
                                "tiny-neox-step150": perturbation_tables((0.1, 0.5, 1.0), 4, 30, seed=1,
                                                                         with_tests=False),
                                "gemma-2b": {"accuracy": perturbation_tables((0.1, 0.5, 1.0), seed=2)["accuracy"]}},
                               1.0, "task accuracy (MATH-500) with Gaussian noise N(0, (alpha std W)^2) on the "
                                    "query rows and output columns of head sets | 3 models", ci=0.9),
                           [], False),
    "scatter-demo": ("synergy_vs_redundancy",
                     lambda: plots.synergy_vs_redundancy(heads_table(6, 4), {"spearman": 0.11, "pearson": 0.2},
                                                         DEMO_TITLE), [], False),
    "nan-none": ("nan_counts", lambda: plots.nan_counts(heads_table(3, 4), 12, "tiny-llama | builtin:tiny-llama | "
                                                        "step150"), [(0, "x"), (0, "y")], False),
    "nan-some": ("nan_counts", lambda: plots.nan_counts(heads_table(6, 4, nan_heads=(5,)), 12, DEMO_TITLE),
                 [(0, "x"), (0, "y")], False),
    "nan-pythia": ("nan_counts", lambda: plots.nan_counts(heads_table(16, 8, nan_heads=(3, 40)), 60, PAPER_TITLE),
                   [(0, "x"), (0, "y")], False),
    "fig3a-demo-twin": ("progression_profiles",
                        lambda: plots.progression_profiles({m: layer_ci(6, k) for k, m in enumerate(DEMO_FAMILY)},
                                                           DEMO_FAMILY, "tiny-neox: layer profile over training",
                                                           ("tiny-neox-random", layer_ci(6, 9))), [], False),
    "fig3a-no-twin-3-layers": ("progression_profiles",
                               lambda: plots.progression_profiles(
                                   {m: layer_ci(3, k) for k, m in enumerate(DEMO_FAMILY)}, DEMO_FAMILY,
                                   "tiny-neox: layer profile over training"), [], False),
    "fig3a-paper": ("progression_profiles",
                    lambda: plots.progression_profiles({m: layer_ci(16, k) for k, m in enumerate(PAPER_FAMILY)},
                                                       PAPER_FAMILY, "pythia-1b: layer profile over training",
                                                       ("pythia-1b-random", layer_ci(16, 99))), [], False),
    "fig3a-five-no-bands": ("progression_profiles",
                            lambda: plots.progression_profiles(
                                {m: layer_ci(6, k, band=False) for k, m in
                                 enumerate(family(["step0", "step1", "step2", "step3", "step4"]))},
                                family(["step0", "step1", "step2", "step3", "step4"]), "five checkpoints"),
                            [], False),
    "score-demo-twin": ("score_vs_step",
                        lambda: plots.score_vs_step({m: scores(k) for k, m in enumerate(DEMO_FAMILY)}, DEMO_FAMILY,
                                                    "mid_minus_outer", "tiny-neox: inverted-U score (middle minus "
                                                    "outer thirds) over training",
                                                    ("tiny-neox-random", scores(9))), [(0, "x")], False),
    "score-paper": ("score_vs_step",
                    lambda: plots.score_vs_step({m: scores(k) for k, m in enumerate(PAPER_FAMILY)}, PAPER_FAMILY,
                                                "quad_coef", "pythia-1b: inverted-U score over training"),
                    [(0, "x")], False),
    "score-named-revisions": ("score_vs_step",
                              lambda: plots.score_vs_step({"a": scores(0), "b": scores(1)},
                                                          {"a": "main", "b": "v2-final"}, "mid_minus_outer",
                                                          "named revisions"), [], False),
    "fig3bc-3-layers": ("graphs_figure",
                        lambda: plots.graphs_figure(atoms(12), atoms(12, 1), np.repeat(np.arange(3), 4), 0.1,
                                                    "tiny-llama | builtin:tiny-llama | step150"), [(2, "y")], False),
    "fig3bc-demo": ("graphs_figure",
                    lambda: plots.graphs_figure(atoms(24), atoms(24, 1), np.repeat(np.arange(6), 4), 0.1,
                                                DEMO_TITLE), [(2, "y")], False),
    "scaling-pythia": ("scaling_figure", scaling_case, [], False),
    "scaling-pythia-gaps": ("scaling_figure",
                            lambda: scaling_case(missing_params=("pythia-410m-random",),
                                                 nan_estimate=("pythia-1b",), no_interval=("pythia-2.8b",)),
                            [], False),
    "scaling-two-tiny-models": ("scaling_figure",
                                lambda: scaling_case(sizes={"tiny-neox": 104_000, "tiny-llama": 181_000}),
                                [], False),
    "categories-demo": ("category_profiles", lambda: plots.category_profiles(categories_table(6), DEMO_TITLE),
                        [], False),
    "categories-3-layers": ("category_profiles", lambda: plots.category_profiles(categories_table(3), PAPER_TITLE),
                            [], False),
}


def figure_functions():
    """The public functions of plots.py that make a figure (everything but save and helpers)."""
    return {name for name, f in inspect.getmembers(plots, inspect.isfunction)
            if f.__module__ == plots.__name__ and not name.startswith("_") and name != "save"}


def test_every_figure_function_is_tested():
    assert figure_functions() == {fn for fn, *_ in CASES.values()}


# ------------------------------------------------------------------------------------- checks
def _in_view(axis, loc):
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(hi - lo, 1e-300)
    return loc is not None and lo - tol <= loc <= hi + tol


def drawn_tick_labels(axis):
    """(location, Text) of the tick labels the axis draws (ticks inside the view only)."""
    if not axis.get_visible() or not axis.axes.axison:
        return []
    out = []
    for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        if not tick.get_visible() or not _in_view(axis, tick.get_loc()):
            continue
        out += [(tick.get_loc(), t) for t in (tick.label1, tick.label2)
                if t.get_visible() and t.get_text().strip()]
    return out


def drawn_texts(fig):
    """Every visible, non-empty text artist that the figure draws."""
    tick_texts, drawn = set(), set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            tick_texts.update(id(t) for t in axis.findobj(Text))
            drawn.update(id(t) for _, t in drawn_tick_labels(axis))
            if ax.axison and axis.get_visible():
                drawn.update(id(t) for t in (axis.label, axis.offsetText))
    return [t for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()
            and (id(t) not in tick_texts or id(t) in drawn)]


def _describe(t):
    return f"{t.get_text()!r} ({type(t).__name__})"


def check_layout(fig, integer_axes, legend_on_axes_ok):
    renderer = fig.canvas.get_renderer()
    fb = fig.bbox
    texts = drawn_texts(fig)
    assert texts
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    for t, bb in boxes:
        assert (bb.x0 >= fb.x0 - 1 and bb.y0 >= fb.y0 - 1 and bb.x1 <= fb.x1 + 1
                and bb.y1 <= fb.y1 + 1), f"{_describe(t)} extends beyond the figure: {bb} vs {fb}"
    for i, (t, a) in enumerate(boxes):     # no text on another text (a 1 px overlap is allowed)
        for u, b in boxes[i + 1:]:
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= 1 or overlap_y <= 1, f"{_describe(t)} overlaps {_describe(u)}"
    legends = [lg for lg in fig.legends] + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    if not legend_on_axes_ok:
        for legend in legends:
            lb = legend.get_window_extent(renderer)
            for ax in fig.axes:
                ab = ax.get_window_extent(renderer)
                assert not (lb.x0 < ab.x1 - 1 and lb.x1 > ab.x0 + 1 and lb.y0 < ab.y1 - 1
                            and lb.y1 > ab.y0 + 1), f"a legend covers an axes: {lb} vs {ab}"
    for index, name in integer_axes:
        axis = getattr(fig.axes[index], f"{name}axis")
        labels = drawn_tick_labels(axis)
        assert labels, f"axes {index} {name}: no tick labels"
        for loc, t in labels:
            text = t.get_text().replace("\N{MINUS SIGN}", "-")
            layer = re.fullmatch(r"L(\d+)", text)
            power = re.fullmatch(r"\$10\^\{(\d+)\}\$", text)
            assert layer or power or re.fullmatch(r"-?\d+", text), f"axes {index} {name}: tick {text!r}"
            if power:
                assert loc == 10 ** int(power[1]), (loc, text)
            elif not layer:
                assert loc == int(text), f"axes {index} {name}: tick {text!r} at {loc}"


def layout_checked_saves(monkeypatch, strict: bool) -> list:
    """Make every figure a stage saves pass :func:`check_layout` first; returns the list of the
    PNG paths checked."""
    from synergy_core import plots as plots_module

    real_save = plots_module.save
    checked = []

    def checked_save(fig, png, pdf):
        fig.canvas.draw()
        check_layout(fig, [], strict)
        checked.append(png)
        real_save(fig, png, pdf)

    monkeypatch.setattr(plots_module, "save", checked_save)
    return checked


def png_size(path):
    data = open(path, "rb").read(24)
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("case", list(CASES))
def test_figure_text_fits_and_ticks_are_integers(case, tmp_path):
    _, build, integer_axes, legend_on_axes_ok = CASES[case]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(constrained|tight).?layout")
        fig = build()
        for dpi in (72, 150):        # the PDF's points, then the PNG's resolution
            fig.set_dpi(dpi)
            fig.canvas.draw()
            check_layout(fig, integer_axes, legend_on_axes_ok)
        width, height = fig.get_size_inches()
        plots.save(fig, str(tmp_path / "f.png"), str(tmp_path / "f.pdf"))
    # the saved PNG is the canvas checked above: not cropped or padded (no bbox_inches="tight")
    assert png_size(tmp_path / "f.png") == (round(width * 150), round(height * 150))
    assert (tmp_path / "f.pdf").stat().st_size > 1000


def test_the_check_sees_clipping():
    """The check itself: a title wider than its figure and a colour-bar label taller than it
    (Fig 2b's old faults) fail it."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    im = ax.imshow(np.eye(3))
    fig.colorbar(im, ax=ax, label="syn_red (1 = most synergistic, 0 = most redundant)")
    ax.set_title(PAPER_TITLE)
    fig.canvas.draw()
    with pytest.raises(AssertionError, match="extends beyond the figure"):
        check_layout(fig, [], False)
    plt.close(fig)
    fig, ax = plt.subplots(layout="constrained")
    ax.plot([0, 1, 2], [0, 0.5, 1])
    fig.canvas.draw()
    with pytest.raises(AssertionError, match="tick"):
        check_layout(fig, [(0, "y")], False)     # 0.0, 0.2, ...: not integers
    plt.close(fig)


def test_stage_functions_read_layer_ci_and_twin_files(tmp_path, monkeypatch):
    """The rules' path: Fig 2c and Fig 3a from layer_ci.tsv (syn_red rows of three quantities),
    the score figure from profile_scores.tsv, each with the random-init twin's files, and Fig 4a
    with the title the stage builds; every figure the stages save passes the layout check."""
    from synergy_core.io import write_table
    from synergy_core.stages.plots import plot_ablation, plot_profiles, plot_progression

    checked = layout_checked_saves(monkeypatch, True)

    def ci_file(name, n_layers, seed):
        rows = pd.concat([layer_ci(n_layers, seed).assign(quantity=q)
                          for q in ("syn_red", "synergy", "redundancy")])
        write_table(tmp_path / f"{name}_ci.tsv", rows)
        write_table(tmp_path / f"{name}_scores.tsv", pd.concat(
            [scores(seed).assign(quantity=q) for q in ("syn_red", "synergy")]))
        return tmp_path / f"{name}_ci.tsv", tmp_path / f"{name}_scores.tsv"

    files = {m: ci_file(m, {"tiny-llama": 3}.get(m, 6), k) for k, m in enumerate(demo_specs())}
    outputs = {k: tmp_path / f"{k}.png" for k in ("fig2c", "profiles", "score")}
    outputs.update({f"{k}_pdf": tmp_path / f"{k}.pdf" for k in list(outputs)})
    plot_profiles({m: f[0] for m, f in files.items()}, outputs, demo_specs(), 0.9)
    plot_progression({m: files[m][0] for m in DEMO_FAMILY}, {m: files[m][1] for m in DEMO_FAMILY},
                     DEMO_FAMILY, "tiny-neox", outputs, twin="tiny-neox-random",
                     twin_profile=files["tiny-neox-random"][0], twin_scores=files["tiny-neox-random"][1],
                     ci=0.9)
    summary = pd.DataFrame({"order": ["synergistic_first"] * 3 + ["redundant_first"] * 3 + ["random"] * 3,
                            "fraction_removed": [0, 0.2, 0.4] * 3, "kl_mean": [0, 1, 2, 0, 0.4, 1, 0, 0.5, 1.2],
                            "kl_std": [0.1] * 9, "n": [12] * 9})
    write_table(tmp_path / "abl_summary.tsv", summary)
    write_table(tmp_path / "auc.tsv", pd.DataFrame({"order": ["synergistic_first", "redundant_first", "random"],
                                                    "ratio_to_random": [1.61, 0.83, 1.0]}))
    outputs["fig4a"], outputs["fig4a_pdf"] = tmp_path / "fig4a.png", tmp_path / "fig4a.pdf"
    plot_ablation(tmp_path / "abl_summary.tsv", tmp_path / "auc.tsv", outputs,
                  "a-model-with-a-rather-long-name-step143000")
    for key in ("fig2c", "profiles", "score", "fig4a"):
        assert png_size(outputs[key])[0] > 500 and outputs[f"{key}_pdf"].stat().st_size > 1000
    assert len(checked) == 4


def test_perturbation_stage_reads_its_tables(tmp_path, monkeypatch):
    """The rule's path for Fig 4b: the three tables of two models written with write_table, read
    back by the stage; the figure passes the layout check, and a verdict_alpha the tables lack
    is refused."""
    from synergy_core.io import write_table
    from synergy_core.stages.plots import plot_perturbation

    checked = layout_checked_saves(monkeypatch, False)
    paths = {}
    for k, m in enumerate(("tiny-llama", "tiny-neox-step150")):
        tables = perturbation_tables((0.5, 1.0), seed=k)
        paths[m] = {}
        for name, frame in tables.items():
            paths[m][name] = tmp_path / m / f"{name}.tsv"
            write_table(paths[m][name], frame)
    outputs = {"fig4b": tmp_path / "fig4b.png", "fig4b_pdf": tmp_path / "fig4b.pdf"}
    args = ({m: p["accuracy"] for m, p in paths.items()}, {m: p["sets"] for m, p in paths.items()},
            {m: p["tests"] for m, p in paths.items()})
    plot_perturbation(*args, 0.5, outputs, ci=0.95, task="builtin:arithmetic")
    assert checked == [str(outputs["fig4b"])]
    assert png_size(outputs["fig4b"])[0] > 500 and outputs["fig4b_pdf"].stat().st_size > 1000
    with pytest.raises(ValueError, match="verdict_alpha 0.3"):
        plot_perturbation(*args, 0.3, outputs)


# ------------------------------------------------------------------------------ scaling figure
def test_scaling_points_one_per_model_and_panel_at_its_parameter_count():
    """Every listed model with a parameter count gives one inverted-U point; only ablated models
    an ablation point; x is n_parameters, the numbers are the summary's cells."""
    from synergy_core.scaling import scaling_points

    summary = scaling_summary()
    points, notes = scaling_points(summary, list(summary.model))
    inv = points[points.panel == "inverted_u"]
    abl = points[points.panel == "ablation"]
    assert len(inv) == 16 and len(abl) == 8 and set(abl.kind) == {"trained"}
    assert sorted(inv[inv.kind == "trained"].n_parameters) == sorted(PYTHIA_SIZES.values())
    assert sorted(inv[inv.kind == "random"].n_parameters) == sorted(PYTHIA_SIZES.values())
    row = summary.set_index("model").loc["pythia-2.8b"]
    got = inv.set_index("model").loc["pythia-2.8b"]
    assert (got.estimate, got.ci_low, got.ci_high, got.p, got.p_floor, got.verdict) == (
        row.mid_minus_outer, row.mid_minus_outer_ci_low, row.mid_minus_outer_ci_high,
        row.mid_minus_outer_p_layer_perm, row.mid_minus_outer_p_layer_perm_floor, "supported")
    assert inv.set_index("model").loc["pythia-70m", "verdict"] == "inconclusive"
    # the twins are not ablated: said once, not dropped silently
    assert notes == {"all": [], "inverted_u": [],
                     "ablation": ["not drawn, not run (ablation.models): every random-init twin"]}


def test_scaling_points_name_every_row_they_cannot_draw():
    from synergy_core.scaling import scaling_points

    summary = scaling_summary(missing_params=("pythia-410m-random", "pythia-12b"),
                              nan_estimate=("pythia-1b",), no_interval=("pythia-2.8b",))
    points, notes = scaling_points(summary, list(summary.model))
    inv = points[points.panel == "inverted_u"]
    assert len(inv) == 16 - 2 - 1 and "pythia-2.8b" in set(inv.model)      # drawn, no interval
    assert np.isnan(inv.set_index("model").loc["pythia-2.8b", "ci_low"])
    # half an interval (a ratio's [0, inf] with too few random orders: the upper cell empty) is
    # no interval: no bar down to 0
    half = summary.assign(ratio_synergistic_random_ci_high=np.where(
        summary.model == "pythia-1b", np.nan, summary.ratio_synergistic_random_ci_high))
    half_points, half_notes = scaling_points(half, list(half.model))
    got = half_points[(half_points.panel == "ablation") & (half_points.model == "pythia-1b")].iloc[0]
    assert np.isnan(got.ci_low) and np.isnan(got.ci_high) and got.estimate > 1
    assert "drawn without an interval (a bound empty or infinite): pythia-1b" in half_notes["ablation"]
    assert len(points[points.panel == "ablation"]) == 8 - 1
    assert notes["all"] == ["not drawn, no parameter count (n_parameters empty: rerun its "
                            "extraction): pythia-410m-random, pythia-12b"]
    assert notes["inverted_u"] == ["not drawn, mid_minus_outer empty: pythia-1b",
                                   "drawn without an interval (a bound empty or infinite): pythia-2.8b"]
    # six twins reach the ablation panel: all of them named by the one phrase
    assert notes["ablation"] == ["not drawn, not run (ablation.models): every random-init twin"]
    # a subset of the models, and one the summary lacks
    points, notes = scaling_points(summary, ["pythia-160m", "pythia-1b-random"])
    assert sorted(points.model) == ["pythia-160m", "pythia-160m", "pythia-1b-random"]
    assert notes["ablation"] == ["not drawn, not run (ablation.models): pythia-1b-random"]
    with pytest.raises(ValueError, match=r"scaling.models: \['pythia-99b'\] have no row in the summary"):
        scaling_points(summary, ["pythia-1b", "pythia-99b"])


def _series(ax, kind):
    """(x, y) of the verdict markers of one series (``kind``: trained, random) of the axes."""
    gids = {f"scaling-{kind}-{verdict}" for verdict in plots.VERDICT_MARKERS}
    xs, ys = [], []
    for line in ax.get_lines():
        if line.get_gid() in gids:
            xs += list(line.get_xdata())
            ys += list(line.get_ydata())
    return np.array(xs, float), np.array(ys, float)


def test_scaling_figure_draws_each_point_at_its_size_with_its_interval_and_p():
    """Artists, not pixels: the markers sit at the parameter counts (data coordinates; the two
    series are shifted apart in display points only), each point's error bar spans its interval,
    the p panels show each p and floor, the x axes are logarithmic, and a missing interval draws
    no bar."""
    from matplotlib.collections import LineCollection

    from synergy_core.scaling import scaling_points

    summary = scaling_summary(no_interval=("pythia-2.8b",))
    points, notes = scaling_points(summary, list(summary.model))
    fig = plots.scaling_figure(points, notes, "scaling")
    (inv, abl), (inv_p, abl_p) = fig.axes[0:2], fig.axes[2:4]
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
    for ax, panel in ((inv, "inverted_u"), (abl, "ablation")):
        here = points[points.panel == panel]
        for kind in ("trained", "random"):
            rows = here[here.kind == kind]
            x, y = _series(ax, kind)
            order = np.argsort(x, kind="stable")
            assert len(x) == len(rows)
            np.testing.assert_array_equal(x[order], np.sort(rows.n_parameters.to_numpy(float)))
            np.testing.assert_allclose(y[order], rows.sort_values("n_parameters").estimate)
        # error bars: one vertical segment per point with an interval, from ci_low to ci_high
        segments = [seg for c in ax.collections if isinstance(c, LineCollection)
                    for seg in c.get_segments() if len(seg) and np.isfinite(seg).all()]
        bars = sorted((s[0, 0], min(s[:, 1]), max(s[:, 1])) for s in segments if s[0, 0] == s[1, 0])
        with_ci = here.dropna(subset=["ci_low", "ci_high"])
        expected = sorted(zip(with_ci.n_parameters.astype(float), with_ci.ci_low, with_ci.ci_high))
        assert len(bars) == len(expected) == len(here) - (panel == "inverted_u")
        np.testing.assert_allclose(np.array(bars), np.array(expected))
    assert inv_p.get_yscale() == "log" and abl_p.get_yscale() == "log"
    x, y = _series(abl_p, "trained")
    trained = points[(points.panel == "ablation")].sort_values("n_parameters")
    np.testing.assert_allclose(y[np.argsort(x)], trained.p)
    floors = [ln for ln in abl_p.get_lines() if (ln.get_gid() or "") == "scaling-trained-floor"]
    np.testing.assert_allclose(floors[0].get_ydata(), trained.p_floor)
    # the verdict is the marker: supported filled, not supported open, inconclusive X
    styles = {ln.get_gid(): (ln.get_marker(), ln.get_markerfacecolor()) for ln in inv.get_lines()}
    assert styles["scaling-trained-inconclusive"][0] == "X"
    assert styles["scaling-random-not supported"][1] == "white"
    assert styles["scaling-trained-supported"][1] != "white"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_scaling_stage_reads_the_summary_and_logs_what_it_leaves_out(tmp_path, monkeypatch, caplog):
    """The rule's path: summary.tsv as write_table writes it, the figure saved (PNG, PDF) after
    the layout check; a model without a parameter count is a warning naming it, a test not run
    (the twins' ablation) information, and each panel's count of points is logged."""
    import logging

    from synergy_core.io import write_table
    from synergy_core.stages.plots import plot_scaling

    checked = layout_checked_saves(monkeypatch, False)
    summary = scaling_summary(missing_params=("pythia-12b-random",))
    write_table(tmp_path / "summary.tsv", summary)
    outputs = {"scaling": tmp_path / "scaling.png", "scaling_pdf": tmp_path / "scaling.pdf"}
    with caplog.at_level(logging.INFO, logger="synergy_core"):
        plot_scaling(tmp_path / "summary.tsv", list(summary.model), outputs, ci=0.9)
    assert checked == [str(outputs["scaling"])]
    assert png_size(outputs["scaling"])[0] > 500 and outputs["scaling_pdf"].stat().st_size > 1000
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert warnings_ == ["scaling figure (all): not drawn, no parameter count (n_parameters empty: "
                         "rerun its extraction): pythia-12b-random"]
    assert "scaling figure (ablation): not drawn, not run (ablation.models): every random-init twin" in infos
    assert "scaling figure (inverted_u): 15 of 16 models drawn" in infos
    assert "scaling figure (ablation): 8 of 16 models drawn" in infos

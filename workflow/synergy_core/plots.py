"""Figures. Each function takes data and returns a matplotlib Figure; rules save them (PNG + PDF).

Figure numbers refer to the paper (arXiv 2601.06851): 2a pairwise heatmaps, 2b per-head syn_red,
2c layer profile, 3a training progression, 3b-c graphs, 4a ablation curves, 4b task accuracy
under weight noise on head sets. Information is in nats throughout.

Every figure uses matplotlib's constrained layout, which sizes the axes so that titles, labels,
colour bars and legends fit inside the figure; :func:`save` writes the figure exactly as laid out
(no ``bbox_inches`` cropping), so what ``tests/test_figures.py`` checks on the drawn canvas (no
text outside the figure, integer ticks for layers, heads and counts) is what the PNG and PDF show.
Long titles are wrapped to the figure's width. Trained models are drawn in colour with solid
lines, random-init models dashed grey; bands are bootstrap intervals over prompts.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

ORDER_STYLE = {
    "synergistic_first": dict(color="tab:red", ls="-", label="synergistic first"),
    "redundant_first": dict(color="tab:blue", ls="-", label="redundant first"),
    "random": dict(color="0.3", ls="--", label="random order (mean ± std)"),
}
#: Random-init models (the baseline): dashed grey with open markers, a light grey band.
RANDOM_STYLE = dict(color="0.4", ls="--", lw=1.4, marker="o", ms=3.5, mfc="white")
RANDOM_BAND = dict(color="0.6", alpha=0.22, lw=0)
DEPTH_LABEL = "normalised depth, layer / (L − 1)"
PROFILE_LABEL = "mean syn_red of the layer's heads"
#: Average advance of a DejaVu Sans character in em (digits 0.64, lower case about 0.55); a
#: little above the mean so that wrapped lines fit.
_EM_PER_CHAR = 0.64


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """Break ``text`` into lines of at most ``width_in`` inches at ``fontsize`` points, at
    " | " separators first, then at spaces; existing line breaks are kept."""
    n = max(12, int(width_in * 72 / (_EM_PER_CHAR * fontsize)))
    lines = []
    for line in str(text).split("\n"):
        current = ""
        for segment in line.split(" | "):
            candidate = f"{current} | {segment}" if current else segment
            if len(candidate) <= n:
                current = candidate
                continue
            if current:
                lines.append(current)
            pieces = textwrap.wrap(segment, n, break_on_hyphens=False) or [""]
            lines.extend(pieces[:-1])
            current = pieces[-1]
        lines.append(current)
    return "\n".join(lines)


def _suptitle(fig: plt.Figure, text: str, fontsize: float = 11) -> None:
    """A figure title wrapped to the figure's width (constrained layout makes room for it)."""
    fig.suptitle(_wrap(text, 0.94 * fig.get_figwidth(), fontsize), fontsize=fontsize)


def _index_ticks(n: int, max_ticks: int = 12) -> np.ndarray:
    """Integer positions 0, s, 2s, ... below ``n`` with a round step s, at most ``max_ticks``."""
    need = max(1, math.ceil(n / max_ticks))
    step = next((s for s in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100) if s >= need), need)
    return np.arange(0, n, step)


def _layer_ticks(ax, n_layers: int, n_heads: int, axis: str = "both") -> None:
    """Ticks ``L<i>`` at the centre of each layer's block of heads (layer-major head order)."""
    layers = _index_ticks(n_layers, 16)
    ticks = layers * n_heads + (n_heads - 1) / 2
    labels = [f"L{i}" for i in layers]
    if axis in ("x", "both"):
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.xaxis.set_minor_locator(NullLocator())
    if axis in ("y", "both"):
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.yaxis.set_minor_locator(NullLocator())


def _legend_below(ax, handles=None, labels=None, ncol: int = 2, fontsize: float = 8):
    """A legend under the axes' x label (never on the data); constrained layout makes room."""
    below = offset_copy(ax.transAxes, fig=ax.figure, x=0, y=-36, units="points")
    args = () if handles is None else (handles, labels)
    return ax.legend(*args, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below,
                     ncol=ncol, fontsize=fontsize, frameon=False, borderaxespad=0)


def _step_of(revision: str | None) -> float:
    try:
        return float(str(revision).removeprefix("step"))
    except ValueError:
        return np.nan


def _step_colours(n: int) -> list:
    """Colours of ``n`` checkpoints in training order (viridis without its pale yellow end)."""
    return list(plt.get_cmap("viridis")(np.linspace(0.0, 0.78, n))) if n > 1 else ["tab:blue"]


def _profile(ax, prof: pd.DataFrame, band: dict | None = None, **style):
    """One layer profile (``depth``, ``estimate``) and, with ``band`` (its style, ``{}``: the
    line's colour), the interval ``ci_low``/``ci_high`` when the table has one."""
    prof = prof.sort_values("depth")
    line, = ax.plot(prof.depth, prof.estimate, **style)
    if band is not None and {"ci_low", "ci_high"} <= set(prof.columns):
        ax.fill_between(prof.depth, prof.ci_low, prof.ci_high,
                        **(band or dict(color=line.get_color(), alpha=0.18, lw=0)))
    return line


def _random_profile(ax, prof: pd.DataFrame, **style):
    """A random-init model's profile: dashed grey, its interval a light grey band."""
    return _profile(ax, prof, band=RANDOM_BAND, **RANDOM_STYLE, **style)


def _profile_axes(ax) -> None:
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(0, 1)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0", "0.25", "0.5", "0.75", "1"])
    ax.axhline(0.5, color="0.8", lw=0.8, ls=":", zorder=0)


def pairwise_heatmaps(sts: np.ndarray, rtr: np.ndarray, n_layers: int, n_heads: int,
                      title: str) -> plt.Figure:
    """Fig 2a: pairwise synergy (sts) and redundancy (rtr) matrices, heads ordered by layer."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), layout="constrained")
    for ax, mat, name, cmap in ((axes[0], sts, "synergy (sts)", "Reds"),
                                (axes[1], rtr, "redundancy (rtr)", "Blues")):
        im = ax.imshow(mat, cmap=cmap, interpolation="nearest")
        ax.set_title(f"pairwise {name}", fontsize=11)
        _layer_ticks(ax, n_layers, n_heads)
        ax.set_xlabel("head (grouped by layer)")
        ax.set_ylabel("head (grouped by layer)")
        fig.colorbar(im, ax=ax, shrink=0.8, label="nats")
    _suptitle(fig, title)
    return fig


def syn_red_heatmap(table: pd.DataFrame, title: str) -> plt.Figure:
    """Fig 2b: normalised rank difference per head, layers x heads (red synergistic, blue
    redundant, grey unranked)."""
    n_layers, n_heads = int(table.layer.max()) + 1, int(table["head"].max()) + 1
    grid = np.full((n_layers, n_heads), np.nan)
    grid[table.layer, table["head"]] = table.syn_red
    fig, ax = plt.subplots(figsize=(max(5.4, 0.35 * n_heads + 3.4), max(3.6, 0.3 * n_layers + 2.2)),
                           layout="constrained")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.7")
    im = ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(_index_ticks(n_heads, 16))
    ax.set_yticks(_index_ticks(n_layers, 16))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_ticks([0, 0.5, 1], labels=["0 redundant", "0.5", "1 synergistic"])
    cbar.set_label("syn_red")
    n_unranked = int(np.isnan(table.syn_red).sum())
    if n_unranked:
        title = f"{title}\n{n_unranked} unranked head(s) in grey"
    _suptitle(fig, title)
    return fig


def _panels(names: list[str], specs: dict) -> list[tuple[str, list[str], list[str]]]:
    """Fig 2c's panels: (family, its trained models, the random-init twins drawn with them);
    random-init models that are nobody's twin get a panel of their own family."""
    def spec(m):
        return specs.get(m) or {}

    trained = [m for m in names if spec(m).get("init", "pretrained") != "random"]
    families: dict[str, list[str]] = {}
    for m in trained:
        families.setdefault(spec(m).get("family") or m, []).append(m)
    panels, used = [], set()
    for family, members in families.items():
        twins = list(dict.fromkeys(t for m in members if (t := spec(m).get("twin")) in names))
        used.update(twins)
        panels.append((family, members, twins))
    orphans: dict[str, list[str]] = {}
    for m in names:
        if m not in trained and m not in used:
            orphans.setdefault(spec(m).get("family") or m, []).append(m)
    return panels + [(family, [], models) for family, models in orphans.items()]


def layer_profiles(profiles: dict[str, pd.DataFrame], title: str, specs: dict | None = None,
                   ci: float = 0.95) -> plt.Figure:
    """Fig 2c: mean syn_red per layer over normalised depth, one panel per model family.

    ``profiles``: model -> ``depth``, ``estimate`` and, when known, ``ci_low``/``ci_high`` (the
    bootstrap interval over prompts, drawn as a band). ``specs``: model -> ``init``, ``family``,
    ``revision`` and ``twin`` (its random-init twin). A family's trained models are solid colour
    lines with their bands, its random-init twins dashed grey with grey bands. Of a training
    progression (two or more ``step<N>`` revisions) only the final checkpoint is drawn: Fig 3a
    shows every checkpoint with its interval.
    """
    specs = specs or {}
    panels = _panels(list(profiles), specs)
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols + 0.4, 4.2 * nrows + 0.5),
                             layout="constrained", squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.remove()
    for ax, (family, members, twins) in zip(axes.flat, panels):
        steps = {m: _step_of((specs.get(m) or {}).get("revision")) for m in members}
        progression = len(members) > 1 and all(np.isfinite(list(steps.values())))
        panel_title = family
        if progression:
            final = max(members, key=lambda m: steps[m])
            panel_title = (f"{family}: final checkpoint {(specs.get(final) or {}).get('revision')}\n"
                           f"(all {len(members)} checkpoints: Fig 3a)")
            members = [final]
            colours = _step_colours(2)[-1:]
        else:
            colours = [f"C{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)] * (len(members) // 9 + 1)
        for m, colour in zip(members, colours):
            _profile(ax, profiles[m], band={}, color=colour, lw=2, marker="o", ms=4,
                     label=f"{m} ({len(profiles[m])} layers)")
        for t in twins:
            _random_profile(ax, profiles[t], label=f"{t} (random init)")
        _profile_axes(ax)
        ax.set_title(_wrap(panel_title, 0.95 * 4.3, 10), fontsize=10)
        ax.set_xlabel(DEPTH_LABEL)
        ax.set_ylabel(PROFILE_LABEL)
        _legend_below(ax, ncol=1 if len(members) + len(twins) < 3 else 2)
    bands = any({"ci_low", "ci_high"} <= set(p.columns) for p in profiles.values())
    _suptitle(fig, f"{title}\nbands: {ci:.0%} bootstrap CI over prompts" if bands else title)
    return fig


def ablation_curves(summary: pd.DataFrame, title: str) -> plt.Figure:
    """Fig 4a: mean KL (nats) against the fraction of heads removed, per order.

    ``summary`` has columns order, fraction_removed, kl_mean, kl_std (random: over seeds).
    """
    fig, ax = plt.subplots(figsize=(6.2, 4.4), layout="constrained")
    for order, style in ORDER_STYLE.items():
        part = summary[summary.order == order].sort_values("fraction_removed")
        if part.empty:
            continue
        ax.plot(part.fraction_removed, part.kl_mean, lw=1.8, **style)
        if order == "random" and "kl_std" in part:
            ax.fill_between(part.fraction_removed, part.kl_mean - part.kl_std,
                            part.kl_mean + part.kl_std, color=style["color"], alpha=0.2, lw=0)
    ax.set_xlabel("fraction of heads removed")
    ax.set_ylabel("KL(intact ‖ ablated), nats per token")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    _suptitle(fig, title)
    return fig


def synergy_vs_redundancy(table: pd.DataFrame, corr: dict, title: str) -> plt.Figure:
    """Diagnostic: per-head synergy vs redundancy, coloured by depth, with the correlations."""
    fig, ax = plt.subplots(figsize=(5.4, 4.6), layout="constrained")
    sc = ax.scatter(table.redundancy, table.synergy, c=table.depth, cmap="viridis", s=16,
                    vmin=0, vmax=1)
    fig.colorbar(sc, ax=ax, label="normalised depth")
    ax.set_xlabel("mean redundancy rtr (nats)")
    ax.set_ylabel("mean synergy sts (nats)")
    _suptitle(fig, f"{title}\nSpearman {corr['spearman']:.2f}, Pearson {corr['pearson']:.2f}",
              fontsize=10)
    return fig


def nan_counts(table: pd.DataFrame, n_prompts: int, title: str) -> plt.Figure:
    """Diagnostic: per head, the number of (pair, prompt) cells PhiID marked NaN; with none, a
    panel that says so."""
    n = len(table)
    n_cells = n * (n - 1) // 2 * n_prompts
    n_nan = int(table.nan_cells.sum()) // 2
    fig, ax = plt.subplots(figsize=(max(6.0, 0.05 * n + 3), 3.4), layout="constrained")
    n_layers = int(table.layer.max()) + 1 if n else 1
    n_heads = int(table["head"].max()) + 1 if n else 1
    ax.set_xlim(-0.5, max(n, 1) - 0.5)
    for boundary in np.arange(1, n_layers) * n_heads - 0.5:
        ax.axvline(boundary, color="0.88", lw=0.8, zorder=0)
    if n_nan:
        ax.bar(np.arange(n), table.nan_cells, color="tab:gray", width=0.85)
        ax.set_ylim(0, max(1, int(table.nan_cells.max())) * 1.08)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        ax.text(0.5, 0.5, f"no degenerate cells: all {n_cells:,} (pair, prompt) cells are valid",
                transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.25")
    ax.yaxis.set_minor_locator(NullLocator())
    _layer_ticks(ax, n_layers, n_heads, axis="x")
    ax.set_xlabel("head (grouped by layer)")
    ax.set_ylabel("NaN (pair, prompt) cells")
    _suptitle(fig, f"{title}\n{n_nan:,} of {n_cells:,} (pair, prompt) cells degenerate (NaN)",
              fontsize=10)
    return fig


def save(fig: plt.Figure, png: str, pdf: str) -> None:
    """Write the figure as PNG (150 dpi) and PDF, each atomically, and close it."""
    from .io import write_figure

    write_figure(fig, png, dpi=150)
    write_figure(fig, pdf)
    plt.close(fig)


def progression_profiles(profiles: dict[str, pd.DataFrame], revisions: dict[str, str],
                         title: str, twin: tuple[str, pd.DataFrame] | None = None,
                         ci: float = 0.95) -> plt.Figure:
    """Paper Fig 3a: the layer profile of each of one family's training checkpoints, one panel
    each in training order (shared axes), with its bootstrap band, against the family's
    random-init twin (``twin``: its name and profile; dashed grey) when there is one.

    ``profiles``: model -> ``depth``, ``estimate`` and optionally ``ci_low``/``ci_high``.
    """
    steps = {m: _step_of(revisions[m]) for m in profiles}
    models = sorted(profiles, key=lambda m: (not np.isfinite(steps[m]), steps[m], revisions[m]))
    n = len(models)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols + 0.9, 2.5 * nrows + 1.5),
                             layout="constrained", sharex=True, sharey=True, squeeze=False)
    for m, ax, colour in zip(models, axes.flat, _step_colours(n)):
        if twin is not None:
            _random_profile(ax, twin[1])
        _profile(ax, profiles[m], band={}, color=colour, lw=2, marker="o", ms=3.5)
        _profile_axes(ax)
        ax.set_title(str(revisions[m]), fontsize=10)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.remove()
            continue
        bottom, left = k + ncols >= n, k % ncols == 0
        ax.tick_params(labelbottom=bottom, labelleft=left, labelsize=8)
        if bottom:
            ax.set_xlabel(DEPTH_LABEL, fontsize=9)
        if left:
            ax.set_ylabel(PROFILE_LABEL, fontsize=9)
    has_band = any({"ci_low", "ci_high"} <= set(p.columns) for p in profiles.values())
    handles = [Line2D([], [], color=_step_colours(max(n, 2))[-1], lw=2, marker="o", ms=3.5)]
    labels = ["checkpoint (panel title)"]
    if has_band:
        handles.append(Patch(color=_step_colours(max(n, 2))[-1], alpha=0.25, lw=0))
        labels.append(f"{ci:.0%} bootstrap CI over prompts")
    if twin is not None:
        handles.append((Line2D([], [], **RANDOM_STYLE), Patch(**RANDOM_BAND)))
        labels.append(f"random init: {twin[0]}")
    fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    _suptitle(fig, title)
    return fig


def _step_label(x: float, _pos=None) -> str:
    if x == 0:
        return "0"
    k = round(math.log10(abs(x)))
    return f"{int(x):d}" if k <= 3 else f"$10^{{{k}}}$"


def score_vs_step(scores: dict[str, pd.DataFrame], revisions: dict[str, str], score: str,
                  title: str, twin: tuple[str, pd.DataFrame] | None = None,
                  ci: float = 0.95) -> plt.Figure:
    """Inverted-U score against training step with its ``ci`` interval (``ci_low``/``ci_high``
    of ``profile_scores.tsv``) on a symlog step axis; the random-init twin's score, when given, as a
    dashed grey line with its interval. Revisions that are not ``step<N>`` are placed in order
    on a categorical axis."""
    rows = [(m, _step_of(revisions[m]), s.set_index("score").loc[score]) for m, s in scores.items()]
    numeric = all(np.isfinite(r[1]) for r in rows)
    rows.sort(key=lambda r: (r[1], revisions[r[0]]) if numeric else revisions[r[0]])
    x = np.array([r[1] for r in rows]) if numeric else np.arange(len(rows), dtype=float)
    est = np.array([r[2].estimate for r in rows], dtype=float)
    lo = np.array([r[2].ci_low for r in rows], dtype=float)
    hi = np.array([r[2].ci_high for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    handles = [ax.errorbar(x, est, yerr=[est - lo, hi - est], marker="o", capsize=3, lw=1.6,
                           color="tab:blue")]
    if twin is not None:
        t = twin[1].set_index("score").loc[score]
        ax.axhspan(t.ci_low, t.ci_high, **RANDOM_BAND)
        handles.append((Line2D([], [], color=RANDOM_STYLE["color"], ls="--"), Patch(**RANDOM_BAND)))
        ax.axhline(t.estimate, color=RANDOM_STYLE["color"], ls="--", lw=1.4)
    ax.axhline(0, color="0.75", lw=0.8, zorder=0)
    if numeric:
        ax.set_xscale("symlog", linthresh=1, linscale=0.6)
        top = max(x.max(), 1.0)
        ax.set_xlim(-0.8, top * 2.5)
        ticks = [0.0] + [10.0 ** k for k in range(0, int(math.floor(math.log10(top))) + 1)]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(_step_label))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("training step (symlog)")
    else:
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_xticks(x, [revisions[r[0]] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("revision")
    label = {"mid_minus_outer": "middle-third minus outer-thirds syn_red",
             "quad_coef": "quadratic coefficient of the profile\n(< 0: inverted U)"}
    ax.set_ylabel(label.get(score, score), fontsize=9)
    labels = [f"trained checkpoint, with {ci:.0%} interval"]
    if twin is not None:
        labels.append(f"random init: {twin[0]}")
    fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    _suptitle(fig, title)
    return fig


def graphs_figure(sts: np.ndarray, rtr: np.ndarray, layer: np.ndarray, fraction: float,
                  title: str) -> plt.Figure:
    """Paper Fig 3b-c: the top-``fraction`` synergy and redundancy graphs, nodes coloured by layer."""
    import networkx as nx

    from .graphs import top_edges_graph

    fig, axes = plt.subplots(1, 2, figsize=(10, 5), layout="constrained")
    vmax = max(1, int(np.max(layer)))
    for ax, mat, name in ((axes[0], sts, "synergy"), (axes[1], rtr, "redundancy")):
        g = top_edges_graph(mat, fraction)
        pos = nx.spring_layout(g, seed=0)
        nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.25, width=0.6)
        nodes = nx.draw_networkx_nodes(g, pos, ax=ax, node_size=25, node_color=layer,
                                       cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"{name}: top {fraction:.0%} of edges", fontsize=11)
        ax.axis("off")
    cbar = fig.colorbar(nodes, ax=axes, label="layer", shrink=0.8)
    cbar.locator = MaxNLocator(integer=True)
    cbar.update_ticks()
    cbar.ax.yaxis.set_minor_locator(NullLocator())
    _suptitle(fig, title)
    return fig


def category_profiles(table: pd.DataFrame, title: str) -> plt.Figure:
    """Layer profile of syn_red computed per prompt category; the legend under the axes."""
    fig, ax = plt.subplots(figsize=(7, 5.2), layout="constrained")
    for cat, part in table.groupby("category", sort=False):
        ax.plot(part.depth, part.syn_red_mean, marker="o", ms=3.5, lw=1.5, label=cat)
    ax.set_xlabel(DEPTH_LABEL)
    ax.set_ylabel(PROFILE_LABEL)
    ax.set_xlim(-0.03, 1.03)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0", "0.25", "0.5", "0.75", "1"])
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8,
               frameon=False)
    _suptitle(fig, title)
    return fig


#: Fig 4b: the conditions in the paper's order (bars) and their colours.
PERTURBATION_STYLE = {
    "baseline": dict(color="0.15", label="baseline (no noise)"),
    "redundant": dict(color="tab:blue", label="redundant core"),
    "random": dict(color="0.55", label="random head sets (mean)"),
    "synergistic": dict(color="tab:red", label="synergistic core"),
}


def _at_alpha(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    return frame[np.isclose(frame.alpha.astype(float), alpha, rtol=1e-9, atol=1e-12)]


def _perturbation_bars(ax, acc: pd.DataFrame, sets: pd.DataFrame | None, alpha: float) -> None:
    """Left panel of Fig 4b: accuracy per condition at ``alpha`` (baseline at 0) with its
    interval, each random set's accuracy as a point on the random bar."""
    x = np.arange(len(PERTURBATION_STYLE))
    for k, (condition, style) in enumerate(PERTURBATION_STYLE.items()):
        row = acc[acc.condition == condition]
        row = row if condition == "baseline" else _at_alpha(row, alpha)
        if row.empty:
            continue
        r = row.iloc[0]
        ax.bar(k, r.accuracy, width=0.7, color=style["color"],
               alpha=0.45 if condition == "random" else 0.85, lw=0)
        ax.errorbar(k, r.accuracy, yerr=[[max(r.accuracy - r.ci_low, 0)],
                                         [max(r.ci_high - r.accuracy, 0)]],
                    color="black", capsize=4, lw=1.2)
    if sets is not None:
        points = _at_alpha(sets[sets.condition == "random"], alpha)
        if len(points):
            k = list(PERTURBATION_STYLE).index("random")
            jitter = np.linspace(-0.22, 0.22, len(points)) if len(points) > 1 else np.zeros(1)
            ax.scatter(k + jitter, points.accuracy, s=10, color="0.2", alpha=0.8, zorder=3, lw=0)
    ax.set_xticks(x, [c for c in PERTURBATION_STYLE], fontsize=9)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(-0.6, len(x) - 0.4)
    ax.set_xlabel(f"head set perturbed (α = {alpha:g})")
    ax.set_ylabel("task accuracy")


def _perturbation_dose(ax, acc: pd.DataFrame, sets: pd.DataFrame | None) -> None:
    """Right panel of Fig 4b: accuracy against alpha per condition with interval bands, the
    baseline as a horizontal line with its band, each random set as a faint point."""
    base = acc[acc.condition == "baseline"]
    if len(base):
        b = base.iloc[0]
        ax.axhspan(b.ci_low, b.ci_high, color=PERTURBATION_STYLE["baseline"]["color"], alpha=0.1,
                   lw=0)
        ax.axhline(b.accuracy, color=PERTURBATION_STYLE["baseline"]["color"], lw=1.4, ls="--")
        ax.errorbar(0.0, b.accuracy, yerr=[[max(b.accuracy - b.ci_low, 0)],
                                           [max(b.ci_high - b.accuracy, 0)]],
                    color=PERTURBATION_STYLE["baseline"]["color"], marker="o", ms=4, capsize=3)
    alphas = sorted(float(a) for a in acc.alpha[acc.condition != "baseline"].unique())
    if sets is not None:
        points = sets[sets.condition == "random"]
        step = 0.015 * (max(alphas) if alphas else 1.0)
        ax.scatter(points.alpha.astype(float) - step, points.accuracy, s=8, color="0.45",
                   alpha=0.35, lw=0, zorder=1)
    for condition, style in PERTURBATION_STYLE.items():
        if condition == "baseline":
            continue
        part = acc[acc.condition == condition].sort_values("alpha")
        if part.empty:
            continue
        ax.fill_between(part.alpha, part.ci_low, part.ci_high, color=style["color"], alpha=0.18,
                        lw=0)
        ax.plot(part.alpha, part.accuracy, color=style["color"], lw=1.8, marker="o", ms=4,
                ls="--" if condition == "random" else "-")
    top = max(alphas) if alphas else 1.0
    ax.set_xlim(-0.05 * top, 1.08 * top)
    # 0 (the baseline) gets a tick unless the smallest alpha would crowd it
    ticks = [a for a in alphas if a > 0]
    if not ticks or ticks[0] >= 0.15 * top:
        ticks = [0.0, *ticks]
    ax.set_xticks(ticks, [f"{a:g}" for a in ticks], fontsize=9)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("noise scale α (noise sd = α × std of the weight matrix)")
    ax.set_ylabel("task accuracy")


def _test_line(tests: pd.DataFrame | None, alpha: float) -> str:
    """The synergistic-vs-random test at ``alpha`` as a short line, or "" without one."""
    if tests is None:
        return ""
    row = _at_alpha(tests[tests.comparison == "synergistic_vs_random"], alpha)
    if row.empty:
        return ""
    r = row.iloc[0]
    return (f"synergistic − random {r['diff']:+.3f}, one-sided p = {r.p:.3g} "
            f"(floor {r.p_floor:.3g})")


def perturbation_figure(models: dict[str, dict], verdict_alpha: float, title: str,
                        ci: float = 0.95) -> plt.Figure:
    """Paper Fig 4b: task accuracy when Gaussian noise is added to the query rows and output
    columns of a head set, one row of two panels per model.

    ``models``: model -> ``accuracy`` (``perturbation/accuracy.tsv``: condition, alpha,
    accuracy, ci_low, ci_high; the baseline at alpha 0), ``sets`` (``perturbation/sets.tsv``:
    condition, set, alpha, accuracy; optional) and ``tests`` (``perturbation/tests.tsv``;
    optional: the synergistic-vs-random test at ``verdict_alpha`` goes under the panel title).
    Left: accuracy at ``verdict_alpha`` of the baseline, redundant core, random sets and
    synergistic core (the paper's order) with the ``ci`` interval as error bars, each random
    set's accuracy as a point on its bar. Right: accuracy against alpha per condition with
    interval bands, the baseline as a dashed line with its band, the random sets as faint
    points."""
    n = len(models)
    fig, axes = plt.subplots(n, 2, figsize=(10.5, 3.7 * n + 1.3), layout="constrained",
                             squeeze=False, gridspec_kw=dict(width_ratios=[1, 1.25]))
    for (model, tables), (left, right) in zip(models.items(), axes):
        acc = tables["accuracy"]
        sets = tables.get("sets")
        if _at_alpha(acc[acc.condition != "baseline"], verdict_alpha).empty:
            raise ValueError(f"{model}: no accuracy at verdict_alpha {verdict_alpha:g} (alphas: "
                             f"{sorted(set(acc.alpha))}); rerun its perturbation_stats")
        _perturbation_bars(left, acc, sets, verdict_alpha)
        _perturbation_dose(right, acc, sets)
        upper = np.nanmax(np.r_[acc.ci_high.to_numpy(float), acc.accuracy.to_numpy(float),
                                [] if sets is None else sets.accuracy.to_numpy(float)])
        top = min(1.0, max(0.05, float(upper))) * 1.1
        for ax in (left, right):
            ax.set_ylim(0, top)
        line = _test_line(tables.get("tests"), verdict_alpha)
        left.set_title(_wrap(f"{model}: α = {verdict_alpha:g}" + (f"\n{line}" if line else ""),
                             0.95 * 4.4, 9.5), fontsize=9.5)
        right.set_title(_wrap(f"{model}: accuracy against noise scale", 0.95 * 5.5, 9.5),
                        fontsize=9.5)
    handles = [(Line2D([], [], color=PERTURBATION_STYLE["baseline"]["color"], ls="--", lw=1.4),
                Patch(color=PERTURBATION_STYLE["baseline"]["color"], alpha=0.1, lw=0))]
    labels = [PERTURBATION_STYLE["baseline"]["label"]]
    for condition in ("synergistic", "redundant", "random"):
        style = PERTURBATION_STYLE[condition]
        handles.append((Line2D([], [], color=style["color"], lw=1.8, marker="o", ms=4,
                               ls="--" if condition == "random" else "-"),
                        Patch(color=style["color"], alpha=0.3, lw=0)))
        labels.append(style["label"])
    if any(t.get("sets") is not None for t in models.values()):
        handles.append(Line2D([], [], ls="", marker="o", ms=3.5, color="0.3"))
        labels.append("one random head set")
    handles.append(Line2D([], [], color="black", lw=1.2, marker="_", ms=8))
    labels.append(f"{ci:.0%} interval (error bars, bands)")
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    _suptitle(fig, title)
    return fig


FINETUNE_REGIONS = ("synergistic", "random", "redundant")     # the paper's Fig 5 order
METHOD_LABELS = {"grpo": "RL (GRPO)", "sft": "SFT"}


def _finetune_points(ax, runs: pd.DataFrame, base: float | None, selection: str) -> None:
    """Per-run accuracy (``selection`` checkpoint) per region as points with a median bar."""
    column = f"{selection}_accuracy"
    rng = np.random.default_rng(0)                  # jitter only; the same figure every time
    for x, region in enumerate(FINETUNE_REGIONS):
        values = runs.loc[runs.region == region, column].to_numpy(float)
        style = PERTURBATION_STYLE[region]
        if len(values):
            ax.scatter(x + rng.uniform(-0.12, 0.12, len(values)), values, s=22, color=style["color"],
                       alpha=0.85, zorder=3, lw=0)
            ax.hlines(np.nanmedian(values), x - 0.3, x + 0.3, color=style["color"], lw=2.2, zorder=4)
    if base is not None:
        ax.axhline(base, color=PERTURBATION_STYLE["baseline"]["color"], ls="--", lw=1.2)
    ax.set_xticks(range(len(FINETUNE_REGIONS)), [r for r in FINETUNE_REGIONS], fontsize=8.5)
    ax.set_xlim(-0.6, len(FINETUNE_REGIONS) - 0.4)
    ax.set_ylabel(f"accuracy, {selection} checkpoint", fontsize=8.5)


def _finetune_curves(ax, acc: pd.DataFrame, base: float | None) -> None:
    """Mean accuracy over seeds against the training step, per method (line style) and region."""
    for method, ls in (("grpo", "-"), ("sft", ":")):
        for region in FINETUNE_REGIONS:
            rows = acc[(acc.method == method) & (acc.region == region)]
            if rows.empty:
                continue
            curve = rows.groupby("step").accuracy.mean()
            steps, values = curve.index.to_numpy(float), curve.to_numpy(float)
            if base is not None:
                steps, values = np.r_[0.0, steps], np.r_[base, values]
            ax.plot(steps, values, ls=ls, color=PERTURBATION_STYLE[region]["color"], lw=1.6, marker="o", ms=3)
    ax.set_xlabel("training step", fontsize=8.5)
    ax.set_ylabel("accuracy (mean over seeds)", fontsize=8.5)


def _finetune_test_line(tests: pd.DataFrame | None, method: str, selection: str) -> str:
    if tests is None:
        return ""
    row = tests[(tests.method == method) & (tests.selection == selection)
                & (tests.comparison == "synergistic_vs_random")]
    if row.empty:
        return ""
    r = row.iloc[0]
    return f"syn − random {r['diff']:+.3f}, g = {r.hedges_g:.2g}, p = {r.p:.3g} (floor {r.p_floor:.2g})"


def finetune_figure(models: dict[str, dict], selection: str, title: str) -> plt.Figure:
    """Paper Fig 5: accuracy after fine-tuning only one region of heads, one row per model.

    ``models``: model -> ``accuracy`` (``finetune/accuracy.tsv``: method, region, seed, step,
    accuracy; the base model as method "base"), ``runs`` (``finetune/run_accuracy.tsv``: method,
    region, seed, best_accuracy, final_accuracy) and optionally ``tests``
    (``finetune/tests.tsv``: the synergistic-vs-random test goes under each panel title).
    One panel per method with each run's accuracy at the ``selection`` ("best" or "final")
    checkpoint as a point and the median as a bar, the base model as a dashed line; a last
    panel with accuracy against training step (GRPO solid, SFT dotted)."""
    methods = [m for m in ("grpo", "sft") if any((t["runs"].method == m).any() for t in models.values())]
    n = len(models)
    fig, axes = plt.subplots(n, len(methods) + 1, figsize=(3.6 * (len(methods) + 1) + 0.6, 3.6 * n + 1.3),
                             layout="constrained", squeeze=False)
    for (model, tables), row in zip(models.items(), axes):
        acc, runs = tables["accuracy"], tables["runs"]
        base_rows = acc[acc.method == "base"]
        base = float(base_rows.accuracy.iloc[0]) if len(base_rows) else None
        for ax, method in zip(row, methods):
            _finetune_points(ax, runs[runs.method == method], base, selection)
            line = _finetune_test_line(tables.get("tests"), method, selection)
            ax.set_title(_wrap(f"{model}: {METHOD_LABELS[method]}" + (f"\n{line}" if line else ""),
                               3.3, 9), fontsize=9)
        _finetune_curves(row[-1], acc[acc.method != "base"], base)
        row[-1].set_title(_wrap(f"{model}: accuracy against training step", 3.3, 9), fontsize=9)
        values = np.r_[acc.accuracy.to_numpy(float)]
        top = min(1.0, max(0.05, float(np.nanmax(values)))) * 1.1
        for ax in row:
            ax.set_ylim(0, top)
    handles = [Line2D([], [], color=PERTURBATION_STYLE["baseline"]["color"], ls="--", lw=1.2)]
    labels = ["base model (before fine-tuning)"]
    for region in FINETUNE_REGIONS:
        handles.append(Line2D([], [], color=PERTURBATION_STYLE[region]["color"], marker="o", ms=4, ls=""))
        labels.append(f"{region} heads trained (one run; bar: median)")
    handles += [Line2D([], [], color="0.3", ls="-"), Line2D([], [], color="0.3", ls=":")]
    labels += ["GRPO (curves)", "SFT (curves)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    _suptitle(fig, title)
    return fig


#: The scaling figure: trained models solid and coloured, random-init twins dashed grey (each
#: series a little to the side of the other, in points, so that a twin never hides its model).
SCALING_KINDS = {
    "trained": dict(color="tab:blue", ls="-", label="trained", dx=-3.5),
    "random": dict(color="0.45", ls="--", label="random-init twin", dx=3.5),
}
#: A point's marker says its verdict.
VERDICT_MARKERS = {
    "supported": dict(marker="o", filled=True),
    "not supported": dict(marker="o", filled=False),
    "inconclusive": dict(marker="X", filled=True),
}
SCALING_LABELS = {
    "inverted_u": ("inverted U: layer profile", "mid_minus_outer (middle minus\nouter thirds of syn_red)",
                   "p (layer permutation)"),
    "ablation": ("ablation: synergistic first vs random orders",
                 "ratio_synergistic_random\n(AUC ratio, > 1: more damaging)", "p (rank test)"),
}


def _parameters_label(x: float, _pos=None) -> str:
    """A parameter count as 70M, 1.4B, 300k."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _scaling_axis(ax, sizes: np.ndarray) -> None:
    """Log x axis of parameter counts with 1-2-5 ticks, a margin around the models."""
    from matplotlib.ticker import LogLocator

    ax.set_xscale("log")
    if len(sizes):
        ax.set_xlim(sizes.min() / 1.8, sizes.max() * 1.8)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_parameters_label))
    ax.xaxis.set_minor_locator(NullLocator())


def scaling_figure(points: pd.DataFrame, notes: dict, title: str, ci: float = 0.95) -> plt.Figure:
    """Each verdict against model size (:mod:`synergy_core.scaling`): one column per panel of
    :data:`synergy_core.scaling.PANELS` (inverted U, ablation); the top row the estimate with its
    ``ci`` interval and the value of no effect (dotted), the bottom row its p-value (log axis)
    with the test's floor (grey dash) and alpha 0.05. x: the parameter count, log axis; trained
    models and random-init twins as two series; the marker is the verdict (filled: supported,
    open: not supported, X: inconclusive). ``points`` and ``notes`` as
    :func:`synergy_core.scaling.scaling_points` returns them: each panel's notes (what it does
    not draw, and why) go under its title, ``notes["all"]`` into the figure title."""
    from .scaling import PANELS

    panels = list(PANELS)
    fig, axes = plt.subplots(2, len(panels), figsize=(5.0 * len(panels), 7.6), layout="constrained",
                             squeeze=False)
    sizes = np.unique(points.n_parameters.to_numpy(float))
    for col, panel in enumerate(panels):
        ax, pax = axes[0, col], axes[1, col]
        spec, (name, ylabel, plabel) = PANELS[panel], SCALING_LABELS[panel]
        ax.axhline(spec["reference"], color="0.6", ls=":", lw=1, zorder=0)
        pax.axhline(0.05, color="tab:red", ls=":", lw=1, zorder=0)
        here = points[points.panel == panel]
        for kind, style in SCALING_KINDS.items():
            rows = here[here.kind == kind].sort_values("n_parameters")
            if rows.empty:
                continue
            x = rows.n_parameters.to_numpy(float)
            est = rows.estimate.to_numpy(float)
            err = np.vstack([est - rows.ci_low.to_numpy(float), rows.ci_high.to_numpy(float) - est])
            for a, y in ((ax, est), (pax, rows.p.to_numpy(float))):
                shift = offset_copy(a.transData, fig=fig, x=style["dx"], y=0, units="points")
                a.plot(x, y, color=style["color"], ls=style["ls"], lw=1.3, transform=shift, zorder=2,
                       gid=f"scaling-{kind}-line")
                for verdict, marker in VERDICT_MARKERS.items():
                    sel = (rows.verdict == verdict).to_numpy()
                    if sel.any():
                        a.plot(x[sel], y[sel], ls="", marker=marker["marker"], ms=6.5, mew=1.3,
                               color=style["color"], mfc=style["color"] if marker["filled"] else "white",
                               transform=shift, zorder=4, gid=f"scaling-{kind}-{verdict}")
            ax.errorbar(x, est, yerr=err, fmt="none", ecolor=style["color"], elinewidth=1.2, capsize=3,
                        transform=offset_copy(ax.transData, fig=fig, x=style["dx"], y=0, units="points"),
                        zorder=3, gid=f"scaling-{kind}-interval")
            pax.plot(x, rows.p_floor.to_numpy(float), ls="", marker="_", ms=9, mew=1.5, color="0.5",
                     transform=offset_copy(pax.transData, fig=fig, x=style["dx"], y=0, units="points"),
                     zorder=3, gid=f"scaling-{kind}-floor")
        # the series are drawn through offset transforms, which autoscaling does not follow
        values = np.r_[here[["estimate", "ci_low", "ci_high"]].to_numpy(float).ravel(), spec["reference"]]
        values = values[np.isfinite(values)]
        pad = 0.08 * max(float(np.ptp(values)), 1e-3 * max(1.0, float(np.abs(values).max())))
        ax.set_ylim(values.min() - pad, values.max() + pad)
        pvals = here[["p", "p_floor"]].to_numpy(float)
        pvals = pvals[np.isfinite(pvals) & (pvals > 0)]
        pax.set_yscale("log")
        pax.set_ylim(min(0.01, pvals.min() if pvals.size else 1.0) / 2, 1.5)
        for a in (ax, pax):
            _scaling_axis(a, sizes)
            a.tick_params(labelsize=8)
        ax.set_ylabel(ylabel, fontsize=9)
        pax.set_ylabel(plabel, fontsize=9)
        pax.set_xlabel("parameters (log scale)", fontsize=9)
        lines = notes.get(panel, [])
        ax.set_title(_wrap("\n".join([name, *lines]), 4.6, 9), fontsize=9)
    handles = [Line2D([], [], color=s["color"], ls=s["ls"], lw=1.3) for s in SCALING_KINDS.values()]
    labels = [s["label"] for s in SCALING_KINDS.values()]
    for verdict, marker in VERDICT_MARKERS.items():
        handles.append(Line2D([], [], ls="", marker=marker["marker"], ms=6.5, mew=1.3, color="0.2",
                              mfc="0.2" if marker["filled"] else "white"))
        labels.append(f"verdict: {verdict}")
    handles += [Line2D([], [], color="0.2", lw=1.2, marker="|", ms=8),
                Line2D([], [], ls="", marker="_", ms=9, mew=1.5, color="0.5"),
                Line2D([], [], color="tab:red", ls=":", lw=1)]
    labels += [f"{ci:.0%} interval", "smallest p the test can give (floor)", "alpha 0.05"]
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    everywhere = notes.get("all", [])
    _suptitle(fig, " | ".join([title, *everywhere]))
    return fig

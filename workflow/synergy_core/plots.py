"""Figures. Each function takes data and returns a matplotlib Figure; rules save them (PNG + PDF).

Figure numbers refer to the paper (arXiv 2601.06851): 2a pairwise heatmaps, 2b per-head syn_red,
2c layer profile, 4a ablation curves. Information is in nats throughout.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ORDER_STYLE = {
    "synergistic_first": dict(color="tab:red", ls="-", label="synergistic first"),
    "redundant_first": dict(color="tab:blue", ls="-", label="redundant first"),
    "random": dict(color="0.3", ls="--", label="random order (mean ± std)"),
}


def _layer_ticks(ax, n_layers: int, n_heads: int, axis: str = "both") -> None:
    ticks = np.arange(n_layers) * n_heads + (n_heads - 1) / 2
    step = max(1, n_layers // 16)
    labels = [f"L{i}" if i % step == 0 else "" for i in range(n_layers)]
    if axis in ("x", "both"):
        ax.set_xticks(ticks, labels, fontsize=7)
    if axis in ("y", "both"):
        ax.set_yticks(ticks, labels, fontsize=7)


def pairwise_heatmaps(sts: np.ndarray, rtr: np.ndarray, n_layers: int, n_heads: int,
                      title: str) -> plt.Figure:
    """Fig 2a: pairwise synergy (sts) and redundancy (rtr) matrices, heads ordered by layer."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    for ax, mat, name, cmap in ((axes[0], sts, "synergy (sts)", "Reds"),
                                (axes[1], rtr, "redundancy (rtr)", "Blues")):
        im = ax.imshow(mat, cmap=cmap, interpolation="nearest")
        ax.set_title(f"pairwise {name}")
        _layer_ticks(ax, n_layers, n_heads)
        ax.set_xlabel("head (by layer)")
        ax.set_ylabel("head (by layer)")
        fig.colorbar(im, ax=ax, shrink=0.8, label="nats")
    fig.suptitle(title)
    return fig


def syn_red_heatmap(table: pd.DataFrame, title: str) -> plt.Figure:
    """Fig 2b: normalised rank difference per head, layers x heads (red synergistic, blue redundant)."""
    n_layers, n_heads = table.layer.max() + 1, table["head"].max() + 1
    grid = np.full((n_layers, n_heads), np.nan)
    grid[table.layer, table["head"]] = table.syn_red
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * n_heads + 2), max(3, 0.3 * n_layers + 1.5)),
                           constrained_layout=True)
    im = ax.imshow(grid, cmap="RdBu_r", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label="syn_red (1 = most synergistic, 0 = most redundant)")
    ax.set_title(title)
    return fig


def layer_profiles(profiles: dict[str, pd.DataFrame], title: str) -> plt.Figure:
    """Fig 2c: mean syn_red per layer over normalised depth, one line per model (± std over heads)."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, prof in profiles.items():
        line, = ax.plot(prof.depth, prof.syn_red_mean, marker="o", ms=3, label=name)
        ax.fill_between(prof.depth, prof.syn_red_mean - prof.syn_red_std,
                        prof.syn_red_mean + prof.syn_red_std, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("normalised depth (layer / (L - 1))")
    ax.set_ylabel("mean syn_red of the layer's heads")
    ax.set_ylim(-0.05, 1.05)
    ax.axhline(0.5, color="0.7", lw=0.8)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def ablation_curves(summary: pd.DataFrame, title: str) -> plt.Figure:
    """Fig 4a: mean KL (nats) against the fraction of heads removed, per order.

    ``summary`` has columns order, fraction_removed, kl_mean, kl_std (random: over seeds).
    """
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for order, style in ORDER_STYLE.items():
        part = summary[summary.order == order].sort_values("fraction_removed")
        if part.empty:
            continue
        ax.plot(part.fraction_removed, part.kl_mean, **style)
        if order == "random":
            ax.fill_between(part.fraction_removed, part.kl_mean - part.kl_std,
                            part.kl_mean + part.kl_std, color=style["color"], alpha=0.2)
    ax.set_xlabel("fraction of heads removed")
    ax.set_ylabel("KL(unablated || ablated), nats per token")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def synergy_vs_redundancy(table: pd.DataFrame, corr: dict, title: str) -> plt.Figure:
    """Diagnostic: per-head synergy vs redundancy, coloured by depth, with the correlations."""
    fig, ax = plt.subplots(figsize=(5, 4.2), constrained_layout=True)
    sc = ax.scatter(table.redundancy, table.synergy, c=table.depth, cmap="viridis", s=14)
    fig.colorbar(sc, ax=ax, label="normalised depth")
    ax.set_xlabel("mean redundancy rtr (nats)")
    ax.set_ylabel("mean synergy sts (nats)")
    ax.set_title(f"{title}\nSpearman {corr['spearman']:.2f}, Pearson {corr['pearson']:.2f}",
                 fontsize=10)
    return fig


def nan_counts(table: pd.DataFrame, n_prompts: int, title: str) -> plt.Figure:
    """Diagnostic: per head, the number of (pair, prompt) cells PhiID marked NaN."""
    fig, ax = plt.subplots(figsize=(max(5, 0.05 * len(table) + 3), 3), constrained_layout=True)
    ax.bar(np.arange(len(table)), table.nan_cells, color="tab:gray")
    ax.set_xlabel("head (layer-major)")
    ax.set_ylabel("degenerate (pair, prompt) cells")
    ax.set_title(f"{title}: {int(table.nan_cells.sum()) // 2} NaN cells of "
                 f"{len(table) * (len(table) - 1) // 2 * n_prompts}")
    return fig


def save(fig: plt.Figure, png: str, pdf: str) -> None:
    """Write the figure as PNG (150 dpi) and PDF, each atomically, and close it."""
    from .io import write_figure

    write_figure(fig, png, dpi=150)
    write_figure(fig, pdf)
    plt.close(fig)


def _step_of(revision: str | None) -> float:
    try:
        return float(str(revision).removeprefix("step"))
    except ValueError:
        return np.nan


def progression_profiles(profiles: dict[str, pd.DataFrame], revisions: dict[str, str],
                         title: str) -> plt.Figure:
    """Paper Fig 3a: layer profiles of one family's training checkpoints, coloured by step."""
    steps = {m: _step_of(revisions[m]) for m in profiles}
    finite = [s for s in steps.values() if np.isfinite(s)]
    norm = matplotlib.colors.SymLogNorm(linthresh=1, vmin=min(finite, default=0),
                                        vmax=max(finite, default=1))
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for m, prof in sorted(profiles.items(), key=lambda kv: steps[kv[0]]):
        ax.plot(prof.depth, prof.syn_red_mean, marker="o", ms=3, color=cmap(norm(steps[m])),
                label=revisions[m])
    ax.set_xlabel("normalised depth (layer / (L - 1))")
    ax.set_ylabel("mean syn_red of the layer's heads")
    ax.legend(fontsize=7, title="checkpoint", ncol=2)
    ax.set_title(title)
    return fig


def score_vs_step(scores: dict[str, pd.DataFrame], revisions: dict[str, str], score: str,
                  title: str) -> plt.Figure:
    """Inverted-U score against training step with its bootstrap CI (symlog x axis)."""
    rows = sorted(((_step_of(revisions[m]), s.set_index("score").loc[score]) for m, s in scores.items()),
                  key=lambda r: r[0])
    x = np.array([r[0] for r in rows])
    est = np.array([r[1].estimate for r in rows])
    lo = np.array([r[1].ci_low for r in rows])
    hi = np.array([r[1].ci_high for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.8), constrained_layout=True)
    ax.errorbar(x, est, yerr=[est - lo, hi - est], marker="o", capsize=3)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step")
    label = {"mid_minus_outer": "middle-third minus outer-thirds syn_red",
             "quad_coef": "quadratic coefficient of the profile (< 0: inverted U)"}
    ax.set_ylabel(label.get(score, score), fontsize=8)
    ax.set_title(title)
    return fig


def graphs_figure(sts: np.ndarray, rtr: np.ndarray, layer: np.ndarray, fraction: float,
                  title: str) -> plt.Figure:
    """Paper Fig 3b-c: the top-``fraction`` synergy and redundancy graphs, nodes coloured by layer."""
    import networkx as nx

    from .graphs import top_edges_graph

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), constrained_layout=True)
    for ax, mat, name in ((axes[0], sts, "synergy"), (axes[1], rtr, "redundancy")):
        g = top_edges_graph(mat, fraction)
        pos = nx.spring_layout(g, seed=0)
        nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.25, width=0.6)
        nodes = nx.draw_networkx_nodes(g, pos, ax=ax, node_size=25, node_color=layer,
                                       cmap="viridis")
        ax.set_title(f"{name}: top {fraction:.0%} of edges")
        ax.axis("off")
    fig.colorbar(nodes, ax=axes, label="layer", shrink=0.8)
    fig.suptitle(title)
    return fig


def category_profiles(table: pd.DataFrame, title: str) -> plt.Figure:
    """Layer profile of syn_red computed per prompt category."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for cat, part in table.groupby("category", sort=False):
        ax.plot(part.depth, part.syn_red_mean, marker="o", ms=3, label=cat)
    ax.set_xlabel("normalised depth (layer / (L - 1))")
    ax.set_ylabel("mean syn_red of the layer's heads")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return fig

"""How many heads the ablation removes: plain arithmetic, shared by the config check (which
runs at parse time and imports no numpy or pandas) and the ablation grids, so the two agree."""

from __future__ import annotations

import math


def last_removal_count(n_total_heads: int, max_fraction: float) -> int:
    """Heads removed at ``max_fraction`` of ``n_total_heads``: the last count of
    :func:`synergy_core.ablation_curves.removal_counts` (the 1e-9 absorbs float error, e.g.
    0.4 * 10)."""
    return math.floor(max_fraction * n_total_heads + 1e-9)


def min_max_fraction(n_total_heads: int) -> float:
    """The smallest ``ablation.max_fraction``, rounded up to 4 decimals, that removes one of
    ``n_total_heads`` heads: the value the messages suggest (rounding to nearest could suggest a
    value still refused, e.g. 0.08333 for 12 heads)."""
    return math.ceil(1e4 / n_total_heads) / 1e4


def perturbation_set_size(n_total_heads: int, core_fraction: float) -> int:
    """Heads in each perturbed set: ``floor(core_fraction * heads)`` (the paper's top 25%)."""
    return math.floor(core_fraction * n_total_heads + 1e-9)

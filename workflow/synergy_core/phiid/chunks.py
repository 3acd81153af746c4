"""Pair bookkeeping for sharded all-pairs PhiID: the pair list, chunk ranges, the result
container, merging chunks and scattering pairs into head x head matrices.

Pairs are the upper triangle ``(i, j)``, ``i < j``, of ``n_total_heads`` series in row-major
order; chunk ``k`` of ``n_chunks`` is a contiguous slice of that list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernel import ATOM_NAMES

N_ATOMS = len(ATOM_NAMES)


@dataclass
class PairwisePhiID:
    """PhiID atoms for a contiguous range of head pairs.

    Attributes
    ----------
    pairs : np.ndarray, int64, shape [P, 2]
        Head indices ``(i, j)`` with ``i < j``, a contiguous slice of
        :func:`upper_triangle_pairs`. Head ``i`` is the source (x, a), head ``j`` the
        target (y, b).
    atoms : np.ndarray, float64, shape [P, 16]
        Mean atoms in nats, columns in :data:`ATOM_NAMES` order. For
        ``aggregation="per_prompt"``: the NaN-ignoring mean over prompts of the per-prompt
        mean atoms (NaN when every prompt is degenerate). For ``"pooled"``: the atoms of
        the single pooled correlation matrix (see :func:`phiid_all_pairs`).
    per_prompt_sts, per_prompt_rtr : np.ndarray, float64, shape [P, n_prompts]
        Per-prompt mean synergy->synergy and redundancy->redundancy (nats), NaN for
        degenerate cells. Computed in both aggregation modes.
    nan_count : np.ndarray, int64, shape [P]
        Number of prompts whose per-prompt cell was degenerate (in both modes).
    n_prompts : int
        Number of prompts in the input.
    tau : int
        Lag in steps.
    aggregation : str
        ``"per_prompt"`` or ``"pooled"`` (``"per_prompt"`` for the phyid backend).
    """

    pairs: np.ndarray
    atoms: np.ndarray
    per_prompt_sts: np.ndarray
    per_prompt_rtr: np.ndarray
    nan_count: np.ndarray
    n_prompts: int
    tau: int
    aggregation: str

    def atom(self, name: str) -> np.ndarray:
        """Column of :attr:`atoms` for atom ``name`` (one of :data:`ATOM_NAMES`), shape [P]."""
        try:
            k = ATOM_NAMES.index(name)
        except ValueError:
            raise ValueError(f"name must be one of {ATOM_NAMES}, got {name!r}") from None
        return self.atoms[:, k]

    @property
    def sts(self) -> np.ndarray:
        """Aggregated synergy->synergy atom, shape [P] (nats)."""
        return self.atoms[:, ATOM_NAMES.index("sts")]

    @property
    def rtr(self) -> np.ndarray:
        """Aggregated redundancy->redundancy atom, shape [P] (nats)."""
        return self.atoms[:, ATOM_NAMES.index("rtr")]


def upper_triangle_pairs(n_total_heads: int) -> np.ndarray:
    """All head pairs ``(i, j)`` with ``i < j`` in row-major order.

    Parameters
    ----------
    n_total_heads : int
        Number of heads H (>= 0).

    Returns
    -------
    np.ndarray, int64, shape [H * (H - 1) / 2, 2]
        ``(0, 1), (0, 2), ..., (0, H-1), (1, 2), ..., (H-2, H-1)``.
    """
    if isinstance(n_total_heads, (bool, np.bool_)) or not isinstance(n_total_heads, (int, np.integer)):
        raise ValueError(f"n_total_heads must be a non-negative integer, got {n_total_heads!r}")
    if n_total_heads < 0:
        raise ValueError(f"n_total_heads must be >= 0, got {n_total_heads}")
    i, j = np.triu_indices(int(n_total_heads), k=1)
    return np.stack([i, j], axis=1).astype(np.int64, copy=False)


def chunk_range(n_pairs: int, n_chunks: int, k: int) -> tuple[int, int]:
    """Half-open range ``[start, stop)`` of pair indices handled by chunk ``k``.

    The ``n_chunks`` ranges are contiguous, in order, cover ``0 .. n_pairs - 1`` exactly
    once, and their sizes differ by at most one (the first ``n_pairs % n_chunks`` chunks
    get one pair more).

    Parameters
    ----------
    n_pairs : int
        Total number of pairs (>= 1).
    n_chunks : int
        Number of chunks, ``1 <= n_chunks <= n_pairs``.
    k : int
        Chunk index, ``0 <= k < n_chunks``.

    Returns
    -------
    (int, int)
        ``(start, stop)``.

    Raises
    ------
    ValueError
        Naming the offending argument when it is out of range.
    """
    for name, val in (("n_pairs", n_pairs), ("n_chunks", n_chunks), ("k", k)):
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {val!r}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if n_chunks < 1 or n_chunks > n_pairs:
        raise ValueError(f"n_chunks must be between 1 and n_pairs={n_pairs}, got {n_chunks}")
    if k < 0 or k >= n_chunks:
        raise ValueError(f"k must be between 0 and n_chunks-1={n_chunks - 1}, got {k}")
    q, r = divmod(int(n_pairs), int(n_chunks))
    start = int(k) * q + min(int(k), r)
    stop = start + q + (1 if k < r else 0)
    return start, stop


def pair_matrix(values: np.ndarray, pairs: np.ndarray, n_total_heads: int) -> np.ndarray:
    """Scatter per-pair values into a symmetric head x head matrix.

    Parameters
    ----------
    values : array_like, shape [P]
        One value per pair (e.g. ``PairwisePhiID.sts``).
    pairs : array_like, int, shape [P, 2]
        Head indices of each pair.
    n_total_heads : int
        Number of heads H.

    Returns
    -------
    np.ndarray, float64, shape [H, H]
        ``M[i, j] = M[j, i] = values[k]`` for ``pairs[k] == (i, j)``; the diagonal and
        entries of pairs not listed are NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    pairs = np.asarray(pairs)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {values.shape}")
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] != values.shape[0]:
        raise ValueError(f"pairs must have shape [{values.shape[0]}, 2], got {pairs.shape}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n_total_heads):
        raise ValueError(f"pairs must index heads in [0, n_total_heads={n_total_heads})")
    if pairs.size and np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError("pairs must not contain a head paired with itself")
    out = np.full((n_total_heads, n_total_heads), np.nan)
    out[pairs[:, 0], pairs[:, 1]] = values
    out[pairs[:, 1], pairs[:, 0]] = values
    return out


def pairs_in_range(n_total_heads, start, stop):
    """``upper_triangle_pairs(n_total_heads)[start:stop]`` without building the full list."""
    k = np.arange(start, stop, dtype=np.int64)
    rows = np.arange(n_total_heads, dtype=np.int64)
    row_start = rows * n_total_heads - rows * (rows + 1) // 2   # index of pair (i, i+1)
    i = np.searchsorted(row_start, k, side="right") - 1
    j = k - row_start[i] + i + 1 if k.size else k
    return np.stack([i, j], axis=1)


#: The atom each atom becomes when source and target are exchanged (phyid's lattice is
#: symmetric under the exchange: sts, rtr, rts and str map to themselves).
SWAPPED_ATOM: dict[str, str] = {
    "rtr": "rtr", "rtx": "rty", "rty": "rtx", "rts": "rts",
    "xtr": "ytr", "xtx": "yty", "xty": "ytx", "xts": "yts",
    "ytr": "xtr", "ytx": "xty", "yty": "xtx", "yts": "xts",
    "str": "str", "stx": "sty", "sty": "stx", "sts": "sts",
}


def atom_matrices(atoms: np.ndarray, pairs: np.ndarray, n_total_heads: int) -> np.ndarray:
    """All 16 atoms as head x head matrices, ``[16, H, H]`` float64 (nats).

    ``M[k, i, j]`` is atom ``ATOM_NAMES[k]`` with head ``i`` as source and head ``j`` as
    target, for both triangles: the lower triangle is filled from the computed ``(i < j)``
    pair through :data:`SWAPPED_ATOM`, so sts and rtr matrices are symmetric and e.g.
    ``rtx[j, i] == rty[i, j]``. Diagonal: NaN.
    """
    atoms = np.asarray(atoms, dtype=np.float64)
    pairs = np.asarray(pairs)
    out = np.full((N_ATOMS, n_total_heads, n_total_heads), np.nan)
    swap = [ATOM_NAMES.index(SWAPPED_ATOM[name]) for name in ATOM_NAMES]
    out[:, pairs[:, 0], pairs[:, 1]] = atoms.T
    out[:, pairs[:, 1], pairs[:, 0]] = atoms[:, swap].T
    return out


def merge_chunks(chunks: list[PairwisePhiID], n_total_heads: int) -> PairwisePhiID:
    """Concatenate chunk results into one covering every pair, checking that each of the
    ``H(H-1)/2`` pairs appears exactly once (raises ValueError naming the problem)."""
    if not chunks:
        raise ValueError("no chunks to merge")
    order = np.argsort([c.pairs[0, 0] * n_total_heads + c.pairs[0, 1] if len(c.pairs) else -1
                        for c in chunks], kind="stable")
    chunks = [chunks[i] for i in order]
    pairs = np.concatenate([c.pairs for c in chunks])
    expected = upper_triangle_pairs(n_total_heads)
    if pairs.shape != expected.shape or not np.array_equal(pairs, expected):
        flat = pairs[:, 0] * n_total_heads + pairs[:, 1]
        counts = np.bincount(flat, minlength=n_total_heads * n_total_heads)
        want = expected[:, 0] * n_total_heads + expected[:, 1]
        missing = int((counts[want] == 0).sum())
        dupes = int((counts > 1).sum())
        raise ValueError(f"chunks do not cover the {len(expected)} pairs exactly once: "
                         f"{missing} missing, {dupes} duplicated")
    first = chunks[0]
    for c in chunks[1:]:
        if (c.n_prompts, c.tau, c.aggregation) != (first.n_prompts, first.tau, first.aggregation):
            raise ValueError("chunks disagree on n_prompts, tau or aggregation")
    return PairwisePhiID(
        pairs=pairs,
        atoms=np.concatenate([c.atoms for c in chunks]),
        per_prompt_sts=np.concatenate([c.per_prompt_sts for c in chunks]),
        per_prompt_rtr=np.concatenate([c.per_prompt_rtr for c in chunks]),
        nan_count=np.concatenate([c.nan_count for c in chunks]),
        n_prompts=first.n_prompts, tau=first.tau, aggregation=first.aggregation,
    )

"""Integrated information decomposition (PhiID) between attention heads, pure numpy.

This module reproduces the *time-averaged* atoms of the reference library phyid
(``phyid.calculate.calc_PhiID(src, trg, tau, kind="gaussian", redundancy="MMI")``,
GitHub Imperial-MIND-lab/integrated-info-decomp, commit
``f7fe791217ef5ee16cf9222a3ed089e66f423a1f``) in closed form, for one pair of series
or for all pairs of many heads at once.

Background
----------
For a source series ``s`` and a target series ``u`` of length ``N`` and a lag ``tau``,
phyid uses ``T = N - tau`` samples of four variables::

    x(t) = s[t]        (source past)      a(t) = s[t + tau]   (source future)
    y(t) = u[t]        (target past)      b(t) = u[t + tau]   (target future)

Every *mean* Gaussian mutual information phyid computes equals
``0.5 * log(det R_AA * det R_BB / det R_{A u B})`` where ``R`` is the 4x4 sample
correlation matrix of ``(x, y, a, b)``; every MMI redundancy's mean is the minimum of two
(or four) of those mean MIs; and the 16 atoms are a fixed linear map of these 16
"knowns". So the mean atoms are a fixed function of the six off-diagonal correlations
of ``R``. For many heads, one matrix product per prompt gives the correlations between
all past windows and all future windows, and every pair's 4x4 block is gathered from it.

All information quantities are in **nats**.

Degenerate cells
----------------
phyid never returns NaN; it raises on degenerate input. Here, a (pair, prompt) cell is
*degenerate* - all 16 atoms NaN, and counted - exactly when phyid would raise:

* either series contains a non-finite value, or one of its two windows (past
  ``[0, T)`` or future ``[tau, N)``) is exactly constant (``max == min``), i.e. has
  zero variance (phyid: ``ValueError``);
* ``T = N - tau <= 4`` (the 4x4 sample correlation is then singular);
* the 4x4 correlation is numerically singular: its eigenvalues satisfy
  ``lambda_min <= 1e6 * eps_float64 * lambda_max`` (about ``2.22e-10``), the rule
  ``scipy.stats.multivariate_normal`` applies with ``allow_singular=False``
  (phyid: ``LinAlgError``). By eigenvalue interlacing the full 4x4 matrix is the binding
  one. Eigenvalues are only computed for the rare cells whose determinant is below
  ``1e-8``; a larger determinant provably gives ``lambda_min / lambda_max > 1e-9``.

Degenerate cells are never silently zero. Values right at the singularity border may
differ from phyid's decision by rounding.

Accuracy
--------
Against phyid's golden values the atoms agree to about 2e-15 nats. Determinants are
evaluated through closed-form Cholesky factors (backward stable), so for nearly
collinear but accepted cells the error stays at the level inherent in the correlation
entries, about ``eps / lambda_min`` relative (e.g. ~1e-10 nats when one series is
another plus 1e-3 noise); phyid's own local-density route has errors of the same order
there, and larger ones (~1e-12) on series with large offsets, because it does not centre
before scaling.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ATOM_NAMES",
    "MI_NAMES",
    "SINGULAR_RCOND",
    "MIN_SAMPLES",
    "DEFAULT_MAX_BLOCK_PAIRS",
    "PHYID_COMMIT",
    "PHYID_INSTALL",
    "PairwisePhiID",
    "phiid_pair",
    "phiid_pair_mis",
    "upper_triangle_pairs",
    "chunk_range",
    "phiid_all_pairs",
    "phiid_all_pairs_phyid",
    "pair_matrix",
    "SWAPPED_ATOM",
    "atom_matrices",
    "merge_chunks",
]

#: The 16 PhiID atoms in phyid's order (``PhiID_atoms_abbr``). First letter: past side,
#: last letter: future side; r = redundancy, x = unique to the source (first series),
#: y = unique to the target (second series), s = synergy.
ATOM_NAMES: tuple[str, ...] = (
    "rtr", "rtx", "rty", "rts",
    "xtr", "xtx", "xty", "xts",
    "ytr", "ytx", "yty", "yts",
    "str", "stx", "sty", "sts",
)

#: The 9 mutual informations phyid computes (x = src past, y = trg past,
#: a = src future, b = trg future), in the order of the golden file's ``mi_names``.
MI_NAMES: tuple[str, ...] = (
    "I_xta", "I_xtb", "I_yta", "I_ytb",
    "I_xyta", "I_xytb", "I_xtab", "I_ytab", "I_xytab",
)

#: scipy's singularity rule for ``multivariate_normal(allow_singular=False)``:
#: eigenvalues ``<= SINGULAR_RCOND * max|eigenvalue|`` count as zero.
SINGULAR_RCOND: float = 1e6 * float(np.finfo(np.float64).eps)

#: Smallest number of samples ``T = N - tau`` for which a 4x4 sample correlation can be
#: non-singular (phyid raises for ``T <= 4``).
MIN_SAMPLES: int = 5

#: Default number of pairs processed at once by :func:`phiid_all_pairs`.
DEFAULT_MAX_BLOCK_PAIRS: int = 8192

#: Reference phyid commit and install command for the optional phyid backend.
PHYID_COMMIT = "f7fe791217ef5ee16cf9222a3ed089e66f423a1f"
PHYID_INSTALL = (
    "pip install git+https://github.com/Imperial-MIND-lab/integrated-info-decomp@" + PHYID_COMMIT
)

# A 4x4 correlation matrix (trace 4) with det > _DET_SCREEN has
# lambda_min >= det * 27/64 and lambda_max <= 4, hence lambda_min/lambda_max > 1.05e-9,
# safely above SINGULAR_RCOND (2.2e-10). Only cells below the screen get an eigen check.
_DET_SCREEN = 1e-8

_N_ATOMS = len(ATOM_NAMES)
_N_MIS = len(MI_NAMES)
_AGGREGATIONS = ("per_prompt", "pooled")


# --------------------------------------------------------------------------------------
# Result container
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Argument checks and pair bookkeeping
# --------------------------------------------------------------------------------------
def _check_tau(tau: Any) -> int:
    if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, (int, np.integer)):
        raise ValueError(f"tau must be an integer >= 1, got {tau!r}")
    if tau < 1:
        raise ValueError(f"tau must be >= 1, got {tau}")
    return int(tau)


def upper_triangle_pairs(n_heads: int) -> np.ndarray:
    """All head pairs ``(i, j)`` with ``i < j`` in row-major order.

    Parameters
    ----------
    n_heads : int
        Number of heads H (>= 0).

    Returns
    -------
    np.ndarray, int64, shape [H * (H - 1) / 2, 2]
        ``(0, 1), (0, 2), ..., (0, H-1), (1, 2), ..., (H-2, H-1)``.
    """
    if isinstance(n_heads, (bool, np.bool_)) or not isinstance(n_heads, (int, np.integer)):
        raise ValueError(f"n_heads must be a non-negative integer, got {n_heads!r}")
    if n_heads < 0:
        raise ValueError(f"n_heads must be >= 0, got {n_heads}")
    i, j = np.triu_indices(int(n_heads), k=1)
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


def pair_matrix(values: np.ndarray, pairs: np.ndarray, n_heads: int) -> np.ndarray:
    """Scatter per-pair values into a symmetric head x head matrix.

    Parameters
    ----------
    values : array_like, shape [P]
        One value per pair (e.g. ``PairwisePhiID.sts``).
    pairs : array_like, int, shape [P, 2]
        Head indices of each pair.
    n_heads : int
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
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n_heads):
        raise ValueError(f"pairs must index heads in [0, n_heads={n_heads})")
    if pairs.size and np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError("pairs must not contain a head paired with itself")
    out = np.full((n_heads, n_heads), np.nan)
    out[pairs[:, 0], pairs[:, 1]] = values
    out[pairs[:, 1], pairs[:, 0]] = values
    return out


# --------------------------------------------------------------------------------------
# Closed-form kernel: correlations -> 9 mean MIs -> 16 mean atoms
# --------------------------------------------------------------------------------------
def _mis_from_corr(p, u, v, q, c1, c2, mis, ixa=None, iyb=None):
    """Nine mean Gaussian MIs of a batch of 4x4 correlation matrices.

    The correlation matrix of ``(x, y, a, b)`` has off-diagonals
    ``r_xy = p, r_xb = u, r_ya = v, r_ab = q, r_xa = c1, r_yb = c2``. All inputs are
    float64 arrays of shape [B]; ``mis`` is a float64 output of shape [9, B] (rows in
    :data:`MI_NAMES` order). ``ixa``/``iyb`` may pass precomputed ``I(x;a)``/``I(y;b)``.
    Returns ``det R`` (shape [B]); non-positive-definite matrices give NaN/inf (no
    warnings), which :func:`_singular_cells` flags.

    Determinants come from closed-form Cholesky factors (Schur complements), e.g.
    ``det R = det R_xy * s(a | x, y) * s(b | x, y, a)``, with ``1 - r^2`` evaluated as
    ``(1 - r)(1 + r)``. Unlike a cofactor expansion (O(1) terms cancelling to a tiny
    determinant), this is backward stable: for nearly collinear series the relative
    error of each determinant stays near ``eps / lambda_min`` instead of
    ``eps / det``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        d_xy = (1.0 - p) * (1.0 + p)        # det R_xy
        d_ab = (1.0 - q) * (1.0 + q)        # det R_ab
        d_xa = (1.0 - c1) * (1.0 + c1)
        d_yb = (1.0 - c2) * (1.0 + c2)
        d_xb = (1.0 - u) * (1.0 + u)
        d_ya = (1.0 - v) * (1.0 + v)
        # Cholesky of R in the order (x, y, a, b)
        g = 1.0 / np.sqrt(d_xy)
        l_ay = (v - p * c1) * g             # L[a, y]
        l_by = (c2 - p * u) * g             # L[b, y]
        s_a_xy = d_xa - l_ay * l_ay         # s(a | x, y) = det R_xya / det R_xy
        s_b_xy = d_xb - l_by * l_by         # s(b | x, y) = det R_xyb / det R_xy
        l_ba = (q - c1 * u - l_ay * l_by) / np.sqrt(s_a_xy)
        s_b_xya = s_b_xy - l_ba * l_ba      # s(b | x, y, a) = det R / det R_xya
        # Cholesky in the order (a, b, x) and (a, b, y)
        h = 1.0 / np.sqrt(d_ab)
        l_xb = (u - q * c1) * h
        s_x_ab = d_xa - l_xb * l_xb         # s(x | a, b) = det R_xab / det R_ab
        l_yb = (c2 - q * v) * h
        s_y_ab = d_ya - l_yb * l_yb         # s(y | a, b) = det R_yab / det R_ab
        det = d_xy * s_a_xy * s_b_xya

        if ixa is None:
            np.log(d_xa, out=mis[0])
            mis[0] *= -0.5
        else:
            mis[0] = ixa
        np.log(d_xb, out=mis[1])
        mis[1] *= -0.5
        np.log(d_ya, out=mis[2])
        mis[2] *= -0.5
        if iyb is None:
            np.log(d_yb, out=mis[3])
            mis[3] *= -0.5
        else:
            mis[3] = iyb
        np.log(s_a_xy, out=mis[4])          # I(xy; a) = -0.5 log s(a | x, y)
        np.log(s_b_xy, out=mis[5])
        np.log(s_x_ab, out=mis[6])          # I(x; ab) = -0.5 log s(x | a, b)
        np.log(s_y_ab, out=mis[7])
        mis[4:8] *= -0.5
        s_a_xy *= s_b_xya                   # det R / det R_xy
        np.divide(d_ab, s_a_xy, out=s_a_xy)
        np.log(s_a_xy, out=mis[8])          # I(xy; ab) = 0.5 log(det R_xy det R_ab / det R)
        mis[8] *= 0.5
    return det


def _atoms_from_mis(mis, out):
    """The 16 mean atoms (phyid MMI lattice) from the 9 mean MIs.

    ``mis`` has shape [9, B] (:data:`MI_NAMES` order), ``out`` shape [16, B]
    (:data:`ATOM_NAMES` order). The mean of every MMI redundancy is the minimum of the
    mean MIs it compares (phyid keeps the whole local array with the smaller mean), and
    the atoms solve phyid's 16 linear equations, written out explicitly.
    """
    with np.errstate(invalid="ignore"):   # inf - inf in degenerate cells (overwritten later)
        return _atoms_from_mis_impl(mis, out)


def _atoms_from_mis_impl(mis, out):
    ixa, ixb, iya, iyb, ixya, ixyb, ixab, iyab, ixyab = mis
    (rtr, rtx, rty, rts, xtr, xtx, xty, xts,
     ytr, ytx, yty, yts, str_, stx, sty, sts) = out
    ra = np.minimum(ixa, iya)     # Red(x, y -> a)
    rb = np.minimum(ixb, iyb)     # Red(x, y -> b)
    rx = np.minimum(ixa, ixb)     # Red(x -> a, b)
    ry = np.minimum(iya, iyb)     # Red(y -> a, b)
    np.minimum(ra, rb, out=rtr)   # double redundancy = min of the four single MIs
    np.subtract(ra, rtr, out=rtx)
    np.subtract(rb, rtr, out=rty)
    np.subtract(rx, rtr, out=xtr)
    np.subtract(ry, rtr, out=ytr)
    rab = np.minimum(ixab, iyab)  # Red(x, y -> ab)
    rxy = np.minimum(ixya, ixyb)  # Red(xy -> a, b)
    # rts = Rab - Ra - Rb + D ; str = Rxy - Rx - Ry + D
    np.subtract(rab, ra, out=rts)
    rts -= rty
    np.subtract(rxy, rx, out=str_)
    str_ -= ytr
    # xtx = I(x;a) - Ra - Rx + D etc.
    np.subtract(ixa, ra, out=xtx)
    xtx -= xtr
    np.subtract(ixb, rb, out=xty)
    xty -= xtr
    np.subtract(iya, ra, out=ytx)
    ytx -= ytr
    np.subtract(iyb, rb, out=yty)
    yty -= ytr
    # stx = I(xy;a) - I(x;a) - ytr - ytx - str ; sty = I(xy;b) - I(y;b) - xtr - xty - str
    np.subtract(ixya, ixa, out=stx)
    stx -= ytr
    stx -= ytx
    stx -= str_
    np.subtract(ixyb, iyb, out=sty)
    sty -= xtr
    sty -= xty
    sty -= str_
    # xts = I(x;ab) - Rab - xtr - xtx - xty ; yts = I(y;ab) - Rab - ytr - ytx - yty
    np.subtract(ixab, rab, out=xts)
    xts -= xtr
    xts -= xtx
    xts -= xty
    np.subtract(iyab, rab, out=yts)
    yts -= ytr
    yts -= ytx
    yts -= yty
    # sts = I(xy;ab) - (sum of the other 15 atoms)
    #     = I(xy;ab) - Rab - [xtr + xtx + xty + xts] - [ytr + ytx + yty + yts] - [str + stx + sty]
    np.subtract(ixyab, rab, out=sts)
    sts -= ixab
    sts += rab          # xtr + xtx + xty + xts = I(x;ab) - Rab
    sts -= iyab
    sts += rab          # ytr + ytx + yty + yts = I(y;ab) - Rab
    sts -= str_
    sts -= stx
    sts -= sty
    return out


def _singular_cells(p, u, v, q, c1, c2, det):
    """Boolean [B]: cells whose 4x4 correlation phyid/scipy would reject as singular."""
    bad = ~(det > _DET_SCREEN)  # also catches NaN
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return bad
    finite = np.isfinite(p[idx]) & np.isfinite(u[idx]) & np.isfinite(v[idx])
    finite &= np.isfinite(q[idx]) & np.isfinite(c1[idx]) & np.isfinite(c2[idx])
    chk = idx[finite]
    if chk.size:
        m = np.empty((chk.size, 4, 4))
        m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = m[:, 3, 3] = 1.0
        for (r, c), val in (((0, 1), p), ((0, 2), c1), ((0, 3), u),
                            ((1, 2), v), ((1, 3), c2), ((2, 3), q)):
            m[:, r, c] = m[:, c, r] = val[chk]
        ev = np.linalg.eigvalsh(m)
        ok = ev[:, 0] > SINGULAR_RCOND * np.abs(ev).max(axis=1)
        bad[chk[ok]] = False
    return bad


def _pair_cell(src, trg, tau):
    """Shared core of :func:`phiid_pair` / :func:`phiid_pair_mis`: (mis [9], atoms [16])."""
    src = np.asarray(src)
    trg = np.asarray(trg)
    if src.ndim != 1 or trg.ndim != 1:
        raise ValueError(f"src and trg must be 1-D, got shapes {src.shape} and {trg.shape}")
    if src.shape[0] != trg.shape[0]:
        raise ValueError(f"src and trg must have the same length, got {src.shape[0]} and {trg.shape[0]}")
    tau = _check_tau(tau)
    nan = np.full(_N_MIS, np.nan), np.full(_N_ATOMS, np.nan)
    if src.shape[0] - tau < MIN_SAMPLES:
        return nan
    prep = _prepare_prompt(np.stack([src, trg]), tau)
    z, valid, _ = prep
    if not valid.all():
        return nan
    zp, zf = z
    c = np.array([[zp[0] @ zp[1]], [zp[0] @ zf[1]], [zf[0] @ zp[1]], [zf[0] @ zf[1]],
                  [zp[0] @ zf[0]], [zp[1] @ zf[1]]])
    p, u, v, q, c1, c2 = c
    mis = np.empty((_N_MIS, 1))
    det = _mis_from_corr(p, u, v, q, c1, c2, mis)
    if _singular_cells(p, u, v, q, c1, c2, det)[0]:
        return nan
    atoms = _atoms_from_mis(mis, np.empty((_N_ATOMS, 1)))
    return mis[:, 0], atoms[:, 0]


def phiid_pair(src, trg, tau: int = 1) -> dict[str, float]:
    """Mean PhiID atoms (Gaussian, MMI) of one pair of series, in nats.

    Directly comparable with
    ``np.mean(phyid.calculate.calc_PhiID(src, trg, tau, kind="gaussian",
    redundancy="MMI")[0][name])`` for every atom ``name``.

    Parameters
    ----------
    src, trg : array_like, shape [N]
        Source and target series (cast to float64).
    tau : int, default 1
        Lag in steps (>= 1).

    Returns
    -------
    dict[str, float]
        The 16 atoms keyed by :data:`ATOM_NAMES`. All NaN for degenerate input
        (see the module docstring) - this function does not raise on data.

    Raises
    ------
    ValueError
        If ``src``/``trg`` are not 1-D, differ in length, or ``tau`` is not an
        integer >= 1.
    """
    _, atoms = _pair_cell(src, trg, tau)
    return {name: float(val) for name, val in zip(ATOM_NAMES, atoms)}


def phiid_pair_mis(src, trg, tau: int = 1) -> dict[str, float]:
    """The 9 mean Gaussian mutual informations phyid builds the lattice from, in nats.

    Keys are :data:`MI_NAMES` (x = src past, y = trg past, a = src future, b = trg
    future); values match ``np.mean`` of phyid's local MI arrays (``calc_res["I_res"]``).
    Degenerate input gives all NaN. Arguments and errors as :func:`phiid_pair`.
    """
    mis, _ = _pair_cell(src, trg, tau)
    return {name: float(val) for name, val in zip(MI_NAMES, mis)}


# --------------------------------------------------------------------------------------
# All pairs
# --------------------------------------------------------------------------------------
def _standardise(w):
    """Centre each row and scale it to unit Euclidean norm.

    ``w`` float64 [H, T] with finite values. Returns ``(z, ok)`` where ``z[h] @ z[h] == 1``
    (so dot products of rows are sample correlations, whatever the ddof) and ``ok[h]`` is
    False for constant rows (``max == min``), which are set to zero.
    """
    z = w - w.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ht,ht->h", z, z))
    ok = (w.max(axis=1) > w.min(axis=1)) & (norm > 0) & np.isfinite(norm)
    scale = np.zeros_like(norm)
    np.divide(1.0, norm, out=scale, where=ok)
    z *= scale[:, None]
    return z, ok


def _prepare_prompt(w, tau):
    """Standardised past/future windows of one prompt's heads.

    ``w`` [H, N] (any real dtype). Returns ``((zp, zf), valid, ac)`` with
    ``zp``/``zf`` float64 [H, T] (rows of invalid heads are zero), ``valid`` bool [H]
    and ``ac`` [H] the lag-``tau`` autocorrelation (0 for invalid heads), or None when
    ``T < 2`` (no window can be standardised).
    """
    t = w.shape[1] - tau
    if t < 2:
        return None
    w = np.asarray(w, dtype=np.float64)
    finite = np.isfinite(w).all(axis=1)
    if not finite.all():
        w = np.where(finite[:, None], w, 0.0)
    zp, okp = _standardise(w[:, :t])
    zf, okf = _standardise(w[:, tau:])
    valid = finite & okp & okf
    if not valid.all():
        zp[~valid] = 0.0
        zf[~valid] = 0.0
    ac = np.einsum("ht,ht->h", zp, zf)
    return (zp, zf), valid, ac


def _row_correlations(zp, zf, i_lo, i_hi):
    """Correlation rows for source heads ``i_lo..i_hi`` (inclusive): float64 [2K, 2H].

    Row ``k`` (``k < K``) is the past window of head ``i_lo + k``, row ``K + k`` its
    future window; columns are all past windows then all future windows. One matrix
    product (a symmetric rank-T update when all heads are needed).
    """
    n_heads = zp.shape[0]
    zall = np.concatenate([zp, zf], axis=0)
    if i_lo == 0 and i_hi == n_heads - 1:
        return zall @ zall.T
    rows = np.concatenate([zp[i_lo:i_hi + 1], zf[i_lo:i_hi + 1]], axis=0)
    return rows @ zall.T


def _pairs_in_range(n_heads, start, stop):
    """``upper_triangle_pairs(n_heads)[start:stop]`` without building the full list."""
    k = np.arange(start, stop, dtype=np.int64)
    rows = np.arange(n_heads, dtype=np.int64)
    row_start = rows * n_heads - rows * (rows + 1) // 2   # index of pair (i, i+1)
    i = np.searchsorted(row_start, k, side="right") - 1
    j = k - row_start[i] + i + 1 if k.size else k
    return np.stack([i, j], axis=1)


def _check_acts(acts):
    acts = np.asarray(acts)
    if acts.ndim != 3:
        raise ValueError(f"acts must have shape [prompts, heads, steps], got shape {acts.shape}")
    if not (np.issubdtype(acts.dtype, np.floating) or np.issubdtype(acts.dtype, np.integer)):
        raise ValueError(f"acts must be a real numeric array, got dtype {acts.dtype}")
    return acts


def _check_range(n_all, pair_start, pair_stop):
    if pair_stop is None:
        pair_stop = n_all
    for name, val in (("pair_start", pair_start), ("pair_stop", pair_stop)):
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {val!r}")
    if not 0 <= pair_start <= pair_stop <= n_all:
        raise ValueError(
            f"need 0 <= pair_start <= pair_stop <= n_pairs={n_all}, got pair_start={pair_start}, "
            f"pair_stop={pair_stop}")
    return int(pair_start), int(pair_stop)


def phiid_all_pairs(
    acts,
    tau: int = 1,
    aggregation: str = "per_prompt",
    pair_start: int = 0,
    pair_stop: int | None = None,
    max_block_pairs: int = DEFAULT_MAX_BLOCK_PAIRS,
) -> PairwisePhiID:
    """Mean PhiID atoms (Gaussian, MMI) for every pair of heads, in closed form.

    For pair ``(i, j)``, head ``i`` is the source and head ``j`` the target, so cell
    ``(i, j)`` of prompt ``n`` equals ``phiid_pair(acts[n, i], acts[n, j], tau)``.

    Parameters
    ----------
    acts : array_like, float, shape [prompts, heads, steps]
        One time series per prompt and head (e.g. per-token head output norms). Cast to
        float64 prompt by prompt.
    tau : int, default 1
        Lag in steps (>= 1).
    aggregation : {"per_prompt", "pooled"}
        ``"per_prompt"``: PhiID per prompt, then the NaN-ignoring mean over prompts.
        ``"pooled"``: one correlation matrix per pair from all within-prompt
        ``(t, t + tau)`` sample pairs of all prompts (no window crosses a prompt
        boundary). Each prompt's past and future window of each head is z-scored within
        that prompt before pooling, the cross-products are averaged over all samples and
        renormalised to a correlation; with equal window lengths this is the mean over
        prompts of the per-prompt correlation matrices. The per-prompt z-scoring removes
        between-prompt shifts in level and scale, which would otherwise show up as
        spurious (between-prompt) correlation. A prompt in which head ``i`` or ``j`` has a
        degenerate window (constant, or non-finite values) is left out of that pair's
        pool only; a pair with no usable prompt, or a singular pooled matrix, is NaN.
        The per-prompt outputs (``per_prompt_*``, ``nan_count``) are computed as in
        ``"per_prompt"`` mode (the ``T >= 5`` rule applies to them; the pooled matrix
        only has to be non-singular).
    pair_start, pair_stop : int, optional
        Compute only pairs ``upper_triangle_pairs(heads)[pair_start:pair_stop]`` (the
        workflow's chunking, see :func:`chunk_range`). Default: all pairs.
    max_block_pairs : int, default :data:`DEFAULT_MAX_BLOCK_PAIRS`
        Pairs processed at once; results do not depend on it.

    Returns
    -------
    PairwisePhiID
        Atoms ``[P, 16]``, per-prompt sts/rtr ``[P, prompts]``, ``nan_count [P]``.

    Notes
    -----
    Per prompt, the windows are centred and scaled to unit norm (cast to float64 first),
    and one matrix product of the ``2K x T`` source-head windows with all ``2H x T``
    windows gives every correlation needed (``K`` = source heads in the range, ``K = H``
    for all pairs). Each pair's six correlations are gathered from it and the
    determinants, MIs and lattice are evaluated vectorised over blocks of pairs.

    Memory: besides the input and the outputs (``8 * P * (18 + 2 * prompts)`` bytes:
    atoms, per-prompt sts/rtr, pairs, ``nan_count``), the peak working memory is about
    ``8 * 2K * 2H`` bytes for one prompt's correlation rows (twice that in pooled mode,
    plus two ``H x H`` count matrices), ``8 * 6H * steps`` for the windows, ``8 * P``
    for a counter and ``24 * P`` transiently while listing the pairs, and about
    ``8 * 60 * max_block_pairs`` bytes of per-block temporaries (4 MB at the default
    block size). It does not grow with the number of prompts. Measured (tracemalloc,
    outputs excluded): 4 MiB for 128 heads / all 8,128 pairs; 75 MiB for 1024 heads /
    all 523,776 pairs (of which 34 MiB correlation rows); 8 MiB for a 1/16 chunk of the
    1024-head pairs.

    Degenerate cells (see the module docstring) are NaN in ``per_prompt_*``, excluded
    from the mean and counted in ``nan_count``.

    Raises
    ------
    ValueError
        If ``acts`` is not 3-D, ``tau`` is not an integer >= 1, ``aggregation`` is
        unknown, the pair range is invalid or ``max_block_pairs < 1``.
    """
    acts = _check_acts(acts)
    tau = _check_tau(tau)
    if aggregation not in _AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
    if isinstance(max_block_pairs, (bool, np.bool_)) or not isinstance(max_block_pairs, (int, np.integer)) \
            or max_block_pairs < 1:
        raise ValueError(f"max_block_pairs must be an integer >= 1, got {max_block_pairs!r}")
    n_prompts, n_heads, n_steps = acts.shape
    n_all = n_heads * (n_heads - 1) // 2
    pair_start, pair_stop = _check_range(n_all, pair_start, pair_stop)
    pairs = _pairs_in_range(n_heads, pair_start, pair_stop)
    n_pairs = pairs.shape[0]
    pooled = aggregation == "pooled"
    t = n_steps - tau

    per_sts = np.full((n_pairs, n_prompts), np.nan)
    per_rtr = np.full((n_pairs, n_prompts), np.nan)
    result = PairwisePhiID(
        pairs=pairs, atoms=np.full((n_pairs, _N_ATOMS), np.nan), per_prompt_sts=per_sts,
        per_prompt_rtr=per_rtr, nan_count=np.full(n_pairs, n_prompts, dtype=np.int64),
        n_prompts=int(n_prompts), tau=tau, aggregation=aggregation)
    cells_possible = t >= MIN_SAMPLES
    if n_pairs == 0 or n_prompts == 0 or (not pooled and not cells_possible) or t < 2:
        return result
    count = np.zeros(n_pairs, dtype=np.int64)
    # per_prompt: running sum over prompts, in the output's [P, 16] layout (becomes the mean)
    atoms_sum = None if pooled else result.atoms
    if atoms_sum is not None:
        atoms_sum[...] = 0.0

    i_lo = int(pairs[0, 0])
    i_hi = int(pairs[-1, 0])
    n_rows = i_hi - i_lo + 1                 # K source heads
    width = 2 * n_heads                      # columns of the correlation rows
    blocks = [(b0, min(b0 + max_block_pairs, n_pairs)) for b0 in range(0, n_pairs, max_block_pairs)]
    bsz = min(max_block_pairs, n_pairs)
    mis = np.empty((_N_MIS, bsz))
    atoms = np.empty((_N_ATOMS, bsz))

    if pooled:
        corr_sum = np.zeros((2 * n_rows, width))
        valid_all = np.zeros((n_prompts, n_heads))
        ac_all = np.zeros((n_prompts, n_heads))

    for n in range(n_prompts):
        prep = _prepare_prompt(acts[n], tau)
        (zp, zf), valid, ac = prep
        corr = _row_correlations(zp, zf, i_lo, i_hi)
        if pooled:
            corr_sum += corr
            valid_all[n] = valid
            ac_all[n] = ac
        if not cells_possible:
            continue
        all_valid = bool(valid.all())
        with np.errstate(divide="ignore", invalid="ignore"):
            mi_auto = np.log((1.0 - ac) * (1.0 + ac))
            mi_auto *= -0.5
        flat = corr.reshape(-1)
        for b0, b1 in blocks:
            nb = b1 - b0
            pi = pairs[b0:b1, 0]
            pj = pairs[b0:b1, 1]
            base = (pi - i_lo) * width + pj
            p = flat[base]
            u = flat[base + n_heads]
            base += n_rows * width
            v = flat[base]
            q = flat[base + n_heads]
            c1 = ac[pi]
            c2 = ac[pj]
            m = mis[:, :nb]
            det = _mis_from_corr(p, u, v, q, c1, c2, m, mi_auto[pi], mi_auto[pj])
            a = _atoms_from_mis(m, atoms[:, :nb])
            bad = _singular_cells(p, u, v, q, c1, c2, det)
            if not all_valid:
                bad |= ~(valid[pi] & valid[pj])
            if bad.any():
                a[:, bad] = np.nan
                per_sts[b0:b1, n] = a[15]
                per_rtr[b0:b1, n] = a[0]
                a[:, bad] = 0.0
                count[b0:b1] += ~bad
            else:
                per_sts[b0:b1, n] = a[15]
                per_rtr[b0:b1, n] = a[0]
                count[b0:b1] += 1
            if atoms_sum is not None:
                atoms_sum[b0:b1] += a.T

    if cells_possible:
        np.subtract(n_prompts, count, out=result.nan_count)
    if pooled:
        _pooled_atoms(result, corr_sum, valid_all, ac_all, i_lo, n_rows, blocks)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            atoms_sum /= count[:, None]    # 0 / 0 -> NaN where every prompt is degenerate
    return result


def _pooled_atoms(result, corr_sum, valid_all, ac_all, i_lo, n_rows, blocks):
    """Fill ``result.atoms`` from the pooled (prompt-averaged) correlation matrices."""
    pairs = result.pairs
    n_heads = valid_all.shape[1]
    width = 2 * n_heads
    n_ij = valid_all.T @ valid_all           # prompts where both heads are usable
    ac_ij = ac_all.T @ valid_all             # [i, j]: sum of ac_i over those prompts
    flat = corr_sum.reshape(-1)
    out = result.atoms
    for b0, b1 in blocks:
        nb = b1 - b0
        pi = pairs[b0:b1, 0]
        pj = pairs[b0:b1, 1]
        cnt = n_ij[pi, pj]
        base = (pi - i_lo) * width + pj
        with np.errstate(divide="ignore", invalid="ignore"):   # cnt == 0 -> NaN, flagged below
            p = flat[base] / cnt
            u = flat[base + n_heads] / cnt
            base += n_rows * width
            v = flat[base] / cnt
            q = flat[base + n_heads] / cnt
            c1 = ac_ij[pi, pj] / cnt
            c2 = ac_ij[pj, pi] / cnt
        mis = np.empty((_N_MIS, nb))
        det = _mis_from_corr(p, u, v, q, c1, c2, mis)
        a = _atoms_from_mis(mis, np.empty((_N_ATOMS, nb)))
        bad = _singular_cells(p, u, v, q, c1, c2, det) | (cnt == 0)
        a[:, bad] = np.nan
        out[b0:b1] = a.T


# --------------------------------------------------------------------------------------
# Reference backend: the real phyid library, one call per (pair, prompt)
# --------------------------------------------------------------------------------------
_PHYID_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_worker_state: dict[str, Any] = {}


def _import_phyid():
    try:
        from phyid.calculate import calc_PhiID
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The phyid backend needs the reference library phyid, which is not on PyPI. "
            f"Install it with: {PHYID_INSTALL}") from exc
    return calc_PhiID


def _phyid_worker_init(acts, tau):
    """Pool initializer: one BLAS thread per worker, data kept in the worker."""
    for var in _PHYID_ENV:
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits
        _worker_state["limits"] = threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover - env vars above cover spawned workers
        pass
    _worker_state["acts"] = acts
    _worker_state["tau"] = tau
    _worker_state["calc"] = _import_phyid()


def _phyid_pair_task(pair):
    """All prompts of one pair with phyid: float64 [prompts, 16], NaN where phyid raised."""
    i, j = pair
    acts = _worker_state["acts"]
    tau = _worker_state["tau"]
    calc = _worker_state["calc"]
    out = np.full((acts.shape[0], _N_ATOMS), np.nan)
    for n in range(acts.shape[0]):
        src = np.asarray(acts[n, i], dtype=np.float64)
        trg = np.asarray(acts[n, j], dtype=np.float64)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                res, _ = calc(src, trg, tau, kind="gaussian", redundancy="MMI")
        except (ValueError, np.linalg.LinAlgError):
            continue
        row = np.array([np.mean(res[name]) for name in ATOM_NAMES])
        if np.all(np.isfinite(row)):
            out[n] = row
    return out


def phiid_all_pairs_phyid(
    acts,
    tau: int = 1,
    pair_start: int = 0,
    pair_stop: int | None = None,
    n_workers: int = 1,
    aggregation: str = "per_prompt",
) -> PairwisePhiID:
    """Same result as :func:`phiid_all_pairs`, computed with the reference library phyid.

    Calls ``phyid.calculate.calc_PhiID(src, trg, tau, kind="gaussian", redundancy="MMI")``
    once per (pair, prompt) and takes the mean of each local atom array. Cells where phyid
    raises ``ValueError`` or ``LinAlgError`` (or returns a non-finite mean) are NaN and
    counted in ``nan_count``. About 2 ms per call: use it to validate, not for production.

    Parameters
    ----------
    acts : array_like, float, shape [prompts, heads, steps]
    tau : int, default 1
    pair_start, pair_stop : int, optional
        Pair range, as in :func:`phiid_all_pairs`.
    n_workers : int, default 1
        Worker processes (``multiprocessing.Pool``); each is limited to one BLAS thread.
        ``1`` runs in this process.
    aggregation : {"per_prompt"}
        Only per-prompt aggregation is supported by this backend.

    Returns
    -------
    PairwisePhiID

    Raises
    ------
    ImportError
        If phyid is not installed (the message gives the install command).
    ValueError
        On invalid arguments, or ``aggregation != "per_prompt"``.
    """
    acts = _check_acts(acts)
    tau = _check_tau(tau)
    if aggregation != "per_prompt":
        raise ValueError(f"the phyid backend supports only aggregation='per_prompt', got {aggregation!r}")
    if isinstance(n_workers, (bool, np.bool_)) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    _import_phyid()
    n_prompts, n_heads, _ = acts.shape
    pair_start, pair_stop = _check_range(n_heads * (n_heads - 1) // 2, pair_start, pair_stop)
    pairs = _pairs_in_range(n_heads, pair_start, pair_stop)
    tasks = [(int(i), int(j)) for i, j in pairs]
    if n_workers == 1 or len(tasks) <= 1:
        saved = dict(_worker_state)
        try:
            _worker_state.update(acts=acts, tau=tau, calc=_import_phyid())
            cells = [_phyid_pair_task(t) for t in tasks]
        finally:
            _worker_state.clear()
            _worker_state.update(saved)
    else:
        import multiprocessing

        old_env = {var: os.environ.get(var) for var in _PHYID_ENV}
        os.environ.update({var: "1" for var in _PHYID_ENV})  # for spawned workers
        try:
            with multiprocessing.Pool(n_workers, initializer=_phyid_worker_init,
                                      initargs=(acts, tau)) as pool:
                chunksize = max(1, len(tasks) // (4 * n_workers))
                cells = pool.map(_phyid_pair_task, tasks, chunksize=chunksize)
        finally:
            for var, val in old_env.items():
                if val is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = val
    cube = np.stack(cells) if cells else np.empty((0, n_prompts, _N_ATOMS))  # [P, prompts, 16]
    ok = np.isfinite(cube).all(axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of empty slice
        atoms = np.nanmean(cube, axis=1) if n_prompts else np.full((len(tasks), _N_ATOMS), np.nan)
    return PairwisePhiID(
        pairs=pairs,
        atoms=np.ascontiguousarray(atoms, dtype=np.float64),
        per_prompt_sts=np.ascontiguousarray(cube[:, :, ATOM_NAMES.index("sts")]),
        per_prompt_rtr=np.ascontiguousarray(cube[:, :, ATOM_NAMES.index("rtr")]),
        nan_count=(n_prompts - ok.sum(axis=1)).astype(np.int64),
        n_prompts=int(n_prompts),
        tau=tau,
        aggregation="per_prompt",
    )


#: The atom each atom becomes when source and target are exchanged (phyid's lattice is
#: symmetric under the exchange: sts, rtr, rts and str map to themselves).
SWAPPED_ATOM: dict[str, str] = {
    "rtr": "rtr", "rtx": "rty", "rty": "rtx", "rts": "rts",
    "xtr": "ytr", "xtx": "yty", "xty": "ytx", "xts": "yts",
    "ytr": "xtr", "ytx": "xty", "yty": "xtx", "yts": "xts",
    "str": "str", "stx": "sty", "sty": "stx", "sts": "sts",
}


def atom_matrices(atoms: np.ndarray, pairs: np.ndarray, n_heads: int) -> np.ndarray:
    """All 16 atoms as head x head matrices, ``[16, H, H]`` float64 (nats).

    ``M[k, i, j]`` is atom ``ATOM_NAMES[k]`` with head ``i`` as source and head ``j`` as
    target, for both triangles: the lower triangle is filled from the computed ``(i < j)``
    pair through :data:`SWAPPED_ATOM`, so sts and rtr matrices are symmetric and e.g.
    ``rtx[j, i] == rty[i, j]``. Diagonal: NaN.
    """
    atoms = np.asarray(atoms, dtype=np.float64)
    pairs = np.asarray(pairs)
    out = np.full((_N_ATOMS, n_heads, n_heads), np.nan)
    swap = [ATOM_NAMES.index(SWAPPED_ATOM[name]) for name in ATOM_NAMES]
    out[:, pairs[:, 0], pairs[:, 1]] = atoms.T
    out[:, pairs[:, 1], pairs[:, 0]] = atoms[:, swap].T
    return out


def merge_chunks(chunks: list[PairwisePhiID], n_heads: int) -> PairwisePhiID:
    """Concatenate chunk results into one covering every pair, checking that each of the
    ``H(H-1)/2`` pairs appears exactly once (raises ValueError naming the problem)."""
    if not chunks:
        raise ValueError("no chunks to merge")
    order = np.argsort([c.pairs[0, 0] * n_heads + c.pairs[0, 1] if len(c.pairs) else -1
                        for c in chunks], kind="stable")
    chunks = [chunks[i] for i in order]
    pairs = np.concatenate([c.pairs for c in chunks])
    expected = upper_triangle_pairs(n_heads)
    if pairs.shape != expected.shape or not np.array_equal(pairs, expected):
        flat = pairs[:, 0] * n_heads + pairs[:, 1]
        counts = np.bincount(flat, minlength=n_heads * n_heads)
        want = expected[:, 0] * n_heads + expected[:, 1]
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

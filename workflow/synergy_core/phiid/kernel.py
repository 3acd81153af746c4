"""Closed-form Gaussian/MMI PhiID kernel: 4x4 correlations -> 9 mean MIs -> 16 mean atoms.

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

from typing import Any

import numpy as np

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

# A 4x4 correlation matrix (trace 4) with det > _DET_SCREEN has
# lambda_min >= det * 27/64 and lambda_max <= 4, hence lambda_min/lambda_max > 1.05e-9,
# safely above SINGULAR_RCOND (2.2e-10). Only cells below the screen get an eigen check.
_DET_SCREEN = 1e-8

N_ATOMS = len(ATOM_NAMES)
N_MIS = len(MI_NAMES)


def check_tau(tau: Any) -> int:
    if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, (int, np.integer)):
        raise ValueError(f"tau must be an integer >= 1, got {tau!r}")
    if tau < 1:
        raise ValueError(f"tau must be >= 1, got {tau}")
    return int(tau)



def mis_from_corr(p, u, v, q, c1, c2, mis, ixa=None, iyb=None):
    """Nine mean Gaussian MIs of a batch of 4x4 correlation matrices.

    The correlation matrix of ``(x, y, a, b)`` has off-diagonals
    ``r_xy = p, r_xb = u, r_ya = v, r_ab = q, r_xa = c1, r_yb = c2``. All inputs are
    float64 arrays of shape [B]; ``mis`` is a float64 output of shape [9, B] (rows in
    :data:`MI_NAMES` order). ``ixa``/``iyb`` may pass precomputed ``I(x;a)``/``I(y;b)``.
    Returns ``det R`` (shape [B]); non-positive-definite matrices give NaN/inf (no
    warnings), which :func:`singular_cells` flags.

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


def atoms_from_mis(mis, out):
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


def singular_cells(p, u, v, q, c1, c2, det):
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
    tau = check_tau(tau)
    nan = np.full(N_MIS, np.nan), np.full(N_ATOMS, np.nan)
    if src.shape[0] - tau < MIN_SAMPLES:
        return nan
    prep = prepare_prompt(np.stack([src, trg]), tau)
    z, valid, _ = prep
    if not valid.all():
        return nan
    zp, zf = z
    c = np.array([[zp[0] @ zp[1]], [zp[0] @ zf[1]], [zf[0] @ zp[1]], [zf[0] @ zf[1]],
                  [zp[0] @ zf[0]], [zp[1] @ zf[1]]])
    p, u, v, q, c1, c2 = c
    mis = np.empty((N_MIS, 1))
    det = mis_from_corr(p, u, v, q, c1, c2, mis)
    if singular_cells(p, u, v, q, c1, c2, det)[0]:
        return nan
    atoms = atoms_from_mis(mis, np.empty((N_ATOMS, 1)))
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


def prepare_prompt(w, tau):
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

"""All-pairs driver: the closed-form kernel over every head pair (or a chunk of pairs) of a
``[prompts, heads, steps]`` activation array, per prompt or pooled over prompts."""

from __future__ import annotations

import numpy as np

from .chunks import PairwisePhiID, pairs_in_range
from .kernel import (
    MIN_SAMPLES,
    N_ATOMS,
    N_MIS,
    atoms_from_mis,
    check_tau,
    mis_from_corr,
    prepare_prompt,
    singular_cells,
)

#: Default number of pairs processed at once by :func:`phiid_all_pairs`.
DEFAULT_MAX_BLOCK_PAIRS: int = 8192

_AGGREGATIONS = ("per_prompt", "pooled")


def _row_correlations(zp, zf, i_lo, i_hi):
    """Correlation rows for source heads ``i_lo..i_hi`` (inclusive): float64 [2K, 2H].

    Row ``k`` (``k < K``) is the past window of head ``i_lo + k``, row ``K + k`` its
    future window; columns are all past windows then all future windows.

    The full ``2H x 2H`` product is computed whatever the range and then sliced: a product of
    only the needed rows can round differently (BLAS picks kernels and summation order by
    shape), and the merged result must not depend on how the pairs were chunked. The full
    product costs ``4 H^2 T`` flops per prompt, small next to the per-pair work.
    """
    n_total_heads = zp.shape[0]
    zall = np.concatenate([zp, zf], axis=0)
    full = zall @ zall.T
    if i_lo == 0 and i_hi == n_total_heads - 1:
        return full
    rows = np.r_[i_lo:i_hi + 1, n_total_heads + i_lo:n_total_heads + i_hi + 1]
    return full[rows]


def check_acts(acts):
    acts = np.asarray(acts)
    if acts.ndim != 3:
        raise ValueError(f"acts must have shape [prompts, heads, steps], got shape {acts.shape}")
    if not (np.issubdtype(acts.dtype, np.floating) or np.issubdtype(acts.dtype, np.integer)):
        raise ValueError(f"acts must be a real numeric array, got dtype {acts.dtype}")
    return acts


def check_range(n_all, pair_start, pair_stop):
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
    acts = check_acts(acts)
    tau = check_tau(tau)
    if aggregation not in _AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
    if isinstance(max_block_pairs, (bool, np.bool_)) or not isinstance(max_block_pairs, (int, np.integer)) \
            or max_block_pairs < 1:
        raise ValueError(f"max_block_pairs must be an integer >= 1, got {max_block_pairs!r}")
    n_prompts, n_total_heads, n_steps = acts.shape
    n_all = n_total_heads * (n_total_heads - 1) // 2
    pair_start, pair_stop = check_range(n_all, pair_start, pair_stop)
    pairs = pairs_in_range(n_total_heads, pair_start, pair_stop)
    n_pairs = pairs.shape[0]
    pooled = aggregation == "pooled"
    t = n_steps - tau

    per_sts = np.full((n_pairs, n_prompts), np.nan)
    per_rtr = np.full((n_pairs, n_prompts), np.nan)
    result = PairwisePhiID(
        pairs=pairs, atoms=np.full((n_pairs, N_ATOMS), np.nan), per_prompt_sts=per_sts,
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
    width = 2 * n_total_heads                      # columns of the correlation rows
    blocks = [(b0, min(b0 + max_block_pairs, n_pairs)) for b0 in range(0, n_pairs, max_block_pairs)]
    bsz = min(max_block_pairs, n_pairs)
    mis = np.empty((N_MIS, bsz))
    atoms = np.empty((N_ATOMS, bsz))

    if pooled:
        corr_sum = np.zeros((2 * n_rows, width))
        valid_all = np.zeros((n_prompts, n_total_heads))
        ac_all = np.zeros((n_prompts, n_total_heads))

    for n in range(n_prompts):
        prep = prepare_prompt(acts[n], tau)
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
            u = flat[base + n_total_heads]
            base += n_rows * width
            v = flat[base]
            q = flat[base + n_total_heads]
            c1 = ac[pi]
            c2 = ac[pj]
            m = mis[:, :nb]
            det = mis_from_corr(p, u, v, q, c1, c2, m, mi_auto[pi], mi_auto[pj])
            a = atoms_from_mis(m, atoms[:, :nb])
            bad = singular_cells(p, u, v, q, c1, c2, det)
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
    n_total_heads = valid_all.shape[1]
    width = 2 * n_total_heads
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
            u = flat[base + n_total_heads] / cnt
            base += n_rows * width
            v = flat[base] / cnt
            q = flat[base + n_total_heads] / cnt
            c1 = ac_ij[pi, pj] / cnt
            c2 = ac_ij[pj, pi] / cnt
        mis = np.empty((N_MIS, nb))
        det = mis_from_corr(p, u, v, q, c1, c2, mis)
        a = atoms_from_mis(mis, np.empty((N_ATOMS, nb)))
        bad = singular_cells(p, u, v, q, c1, c2, det) | (cnt == 0)
        a[:, bad] = np.nan
        out[b0:b1] = a.T

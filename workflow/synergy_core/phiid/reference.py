"""Reference backend: the real phyid library, one call per (pair, prompt), in a process pool.

Slow (about 2 ms per call); it exists to validate the closed-form kernel on real data.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..runtime import THREAD_ENV_VARS
from .all_pairs import check_acts, check_range
from .chunks import PairwisePhiID, pairs_in_range
from .kernel import ATOM_NAMES, N_ATOMS, check_tau

#: Reference phyid commit and install command for the optional phyid backend.
PHYID_COMMIT = "f7fe791217ef5ee16cf9222a3ed089e66f423a1f"
PHYID_INSTALL = (
    "pip install git+https://github.com/Imperial-MIND-lab/integrated-info-decomp@" + PHYID_COMMIT
)

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
    for var in THREAD_ENV_VARS:
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
    out = np.full((acts.shape[0], N_ATOMS), np.nan)
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
    acts = check_acts(acts)
    tau = check_tau(tau)
    if aggregation != "per_prompt":
        raise ValueError(f"the phyid backend supports only aggregation='per_prompt', got {aggregation!r}")
    if isinstance(n_workers, (bool, np.bool_)) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    _import_phyid()
    n_prompts, n_total_heads, _ = acts.shape
    pair_start, pair_stop = check_range(n_total_heads * (n_total_heads - 1) // 2, pair_start, pair_stop)
    pairs = pairs_in_range(n_total_heads, pair_start, pair_stop)
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

        old_env = {var: os.environ.get(var) for var in THREAD_ENV_VARS}
        os.environ.update({var: "1" for var in THREAD_ENV_VARS})  # for spawned workers
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
    cube = np.stack(cells) if cells else np.empty((0, n_prompts, N_ATOMS))  # [P, prompts, 16]
    ok = np.isfinite(cube).all(axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of empty slice
        atoms = np.nanmean(cube, axis=1) if n_prompts else np.full((len(tasks), N_ATOMS), np.nan)
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

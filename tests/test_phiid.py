"""Tests of the closed-form PhiID engine (synergy_core.phiid: kernel, all-pairs driver, chunks, phyid backend).

Reference values: tests/data/phyid_gaussian_mmi.npz, computed with phyid (see tests/data/README.md).
A small emulation of phyid's local Gaussian/MMI route (written from the algorithm notes: local
entropies through scipy's multivariate normal, MMI by comparing means, the 16x16 linear system)
serves as an independent reference for random data and for the singularity rule, and as a
stand-in for the phyid backend's plumbing when phyid itself is not installed.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from synergy_core.phiid.all_pairs import phiid_all_pairs
from synergy_core.phiid.chunks import PairwisePhiID, chunk_range, pair_matrix, upper_triangle_pairs
from synergy_core.phiid.kernel import ATOM_NAMES, MI_NAMES, phiid_pair, phiid_pair_mis
from synergy_core.phiid.reference import PHYID_INSTALL, phiid_all_pairs_phyid

GOLDEN = Path(__file__).parent / "data" / "phyid_gaussian_mmi.npz"
GOLDEN_SHA256 = "e73f4977e092b105a168be2e18b6df553005d4fb76aa9b516339cc016a4ac005"
ATOL = 1e-10
SWAP = {"rtx": "rty", "xtx": "yty", "xty": "ytx", "xts": "yts", "stx": "sty", "xtr": "ytr"}
SWAP.update({v: k for k, v in SWAP.items()})
SWAP.update({k: k for k in ("rtr", "rts", "str", "sts")})
I_STS = ATOM_NAMES.index("sts")
I_RTR = ATOM_NAMES.index("rtr")


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as g:
        return {k: g[k] for k in g.files}


def _vec(d, names=ATOM_NAMES):
    return np.array([d[n] for n in names])


def _case(g, k):
    n = int(g["n"][k])
    return g["src"][k, :n], g["trg"][k, :n], int(g["tau"][k])


def _ar_acts(rng, n_prompts, n_heads, n_steps, mix=0.4):
    """Positive, cross-coupled AR(1) series [prompts, heads, steps]."""
    phi = rng.uniform(0.1, 0.8, size=(n_heads,))
    w = rng.normal(scale=mix, size=(n_heads, n_heads)) / np.sqrt(n_heads)
    x = np.zeros((n_prompts, n_heads, n_steps))
    x[:, :, 0] = rng.standard_normal((n_prompts, n_heads))
    for t in range(1, n_steps):
        x[:, :, t] = phi * x[:, :, t - 1] + x[:, :, t - 1] @ w.T + rng.standard_normal((n_prompts, n_heads))
    return np.exp(0.3 * x) + 1.0


# --------------------------------------------------------------------------------------
# phyid emulation (reference), from the algorithm notes
# --------------------------------------------------------------------------------------
_EQUATIONS = [  # knowns (phyid's order) as sums of atoms
    ["rtr"], ["rtr", "rtx"], ["rtr", "rty"], ["rtr", "rtx", "rty", "rts"],
    ["rtr", "xtr"], ["rtr", "ytr"], ["rtr", "xtr", "ytr", "str"],
    ["rtr", "rtx", "xtr", "xtx"], ["rtr", "rty", "xtr", "xty"],
    ["rtr", "rtx", "ytr", "ytx"], ["rtr", "rty", "ytr", "yty"],
    ["rtr", "rtx", "xtr", "xtx", "ytr", "ytx", "str", "stx"],
    ["rtr", "rty", "xtr", "xty", "ytr", "yty", "str", "sty"],
    ["rtr", "rtx", "rty", "rts", "xtr", "xtx", "xty", "xts"],
    ["rtr", "rtx", "rty", "rts", "ytr", "ytx", "yty", "yts"],
    list(ATOM_NAMES),
]
_M = np.array([[1.0 if a in eq else 0.0 for a in ATOM_NAMES] for eq in _EQUATIONS])


def emulated_calc_phiid(src, trg, tau, kind="gaussian", redundancy="MMI"):
    """phyid's Gaussian/MMI calc_PhiID, re-derived from its description (local arrays)."""
    from scipy.stats import multivariate_normal

    assert kind == "gaussian" and redundancy == "MMI"
    src = np.asarray(src, dtype=np.float64)
    trg = np.asarray(trg, dtype=np.float64)
    v = np.vstack([src[:-tau], trg[:-tau], src[tau:], trg[tau:]])  # x, y, a, b
    with np.errstate(divide="ignore", invalid="ignore"):
        z = v / v.std(axis=1, ddof=1, keepdims=True)  # no centring, as phyid
    mean = z.mean(axis=1)
    cov = np.cov(z)

    def h(idx):
        idx = list(idx)
        pdf = multivariate_normal.pdf(z[idx].T, mean=mean[idx], cov=cov[np.ix_(idx, idx)])
        return -np.log(np.atleast_1d(pdf))

    def mi(a_idx, b_idx):
        return h(a_idx) + h(b_idx) - h(sorted(set(a_idx) | set(b_idx)))

    X, Y, A, B = 0, 1, 2, 3
    i_xa, i_xb, i_ya, i_yb = mi([X], [A]), mi([X], [B]), mi([Y], [A]), mi([Y], [B])
    i_xya, i_xyb = mi([X, Y], [A]), mi([X, Y], [B])
    i_xab, i_yab = mi([X], [A, B]), mi([Y], [A, B])
    i_xyab = mi([X, Y], [A, B])

    def mmi(p, q):  # whole local array of the smaller mean; ties -> second
        return p if np.mean(p) < np.mean(q) else q

    four = [i_xa, i_xb, i_ya, i_yb]
    dred = four[int(np.argmin([np.mean(f) for f in four]))]
    knowns = np.vstack([
        dred, mmi(i_xa, i_ya), mmi(i_xb, i_yb), mmi(i_xab, i_yab),
        mmi(i_xa, i_xb), mmi(i_ya, i_yb), mmi(i_xya, i_xyb),
        i_xa, i_xb, i_ya, i_yb, i_xya, i_xyb, i_xab, i_yab, i_xyab,
    ])
    atoms = np.linalg.solve(_M, knowns)
    mis = dict(zip(MI_NAMES, [i_xa, i_xb, i_ya, i_yb, i_xya, i_xyb, i_xab, i_yab, i_xyab]))
    return dict(zip(ATOM_NAMES, atoms)), {"I_res": mis}


def emulated_means(src, trg, tau):
    """16 mean atoms from the emulation, NaN where it raises (as phyid would)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            atoms, _ = emulated_calc_phiid(src, trg, tau)
    except (ValueError, np.linalg.LinAlgError):
        return np.full(16, np.nan)
    return np.array([np.mean(atoms[n]) for n in ATOM_NAMES])


@pytest.fixture
def fake_phyid(monkeypatch):
    """Install the emulation as a module named phyid (for the backend's plumbing)."""
    pkg = types.ModuleType("phyid")
    calc = types.ModuleType("phyid.calculate")
    calc.calc_PhiID = emulated_calc_phiid
    pkg.calculate = calc
    monkeypatch.setitem(sys.modules, "phyid", pkg)
    monkeypatch.setitem(sys.modules, "phyid.calculate", calc)
    return calc


# --------------------------------------------------------------------------------------
# Golden file
# --------------------------------------------------------------------------------------
def test_golden_file_checksum():
    assert hashlib.sha256(GOLDEN.read_bytes()).hexdigest() == GOLDEN_SHA256


def test_names_match_golden(golden):
    assert ATOM_NAMES == tuple(golden["atom_names"])
    assert MI_NAMES == tuple(golden["mi_names"])


@pytest.mark.parametrize("k", range(88))
def test_golden_case(golden, k):
    src, trg, tau = _case(golden, k)
    np.testing.assert_allclose(_vec(phiid_pair(src, trg, tau)), golden["atoms_mean"][k], rtol=0, atol=ATOL)
    np.testing.assert_allclose(_vec(phiid_pair_mis(src, trg, tau), MI_NAMES), golden["mis_mean"][k],
                               rtol=0, atol=ATOL)


def test_golden_realistic_all_pairs(golden):
    series = golden["real_series_0"]
    res = phiid_all_pairs(series[None], tau=1)
    cases = np.flatnonzero(golden["real_group"] == 0)
    assert cases.tolist() == list(range(60, 88))
    np.testing.assert_array_equal(res.pairs, np.stack([golden["pair_i"][cases], golden["pair_j"][cases]], 1))
    np.testing.assert_allclose(res.atoms, golden["atoms_mean"][cases], rtol=0, atol=ATOL)
    np.testing.assert_allclose(res.per_prompt_sts[:, 0], golden["atom_sts"][cases], rtol=0, atol=ATOL)
    np.testing.assert_allclose(res.per_prompt_rtr[:, 0], golden["atom_rtr"][cases], rtol=0, atol=ATOL)
    assert res.nan_count.tolist() == [0] * 28
    # also through a chunked range and the pooled mode (one prompt)
    part = phiid_all_pairs(series[None], tau=1, pair_start=5, pair_stop=17, max_block_pairs=4)
    np.testing.assert_allclose(part.atoms, golden["atoms_mean"][cases][5:17], rtol=0, atol=ATOL)
    pooled = phiid_all_pairs(series[None], tau=1, aggregation="pooled")
    np.testing.assert_allclose(pooled.atoms, golden["atoms_mean"][cases], rtol=0, atol=ATOL)


@pytest.mark.parametrize("e", range(6))
def test_golden_error_inputs_are_nan(golden, e):
    src, trg, tau = golden["err_src"][e], golden["err_trg"][e], int(golden["err_tau"][e])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(_vec(phiid_pair(src, trg, tau))).all(), golden["err_name"][e]
        assert np.isnan(_vec(phiid_pair_mis(src, trg, tau), MI_NAMES)).all()


def test_golden_error_inputs_counted(golden):
    acts = np.stack([golden["err_src"], golden["err_trg"]], axis=1)  # [6 prompts, 2 heads, 100]
    assert set(golden["err_tau"].tolist()) == {1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for aggregation in ("per_prompt", "pooled"):
            res = phiid_all_pairs(acts, tau=1, aggregation=aggregation)
            assert res.nan_count.tolist() == [6]
            assert np.isnan(res.per_prompt_sts).all() and np.isnan(res.per_prompt_rtr).all()
        assert np.isnan(phiid_all_pairs(acts, tau=1).atoms).all()
        # each error prompt next to a good prompt: exactly one NaN each, mean = the good prompt
        good = golden["real_series_0"][:2]
        for e in range(6):
            res = phiid_all_pairs(np.stack([acts[e], good]), tau=1)
            assert res.nan_count.tolist() == [1]
            np.testing.assert_allclose(res.atoms[0], _vec(phiid_pair(good[0], good[1])), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------------------
# Independent references: phyid emulation and a direct 16x16 solve
# --------------------------------------------------------------------------------------
def test_matches_emulated_phyid_on_random_data():
    rng = np.random.default_rng(11)
    for k in range(12):
        n = int(rng.choice([12, 30, 80]))
        tau = int(rng.integers(1, 4))
        x = np.cumsum(rng.standard_normal(n)) * 0.3 + rng.standard_normal(n)
        y = rng.uniform(-1, 1) * np.roll(x, 1) + rng.standard_normal(n)
        if k % 3 == 0:
            x, y = np.exp(x / 3) + 10.0, np.abs(y) + 1.0
        np.testing.assert_allclose(_vec(phiid_pair(x, y, tau)), emulated_means(x, y, tau), rtol=0, atol=1e-9)


def test_singularity_rule_matches_emulated_phyid():
    rng = np.random.default_rng(5)
    for eps in (1e-2, 1e-3, 1e-7, 1e-8):  # away from the ~2.2e-10 eigenvalue-ratio border
        for _ in range(3):
            x = rng.standard_normal(60)
            y = x + eps * rng.standard_normal(60)
            ours = _vec(phiid_pair(x, y))
            ref = emulated_means(x, y, 1)
            assert np.isnan(ours).all() == np.isnan(ref).all(), eps
            if not np.isnan(ref).all():
                np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    # T <= 4 is singular, T = 5 is not
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    assert np.isnan(_vec(phiid_pair(x[:5], y[:5]))).all() and np.isnan(emulated_means(x[:5], y[:5], 1)).all()
    assert np.isfinite(_vec(phiid_pair(x, y))).all() and np.isfinite(emulated_means(x, y, 1)).all()


def test_lattice_matches_linear_solve():
    """Explicit inverse == solving phyid's 16 equations with the mean knowns."""
    rng = np.random.default_rng(3)
    for _ in range(10):
        x, y = rng.standard_normal((2, 50))
        y += 0.5 * np.roll(x, 1)
        mi = phiid_pair_mis(x, y, 1)
        ixa, ixb, iya, iyb = mi["I_xta"], mi["I_xtb"], mi["I_yta"], mi["I_ytb"]
        knowns = [min(ixa, ixb, iya, iyb), min(ixa, iya), min(ixb, iyb), min(mi["I_xtab"], mi["I_ytab"]),
                  min(ixa, ixb), min(iya, iyb), min(mi["I_xyta"], mi["I_xytb"]),
                  ixa, ixb, iya, iyb, mi["I_xyta"], mi["I_xytb"], mi["I_xtab"], mi["I_ytab"], mi["I_xytab"]]
        np.testing.assert_allclose(_vec(phiid_pair(x, y, 1)), np.linalg.solve(_M, knowns), rtol=0, atol=1e-13)


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------
def _random_pairs(seed, count=6):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(20, 150))
        tau = int(rng.integers(1, 4))
        x = rng.standard_normal(n).cumsum() * rng.uniform(0, 0.5) + rng.standard_normal(n)
        y = rng.uniform(-1, 1) * np.roll(x, tau) + rng.standard_normal(n)
        yield x, y, tau


def test_swap_symmetry():
    for x, y, tau in _random_pairs(1):
        a, b = phiid_pair(x, y, tau), phiid_pair(y, x, tau)
        assert abs(a["sts"] - b["sts"]) < 1e-14 and a["rtr"] == b["rtr"]
        for name in ATOM_NAMES:
            assert abs(a[name] - b[SWAP[name]]) < 1e-14, name


def test_atoms_sum_to_time_delayed_mi():
    for x, y, tau in _random_pairs(2):
        atoms = _vec(phiid_pair(x, y, tau))
        v = np.vstack([x[:-tau], y[:-tau], x[tau:], y[tau:]])
        r = np.corrcoef(v)
        tdmi = 0.5 * (np.linalg.slogdet(r[:2, :2])[1] + np.linalg.slogdet(r[2:, 2:])[1] - np.linalg.slogdet(r)[1])
        assert abs(atoms.sum() - tdmi) < 1e-12
        assert abs(atoms.sum() - phiid_pair_mis(x, y, tau)["I_xytab"]) < 1e-13


def test_invariance_to_affine_rescaling():
    rng = np.random.default_rng(4)
    for x, y, tau in _random_pairs(3):
        ref = _vec(phiid_pair(x, y, tau))
        s1, s2 = rng.uniform(0.01, 100, 2)
        o1, o2 = rng.uniform(-1000, 1000, 2)
        np.testing.assert_allclose(_vec(phiid_pair(s1 * x + o1, s2 * y + o2, tau)), ref, rtol=0, atol=1e-10)
        # Gaussian MI is invariant to any invertible affine map of each variable, sign included
        np.testing.assert_allclose(_vec(phiid_pair(-x, y, tau)), ref, rtol=0, atol=1e-13)
    # float32 input == the same values as float64
    x32 = rng.standard_normal(80).astype(np.float32)
    y32 = rng.standard_normal(80).astype(np.float32)
    assert phiid_pair(x32, y32) == phiid_pair(x32.astype(np.float64), y32.astype(np.float64))


def test_independent_white_noise_gives_small_atoms():
    # with T samples, each mean MI is ~chi2(d)/(2T) (d <= 4): ~1e-4 for T = 20000, so every
    # atom, a signed sum of a few MIs and mins, stays far below 2e-3.
    rng = np.random.default_rng(6)
    for _ in range(3):
        x, y = rng.standard_normal((2, 20001))
        atoms = _vec(phiid_pair(x, y, 1))
        assert np.abs(atoms).max() < 2e-3
        assert np.isfinite(atoms).all()


def test_all_pairs_equals_pair_per_cell():
    rng = np.random.default_rng(7)
    for tau, (n_prompts, n_heads, n_steps) in [(1, (3, 6, 40)), (2, (2, 5, 25)), (3, (1, 4, 12))]:
        acts = _ar_acts(rng, n_prompts, n_heads, n_steps)
        res = phiid_all_pairs(acts, tau=tau)
        assert isinstance(res, PairwisePhiID)
        assert res.atoms.shape == (len(res.pairs), 16) and res.atoms.dtype == np.float64
        assert res.per_prompt_sts.shape == (len(res.pairs), n_prompts)
        assert (res.n_prompts, res.tau, res.aggregation) == (n_prompts, tau, "per_prompt")
        for k, (i, j) in enumerate(res.pairs):
            cells = np.array([_vec(phiid_pair(acts[n, i], acts[n, j], tau)) for n in range(n_prompts)])
            np.testing.assert_allclose(res.per_prompt_sts[k], cells[:, I_STS], rtol=0, atol=1e-13)
            np.testing.assert_allclose(res.per_prompt_rtr[k], cells[:, I_RTR], rtol=0, atol=1e-13)
            np.testing.assert_allclose(res.atoms[k], cells.mean(axis=0), rtol=0, atol=1e-13)
        np.testing.assert_array_equal(res.atom("sts"), res.sts)
        np.testing.assert_array_equal(res.atoms[:, I_RTR], res.rtr)


@pytest.mark.parametrize("aggregation", ["per_prompt", "pooled"])
def test_block_size_and_chunking_do_not_matter(aggregation):
    rng = np.random.default_rng(8)
    acts = _ar_acts(rng, 4, 9, 30)
    acts[1, 3] = 2.0                      # a degenerate cell row, to exercise NaN paths
    whole = phiid_all_pairs(acts, aggregation=aggregation)
    n_pairs = len(whole.pairs)
    for block in (1, 3, 7, 36, 10_000):
        res = phiid_all_pairs(acts, aggregation=aggregation, max_block_pairs=block)
        for field in ("pairs", "atoms", "per_prompt_sts", "per_prompt_rtr", "nan_count"):
            np.testing.assert_allclose(getattr(res, field), getattr(whole, field), rtol=0, atol=1e-15)
    for n_chunks in (1, 2, 5, 11, n_pairs):
        parts = [phiid_all_pairs(acts, aggregation=aggregation, pair_start=s, pair_stop=e, max_block_pairs=4)
                 for s, e in (chunk_range(n_pairs, n_chunks, k) for k in range(n_chunks))]
        for field in ("pairs", "atoms", "per_prompt_sts", "per_prompt_rtr", "nan_count"):
            np.testing.assert_allclose(np.concatenate([getattr(p, field) for p in parts]),
                                       getattr(whole, field), rtol=0, atol=1e-14)


def test_per_prompt_mean_is_nanmean():
    rng = np.random.default_rng(9)
    acts = _ar_acts(rng, 5, 5, 30)
    acts[0, 1] = 1.0       # head 1 constant in prompt 0
    acts[2, 1, 7] = np.nan  # head 1 has a NaN in prompt 2
    acts[3, 0] = acts[3, 4] * 3 + 1  # heads 0 and 4 affine copies in prompt 3
    res = phiid_all_pairs(acts)
    np.testing.assert_allclose(res.sts, np.nanmean(res.per_prompt_sts, axis=1), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(res.rtr, np.nanmean(res.per_prompt_rtr, axis=1), rtol=1e-14, atol=1e-16)
    np.testing.assert_array_equal(res.nan_count, np.isnan(res.per_prompt_sts).sum(axis=1))
    for k, (i, j) in enumerate(res.pairs):
        cells = np.array([_vec(phiid_pair(acts[n, i], acts[n, j])) for n in range(5)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # (strongly autocorrelated cells: correlations from the batched product and from
            # phiid_pair's dot products differ by rounding, amplified to ~1e-13 in the atoms)
            np.testing.assert_allclose(res.atoms[k], np.nanmean(cells, axis=0), rtol=0, atol=1e-11)


def test_degenerate_cells_are_counted_exactly():
    rng = np.random.default_rng(10)
    n_prompts, n_heads = 4, 6
    acts = _ar_acts(rng, n_prompts, n_heads, 40)
    acts[0, 2] = 5.0                       # constant head 2 in prompts 0 and 2
    acts[2, 2] = -1.0
    acts[1, 4] = acts[1, 1]                # heads 1 and 4 identical in prompt 1
    acts[3, 5, -1] = np.inf                # non-finite value in head 5, prompt 3
    acts[1, 0, :-1] = 0.5                  # head 0's past window constant in prompt 1
    expected_bad = np.zeros((n_prompts, n_heads, n_heads), dtype=bool)
    for n, h in [(0, 2), (2, 2), (3, 5), (1, 0)]:
        expected_bad[n, h, :] = expected_bad[n, :, h] = True
    expected_bad[1, 1, 4] = expected_bad[1, 4, 1] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = phiid_all_pairs(acts, max_block_pairs=4)
    exp = np.array([[expected_bad[n, i, j] for n in range(n_prompts)] for i, j in res.pairs])
    np.testing.assert_array_equal(np.isnan(res.per_prompt_sts), exp)
    np.testing.assert_array_equal(np.isnan(res.per_prompt_rtr), exp)
    np.testing.assert_array_equal(res.nan_count, exp.sum(axis=1))
    assert np.isfinite(res.atoms).all()
    # every prompt degenerate -> NaN, without warnings
    acts[:, 3] = 7.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = phiid_all_pairs(acts)
        pooled = phiid_all_pairs(acts, aggregation="pooled")
    touches = (res.pairs == 3).any(axis=1)
    assert np.isnan(res.atoms[touches]).all() and np.isfinite(res.atoms[~touches]).all()
    assert (res.nan_count[touches] == n_prompts).all()
    assert np.isnan(pooled.atoms[touches]).all() and np.isfinite(pooled.atoms[~touches]).all()


def test_short_series_and_large_lag_are_nan():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((2, 10))
    for tau in (6, 7, 9, 10, 50):  # T = 10 - tau <= 4
        assert np.isnan(_vec(phiid_pair(x, y, tau))).all()
        for aggregation in ("per_prompt", "pooled"):
            res = phiid_all_pairs(np.stack([x, y])[None], tau=tau, aggregation=aggregation)
            assert np.isnan(res.atoms).all() and res.nan_count.tolist() == [1]
    for tau in (4, 5):  # T = 6, 5
        assert np.isfinite(_vec(phiid_pair(x, y, tau))).all()
        assert np.isfinite(phiid_all_pairs(np.stack([x, y])[None], tau=tau).atoms).all()


def test_pooled_single_prompt_equals_per_prompt():
    rng = np.random.default_rng(13)
    acts = _ar_acts(rng, 1, 7, 50)
    a = phiid_all_pairs(acts, aggregation="per_prompt")
    b = phiid_all_pairs(acts, aggregation="pooled")
    assert b.aggregation == "pooled"
    np.testing.assert_allclose(b.atoms, a.atoms, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(b.per_prompt_sts, a.per_prompt_sts)
    np.testing.assert_array_equal(b.nan_count, a.nan_count)


def _pooled_reference(acts, i, j, tau, prompts):
    """Pool z-scored within-prompt samples of (x, y, a, b), then the lattice via the 16x16 solve."""
    blocks = []
    for n in prompts:
        v = np.vstack([acts[n, i, :-tau], acts[n, j, :-tau], acts[n, i, tau:], acts[n, j, tau:]])
        blocks.append((v - v.mean(axis=1, keepdims=True)) / v.std(axis=1, keepdims=True))
    z = np.concatenate(blocks, axis=1)
    r = z @ z.T / z.shape[1]
    r /= np.sqrt(np.outer(np.diag(r), np.diag(r)))

    def ld(s):
        return np.linalg.slogdet(r[np.ix_(s, s)])[1]

    def mi(a, b):
        return 0.5 * (ld(a) + ld(b) - ld(sorted(a + b)))

    ixa, ixb, iya, iyb = mi([0], [2]), mi([0], [3]), mi([1], [2]), mi([1], [3])
    ixya, ixyb, ixab, iyab = mi([0, 1], [2]), mi([0, 1], [3]), mi([0], [2, 3]), mi([1], [2, 3])
    knowns = [min(ixa, ixb, iya, iyb), min(ixa, iya), min(ixb, iyb), min(ixab, iyab), min(ixa, ixb),
              min(iya, iyb), min(ixya, ixyb), ixa, ixb, iya, iyb, ixya, ixyb, ixab, iyab,
              mi([0, 1], [2, 3])]
    return np.linalg.solve(_M, knowns)


def test_pooled_matches_direct_pooling_and_ignores_prompt_offsets():
    rng = np.random.default_rng(14)
    n_prompts, n_heads, tau = 4, 5, 2
    acts = _ar_acts(rng, n_prompts, n_heads, 30)
    res = phiid_all_pairs(acts, tau=tau, aggregation="pooled")
    for k, (i, j) in enumerate(res.pairs):
        np.testing.assert_allclose(res.atoms[k], _pooled_reference(acts, i, j, tau, range(n_prompts)),
                                   rtol=0, atol=1e-12)
    # prompt- and head-specific level/scale shifts change nothing in pooled mode ...
    scale = rng.uniform(0.1, 10, size=(n_prompts, n_heads, 1))
    offset = rng.uniform(-50, 50, size=(n_prompts, n_heads, 1))
    shifted = phiid_all_pairs(acts * scale + offset, tau=tau, aggregation="pooled")
    np.testing.assert_allclose(shifted.atoms, res.atoms, rtol=0, atol=1e-11)
    # ... whereas pooling raw samples would see the offsets as shared structure
    raw = np.concatenate(list(acts * scale + offset), axis=1)  # crosses prompt boundaries
    naive = _vec(phiid_pair(raw[0], raw[1], tau))
    assert np.abs(naive - res.atoms[0]).max() > 1e-2


def test_pooled_skips_degenerate_prompts_per_pair():
    rng = np.random.default_rng(15)
    acts = _ar_acts(rng, 3, 4, 25)
    acts[1, 2] = 3.0  # head 2 constant in prompt 1
    res = phiid_all_pairs(acts, aggregation="pooled")
    for k, (i, j) in enumerate(res.pairs):
        prompts = [0, 2] if 2 in (i, j) else [0, 1, 2]
        np.testing.assert_allclose(res.atoms[k], _pooled_reference(acts, i, j, 1, prompts), rtol=0, atol=1e-12)
    assert res.nan_count.tolist() == [int(2 in p) for p in res.pairs.tolist()]


def test_empty_and_tiny_inputs():
    acts = np.random.default_rng(0).standard_normal((3, 1, 20))
    res = phiid_all_pairs(acts)
    assert res.pairs.shape == (0, 2) and res.atoms.shape == (0, 16)
    assert res.per_prompt_sts.shape == (0, 3) and res.nan_count.shape == (0,)
    res = phiid_all_pairs(np.zeros((0, 3, 20)))
    assert res.atoms.shape == (3, 16) and np.isnan(res.atoms).all() and res.nan_count.tolist() == [0, 0, 0]


# --------------------------------------------------------------------------------------
# Pair bookkeeping and API misuse
# --------------------------------------------------------------------------------------
def test_upper_triangle_pairs_order():
    np.testing.assert_array_equal(upper_triangle_pairs(4), [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    assert upper_triangle_pairs(1).shape == (0, 2) and upper_triangle_pairs(0).shape == (0, 2)
    p = upper_triangle_pairs(128)
    assert p.shape == (8128, 2) and np.issubdtype(p.dtype, np.integer)
    assert (p[:, 0] < p[:, 1]).all()
    assert [tuple(r) for r in p] == list(itertools.combinations(range(128), 2))
    with pytest.raises(ValueError, match="n_total_heads"):
        upper_triangle_pairs(-1)


def test_chunk_range():
    for n_pairs in (1, 2, 7, 28, 100):
        for n_chunks in range(1, min(n_pairs, 12) + 1):
            ranges = [chunk_range(n_pairs, n_chunks, k) for k in range(n_chunks)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n_pairs
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            sizes = [e - s for s, e in ranges]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert chunk_range(10, 3, 0) == (0, 4) and chunk_range(10, 3, 2) == (7, 10)
    for args, name in [((10, 0, 0), "n_chunks"), ((10, 11, 0), "n_chunks"), ((10, 3, 3), "k"),
                       ((10, 3, -1), "k"), ((0, 1, 0), "n_pairs")]:
        with pytest.raises(ValueError, match=name):
            chunk_range(*args)


def test_pair_matrix():
    pairs = upper_triangle_pairs(4)
    vals = np.arange(6.0)
    m = pair_matrix(vals, pairs, 4)
    assert m.shape == (4, 4)
    np.testing.assert_array_equal(m, m.T)
    assert np.isnan(np.diag(m)).all()
    assert m[0, 3] == 2.0 and m[2, 3] == 5.0
    m = pair_matrix(vals[3:], pairs[3:], 4)  # a chunk: the rest stays NaN
    assert np.isnan(m[0]).all() and m[1, 2] == 3.0
    with pytest.raises(ValueError):
        pair_matrix(vals, pairs[:3], 4)


def test_api_misuse_raises():
    x = np.arange(10.0)
    with pytest.raises(ValueError, match="1-D"):
        phiid_pair(x[None], x)
    with pytest.raises(ValueError, match="same length"):
        phiid_pair(x, x[:-1])
    for tau in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="tau"):
            phiid_pair(x, x + 1, tau)
        with pytest.raises(ValueError, match="tau"):
            phiid_all_pairs(np.ones((1, 2, 10)), tau=tau)
    with pytest.raises(ValueError, match="acts"):
        phiid_all_pairs(np.ones((2, 10)))
    with pytest.raises(ValueError, match="aggregation"):
        phiid_all_pairs(np.ones((1, 2, 10)), aggregation="mean")
    with pytest.raises(ValueError, match="pair_st"):
        phiid_all_pairs(np.ones((1, 3, 10)), pair_start=2, pair_stop=1)
    with pytest.raises(ValueError, match="pair_st"):
        phiid_all_pairs(np.ones((1, 3, 10)), pair_stop=4)
    with pytest.raises(ValueError, match="max_block_pairs"):
        phiid_all_pairs(np.ones((1, 3, 10)), max_block_pairs=0)


# --------------------------------------------------------------------------------------
# phyid backend
# --------------------------------------------------------------------------------------
def _backend_acts():
    rng = np.random.default_rng(16)
    acts = _ar_acts(rng, 2, 4, 30)
    acts[1, 2] = 4.0          # ValueError cell in phyid
    acts[0, 3] = acts[0, 0]   # LinAlgError cell in phyid
    return acts


def _assert_same(a, b, atol):
    np.testing.assert_array_equal(a.pairs, b.pairs)
    np.testing.assert_array_equal(a.nan_count, b.nan_count)
    for field in ("atoms", "per_prompt_sts", "per_prompt_rtr"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=0, atol=atol)


def test_phyid_backend_with_real_phyid():
    pytest.importorskip("phyid", reason="phyid (reference library, not on PyPI) is not installed: " + PHYID_INSTALL)
    acts = _backend_acts()
    ref = phiid_all_pairs(acts, tau=1)
    _assert_same(phiid_all_pairs_phyid(acts, tau=1, n_workers=2), ref, atol=1e-9)
    _assert_same(phiid_all_pairs_phyid(acts, tau=2, pair_start=1, pair_stop=5),
                 phiid_all_pairs(acts, tau=2, pair_start=1, pair_stop=5), atol=1e-9)


def test_phyid_backend_plumbing_with_stand_in(fake_phyid):
    acts = _backend_acts()
    ref = phiid_all_pairs(acts, tau=1)
    res = phiid_all_pairs_phyid(acts, tau=1, n_workers=1)
    _assert_same(res, ref, atol=1e-9)
    assert res.nan_count.tolist() == [0, 1, 1, 1, 0, 1]
    part = phiid_all_pairs_phyid(acts, tau=1, pair_start=2, pair_stop=4)
    _assert_same(part, phiid_all_pairs(acts, tau=1, pair_start=2, pair_stop=4), atol=1e-9)
    if multiprocessing.get_start_method(allow_none=False) == "fork":  # workers inherit the stand-in
        _assert_same(phiid_all_pairs_phyid(acts, tau=1, n_workers=2), ref, atol=1e-9)
    with pytest.raises(ValueError, match="per_prompt"):
        phiid_all_pairs_phyid(acts, aggregation="pooled")
    with pytest.raises(ValueError, match="n_workers"):
        phiid_all_pairs_phyid(acts, n_workers=0)


def test_phyid_backend_missing_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "phyid", None)
    monkeypatch.setitem(sys.modules, "phyid.calculate", None)
    with pytest.raises(ImportError, match="integrated-info-decomp@f7fe791217ef5ee16cf9222a3ed089e66f423a1f"):
        phiid_all_pairs_phyid(np.ones((1, 2, 10)))

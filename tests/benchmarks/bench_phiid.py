"""Benchmark of the closed-form all-pairs PhiID engine (not a pytest test).

Usage::

    python tests/benchmarks/bench_phiid.py            # Pythia-1B and Llama-3-8B shapes
    python tests/benchmarks/bench_phiid.py --quick    # Pythia-1B shape + a 1/16 slice of Llama

Reports, per shape: wall time, (pairs x prompts) cells per second, and peak memory
(tracemalloc peak of Python/numpy allocations during the call, and the process max RSS).
The data are random positive AR(1)-like series (log-normal AR processes with shared
factors), imitating per-token head output norms.

Targets (2 CPU cores): Pythia-1B shape (128 heads, 8,128 pairs, 60 prompts, 100 steps)
<= 0.5 s; Llama-3-8B shape (1024 heads, 523,776 pairs, 60 prompts, 100 steps) <= 60 s.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

try:
    from synergy_core.phiid.all_pairs import DEFAULT_MAX_BLOCK_PAIRS, phiid_all_pairs
    from synergy_core.phiid.chunks import chunk_range
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflow"))
    from synergy_core.phiid.all_pairs import DEFAULT_MAX_BLOCK_PAIRS, phiid_all_pairs
    from synergy_core.phiid.chunks import chunk_range


def make_acts(n_prompts: int, n_heads: int, n_steps: int, seed: int = 0) -> np.ndarray:
    """Positive AR-like series, float32 [prompts, heads, steps] (as the extractor stores)."""
    rng = np.random.default_rng(seed)
    phi = rng.uniform(0.2, 0.9, size=(1, n_heads, 1))
    mu = rng.uniform(0.0, 2.0, size=(1, n_heads, 1))
    sd = rng.uniform(0.2, 0.6, size=(1, n_heads, 1))
    n_fac = 4
    load = rng.normal(size=(n_heads, n_fac)) * 0.5
    x = np.zeros((n_prompts, n_heads, n_steps))
    f = np.zeros((n_prompts, n_fac))
    e = rng.standard_normal((n_prompts, n_heads, n_steps))
    ef = rng.standard_normal((n_prompts, n_fac, n_steps))
    for t in range(n_steps):
        f = 0.7 * f + ef[:, :, t]
        prev = x[:, :, t - 1] if t else 0.0
        x[:, :, t] = phi[:, :, 0] * prev + e[:, :, t] + f @ load.T
    return np.exp(mu + sd * 0.5 * x).astype(np.float32)


def run_case(label: str, acts: np.ndarray, pair_start=0, pair_stop=None, repeats=1, **kw):
    n_prompts, n_heads, _ = acts.shape
    n_all = n_heads * (n_heads - 1) // 2
    stop = n_all if pair_stop is None else pair_stop
    cells = (stop - pair_start) * n_prompts
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = phiid_all_pairs(acts, tau=1, pair_start=pair_start, pair_stop=pair_stop, **kw)
        times.append(time.perf_counter() - t0)
    best = min(times)
    out_bytes = sum(a.nbytes for a in (res.pairs, res.atoms, res.per_prompt_sts,
                                        res.per_prompt_rtr, res.nan_count))
    tracemalloc.start()
    tracemalloc.reset_peak()
    res = phiid_all_pairs(acts, tau=1, pair_start=pair_start, pair_stop=pair_stop, **kw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_nan = int(np.isnan(res.atoms[:, -1]).sum())
    print(f"{label}: heads={n_heads} pairs={stop - pair_start:,} prompts={n_prompts} "
          f"steps={acts.shape[2]} {kw or ''}")
    print(f"    time {best:.3f} s (best of {repeats}; all: {', '.join(f'{t:.3f}' for t in times)})"
          f"  ->  {cells / best:,.0f} pair-prompts/s")
    print(f"    peak traced memory {peak / 2**20:.1f} MiB (outputs {out_bytes / 2**20:.1f} MiB, "
          f"working {max(peak - out_bytes, 0) / 2**20:.1f} MiB); process max RSS so far "
          f"{maxrss_mb:.0f} MiB; pairs with NaN sts: {n_nan}")
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="Llama shape on a 1/16 slice of the pairs only")
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args(argv)

    import os
    print(f"python {platform.python_version()}, numpy {np.__version__}, cpus={os.cpu_count()}, "
          f"default max_block_pairs={DEFAULT_MAX_BLOCK_PAIRS}")
    try:
        from threadpoolctl import threadpool_info
        print("BLAS:", ", ".join(f"{d.get('internal_api')} {d.get('num_threads')} threads"
                                 for d in threadpool_info()))
    except ImportError:
        pass

    acts = make_acts(args.prompts, 128, args.steps, seed=1)
    phiid_all_pairs(acts[:2])  # warm-up
    t = run_case("Pythia-1B shape", acts, repeats=5)
    print(f"    target <= 0.5 s: {'PASS' if t <= 0.5 else 'MISS'}")
    t = run_case("Pythia-1B shape, pooled", acts, repeats=3, aggregation="pooled")

    acts = make_acts(args.prompts, 1024, args.steps, seed=2)
    n_all = 1024 * 1023 // 2
    if args.quick:
        start, stop = chunk_range(n_all, 16, 0)
        t = run_case("Llama-3-8B shape, chunk 0 of 16", acts, pair_start=start, pair_stop=stop)
        print(f"    extrapolated full: ~{t * 16:.1f} s (target <= 60 s)")
    else:
        t = run_case("Llama-3-8B shape", acts)
        print(f"    target <= 60 s: {'PASS' if t <= 60 else 'MISS'}")
        start, stop = chunk_range(n_all, 16, 5)
        run_case("Llama-3-8B shape, chunk 5 of 16", acts, pair_start=start, pair_stop=stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark (not a pytest test): the statistics of stats.py / graphs.py at Pythia-1B size.

    python tests/benchmarks/bench_stats.py [--threads 2] [--boot 1000] [--steps 100]

Shape: 128 heads (16 layers x 8), 8,128 pairs, 60 prompts; synthetic per-prompt sts/rtr
(head effects peaking in the middle layers + noise, 1% NaN cells), a synthetic long ablation
table (7 orders = synergistic, redundant, 5 random x 129 counts x 60 prompts) and synthetic
head series [60, 128, steps] for the surrogate null. BLAS threads are limited to --threads
(set before numpy is imported). Target: bootstrap_profile(1000) < 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--graph-boot", type=int, default=200)
    ap.add_argument("--surrogates", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(REPO / "workflow"))
    import numpy as np
    import pandas as pd

    from synergy_core import ablation_curves, graphs, stats
    from synergy_core.phiid.chunks import upper_triangle_pairs

    n_layers, n_heads, n_prompts = 16, 8, 60
    h = n_layers * n_heads
    layer = np.repeat(np.arange(n_layers), n_heads)
    pairs = upper_triangle_pairs(h)
    rng = np.random.default_rng(0)
    depth = layer / (n_layers - 1)
    a = 0.02 * (1 - (2 * depth - 1) ** 2)
    i, j = pairs.T
    sts = (0.1 + a[i] + a[j])[:, None] + 0.05 * rng.normal(size=(len(pairs), n_prompts))
    rtr = (0.05 - a[i] - a[j])[:, None] + 0.05 * rng.normal(size=(len(pairs), n_prompts))
    bad = rng.random(sts.shape) < 0.01
    sts[bad] = np.nan
    rtr[bad] = np.nan

    counts = np.arange(h + 1)
    orders = [("synergistic_first", -1, 2.0), ("redundant_first", -1, 0.5)]
    orders += [("random", s, 1.0) for s in range(5)]
    parts = []
    for order, seed, f in orders:
        kl = f * (counts / h)[:, None] * rng.uniform(0.5, 1.5, (len(counts), n_prompts))
        parts.append(pd.DataFrame({
            "order": order, "seed": seed, "n_removed": np.repeat(counts, n_prompts),
            "fraction_removed": np.repeat(counts / h, n_prompts),
            "prompt": np.tile([f"p{p:02d}" for p in range(n_prompts)], len(counts)),
            "kl": kl.ravel()}))
    long = pd.concat(parts, ignore_index=True)
    acts = rng.normal(size=(n_prompts, h, args.steps)).cumsum(axis=2) * 0.1 \
        + rng.normal(size=(n_prompts, h, args.steps))

    print(f"shape: {h} heads ({n_layers} x {n_heads}), {len(pairs)} pairs, {n_prompts} prompts; "
          f"BLAS threads {args.threads}, cpu count {os.cpu_count()}")
    print(f"long ablation table: {len(long)} rows; acts {acts.shape}")

    def timed(label, fn):
        t0 = time.perf_counter()
        out = fn()
        print(f"{label:<48s} {time.perf_counter() - t0:8.2f} s")
        return out

    timed("syn_red_from_prompt_weights (ones)",
          lambda: stats.syn_red_from_prompt_weights(sts, rtr, pairs, h, np.ones(n_prompts)))
    bp = timed(f"bootstrap_profile ({args.boot})",
               lambda: stats.bootstrap_profile(sts, rtr, pairs, layer, n_layers, n_boot=args.boot))
    print(bp["scores"].to_string(index=False))
    sh = timed(f"split_half_reliability ({args.splits})",
               lambda: stats.split_half_reliability(sts, rtr, pairs, h, n_splits=args.splits))
    print(f"  split-half mean {sh['mean']:.3f} sd {sh['sd']:.3f}")
    ab = timed(f"ablation_auc_stats ({args.boot})",
               lambda: ablation_curves.ablation_auc_stats(long, n_boot=args.boot))
    print(ab["summary"][["quantity", "estimate", "ci_low", "ci_high"]].to_string(index=False))
    cats = np.repeat([f"c{k}" for k in range(6)], 10)
    timed("category_profiles (6 categories)",
          lambda: stats.category_profiles(sts, rtr, pairs, cats, layer, n_layers))
    gm = timed(f"bootstrap_graph_metrics ({args.graph_boot}, fraction 0.10)",
               lambda: graphs.bootstrap_graph_metrics(sts, pairs, h, 0.10, n_boot=args.graph_boot))
    print(gm["summary"].to_string(index=False))
    sn = timed(f"surrogate_null ({args.surrogates}, steps {args.steps})",
               lambda: stats.surrogate_null(acts, layer, n_layers, n_surrogates=args.surrogates))
    print(f"  p-values {sn['p_value']}")


if __name__ == "__main__":
    main()

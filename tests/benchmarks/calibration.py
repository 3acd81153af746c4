"""Benchmark (not a pytest test): the calibration table of every test the summary reports.

    python tests/benchmarks/calibration.py [--quick] [--out calibration.tsv]

Each row is one reported interval or p-value: its null, the false-positive rate at alpha 0.05
measured on data simulated with the package's own functions (with an exact binomial 95%
interval), and the power on a planted effect. The simulations live beside the tests
(tests/calib_*.py), which run the same functions at small sizes as fast tests. The README's
calibration table is this script's output. --quick uses the test sizes (about a minute).
"""
import argparse
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "workflow"), str(REPO / "tests")]

import calib_ablation  # noqa: E402
import calib_compare  # noqa: E402
import calib_graphs  # noqa: E402
import calib_profile  # noqa: E402


def sections(quick: bool):
    n = 200 if quick else 1000
    yield "ablation", lambda: calib_ablation.ablation_rates(n_sims=n)
    yield "profile", lambda: calib_profile.all_rates(big=not quick)
    yield "profile interval", lambda: calib_profile.perm_interval_rates(n_sims=n, n_perm=99 if quick else 199)
    yield "graphs", lambda: calib_graphs.calibration_rows(n_sims=n // 2 if quick else 400)
    yield "comparisons", lambda: calib_compare.comparison_rates(n_sims=n, n_permutations=99 if quick else 199)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for name, run in sections(args.quick):
        start = time.perf_counter()
        part = run()
        print(f"{name}: {len(part)} rows in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        rows.extend(dict(r, section=name) for r in part)
    table = pd.DataFrame(rows)
    cols = ["section", "test", "null", "n_sims", "false_positive_rate", "fpr_ci_low", "fpr_ci_high", "power"]
    table = table[[c for c in cols if c in table] + [c for c in table if c not in cols]]
    if args.out:
        table.to_csv(args.out, sep="\t", index=False)
    shown = table[[c for c in cols if c in table]]
    try:
        print(shown.to_markdown(index=False, floatfmt=".3f"))   # needs the tabulate package
    except ImportError:
        print(shown.to_string(index=False))


if __name__ == "__main__":
    main()

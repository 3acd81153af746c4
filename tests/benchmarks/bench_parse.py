"""Benchmark (not a pytest test): how long planning takes, `snakemake -n` on a configuration.

    python tests/benchmarks/bench_parse.py [--configfile config/config.yaml] [--repeats 5]

Prints the median wall time of `snakemake -n -q` (parse, validate, build the DAG, check the
outputs), of importing Snakemake alone (the floor no workflow can go below), and of this
workflow's own parse-time imports (synergy_core.config, codehash, stages.phiid), and whether
torch or transformers got imported while planning (they must not: the login node needs neither).
Run it on an idle machine; the target is under 1.5 s on 2 cores for the paper configuration.
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def timed(cmd, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configfile", default="config/config.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    plan = timed(["snakemake", "-n", "-q", "--configfile", args.configfile], args.repeats)
    floor = timed([py, "-c", "import snakemake.cli"], args.repeats)
    ours = timed([py, "-c", "import sys; sys.path.insert(0, 'workflow'); import synergy_core.config, "
                  "synergy_core.codehash, synergy_core.stages.phiid"], args.repeats)
    probe = subprocess.run(
        [py, "-X", "importtime", "-m", "snakemake", "-n", "-q", "--configfile", args.configfile],
        cwd=REPO, capture_output=True, text=True)
    heavy = sorted({line.split("|")[-1].strip() for line in probe.stderr.splitlines()
                    if line.split("|")[-1].strip() in ("torch", "transformers")})
    print(f"snakemake -n ({args.configfile}): {plan:.2f} s (median of {args.repeats})")
    print(f"  import snakemake alone:        {floor:.2f} s")
    print(f"  synergy_core parse imports:    {ours:.2f} s")
    print(f"  torch/transformers imported:   {heavy or 'no'}")


if __name__ == "__main__":
    main()

"""Two runs of the same configuration give bitwise identical outputs on the CPU."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from worktree import copy_worktree

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH")]

SMALL = """
prompts: {file: config/prompts.tsv, per_category: 1}
generation: {num_tokens: 20, batch_size: 6, device: cpu}
models:
  tiny: {hf_id: "builtin:tiny-gpt-neox", revision: step20, seed: 0}
phiid: {n_chunks: 2}
ablation: {n_random_orders: 1}
stats: {n_boot: 50, n_splits: 5, n_surrogates: 3, n_boot_graph: 3}
"""


def _copy_repo(repo: Path, dest: Path) -> Path:
    copy_worktree(repo, dest)
    (dest / "config/small.yaml").write_text(SMALL)
    return dest


def _run(tree: Path) -> None:
    proc = subprocess.run(["snakemake", "--cores", "2", "--configfile", "config/small.yaml"],
                          cwd=tree, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_runs_are_bitwise_identical(repo, tmp_path):
    a = _copy_repo(repo, tmp_path / "a")
    b = _copy_repo(repo, tmp_path / "b")
    _run(a)
    _run(b)
    outputs = sorted(p.relative_to(a / "results") for p in (a / "results").rglob("*")
                     if p.is_file() and p.suffix in (".npz", ".tsv", ".json")
                     and "logs" not in p.parts and "benchmarks" not in p.parts)
    assert len(outputs) > 15
    for rel in outputs:
        fa, fb = a / "results" / rel, b / "results" / rel
        if rel.suffix == ".npz":
            with np.load(fa) as za, np.load(fb) as zb:
                assert za.files == zb.files
                for k in za.files:
                    np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{rel}:{k}")
        else:
            assert fa.read_bytes() == fb.read_bytes(), f"{rel} differs between runs"

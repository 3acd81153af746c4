"""The Snakefile itself: it parses, lints clean, and its dry-run DAG is the expected one."""
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH")


def snakemake(repo, *args, check=True):
    proc = subprocess.run(["snakemake", *args], cwd=repo, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_lint_is_clean(repo):
    for conf in ([], ["--configfile", "config/demo.yaml"]):
        out = snakemake(repo, "--lint", *conf)
        assert "Lints for" not in out.stdout + out.stderr


def test_dry_run_of_paper_config_lists_every_model(repo):
    out = snakemake(repo, "-n", "--forceall", "--quiet", "rules").stdout
    assert "extract_activations" in out


def test_dry_run_of_demo_lists_the_whole_pipeline(repo):
    out = snakemake(repo, "-n", "--forceall", "--configfile", "config/demo.yaml").stdout
    for model in ("tiny-neox-step0", "tiny-neox-step30", "tiny-neox-step150", "tiny-neox-random",
                  "tiny-llama"):
        assert f"results/demo/{model}/activations.npz" in out
        assert f"results/demo/{model}/phiid/chunks/n3/chunk_2.npz" in out
        assert f"results/demo/{model}/stats/profile_scores.tsv" in out
    assert "results/demo/tiny-neox-step150/ablation/kl_long.tsv" in out
    assert "results/demo/tiny-neox-random/ablation" not in out   # random twins are not ablated
    assert "results/demo/figures/fig3a_progression_tiny-neox.png" in out
    assert "results/demo/summary.tsv" in out


def test_bad_config_fails_before_any_job(repo, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation:\n  num_tokens: -1\nmodels:\n  m:\n    hf_id: builtin:tiny-gpt-neox\n")
    out = snakemake(repo, "-n", "--configfile", str(bad), check=False)
    assert out.returncode != 0
    assert "config key generation.num_tokens: -1 is less than the minimum of 1" in out.stdout + out.stderr

"""The Snakefile itself: it parses, lints clean, and its dry-run DAG is the expected one."""
import re
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


def test_dry_run_of_pythia_scaling_config(repo):
    """config/pythia-scaling.yaml: 8 Pythia sizes and their random-init twins, every one through
    the PhiID chain and statistics, the 8 trained models ablated and compared with their twins,
    and the scaling figure drawn from the summary; the paper's and the demo's runs draw none."""
    out = snakemake(repo, "-n", "--forceall", "--configfile", "config/pythia-scaling.yaml").stdout
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    per_model = ("extract_activations", "phiid_merge", "rank_heads", "model_stats", "plot_model",
                 "plot_model_stats")
    assert counts == {**{rule: 16 for rule in per_model}, "phiid_chunk": 64, "compare_models": 8,
                      "ablate_heads": 8, "ablation_stats": 8, "plot_ablation": 8, "plot_profiles": 1,
                      "summary": 1, "plot_scaling": 1, "all": 1}
    assert sum(counts.values()) == 196
    assert "results/pythia-scaling/pythia-12b/ablation/kl_long.tsv" in out
    assert "results/pythia-scaling/pythia-12b-random/ablation" not in out
    assert "results/pythia-scaling/figures/scaling.png" in out
    for config in ([], ["--configfile", "config/demo.yaml"]):
        assert "plot_scaling" not in snakemake(repo, "-n", "--forceall", *config).stdout


def _job_counts(out: str) -> dict:
    """The dry run's "Job stats" table as {rule: jobs}."""
    table = out.split("Job stats:")[1].split("Reasons:")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_sharded_ablation_adds_parts_and_a_merge_only_when_asked(repo, tmp_path):
    """ablation.n_parts: 3 on the demo: 3 ablate_part jobs and 1 ablate_merge per ablated model
    instead of ablate_heads; the default (1) keeps the single job and today's DAG."""
    import yaml

    single = _job_counts(snakemake(repo, "-n", "--forceall", "--configfile", "config/demo.yaml").stdout)
    assert single["ablate_heads"] == 2 and "ablate_part" not in single and "ablate_merge" not in single
    config = yaml.safe_load((repo / "config/demo.yaml").read_text())
    config["ablation"]["n_parts"] = 3
    sharded_yaml = tmp_path / "sharded.yaml"
    sharded_yaml.write_text(yaml.safe_dump(config))
    out = snakemake(repo, "-n", "--forceall", "--configfile", str(sharded_yaml)).stdout
    sharded = _job_counts(out)
    assert sharded["ablate_part"] == 6 and sharded["ablate_merge"] == 2 and "ablate_heads" not in sharded
    assert sharded["total"] == single["total"] - 2 + 6 + 2
    for model in ("tiny-neox-step150", "tiny-llama"):
        for part in range(3):
            assert f"results/demo/{model}/ablation/parts/n3/part_{part}.npz" in out
        assert f"results/demo/{model}/ablation/kl_long.tsv" in out

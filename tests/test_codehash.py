"""Code hashes derived from imports (synergy_core.codehash) and the rules that use them."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synergy_core.codehash import code_hash, module_closure

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflow"
SCRIPTS = WORKFLOW / "scripts"
TORCH_MODULES = {"models.py", "hooks.py", "extract.py", "ablation.py"}


def closure(script):
    return {str(p.relative_to(WORKFLOW / "synergy_core")) for p in
            module_closure(SCRIPTS / f"{script}.py", WORKFLOW)}


def test_closure_follows_imports_transitively():
    chunk = closure("phiid_chunk")
    assert {"__init__.py", "runtime.py", "io.py", "stages/__init__.py", "stages/phiid.py",
            "phiid/__init__.py", "phiid/kernel.py", "phiid/all_pairs.py",
            "phiid/chunks.py"} <= chunk
    # the phyid backend is imported inside a function: it counts (over-approximation is safe)
    assert "phiid/reference.py" in chunk
    assert not {"plots.py", "ranking.py", "stats.py"} & chunk
    stats = closure("model_stats")
    assert {"stats.py", "ranking.py", "graphs.py", "resample.py", "phiid/kernel.py"} <= stats
    assert "plots.py" not in stats


@pytest.mark.parametrize("script", ["phiid_chunk", "phiid_merge", "rank_heads", "model_stats",
                                    "ablation_stats", "plot_model", "plot_ablation",
                                    "plot_profiles", "plot_model_stats", "plot_progression",
                                    "summary", "perturbation_merge", "perturbation_stats",
                                    "plot_perturbation", "prepare_finetune_data", "finetune_merge",
                                    "finetune_stats", "plot_finetune", "plot_scaling"])
def test_cpu_rules_do_not_reach_torch_modules(script):
    assert not TORCH_MODULES & closure(script)


def test_scoring_and_statistics_edits_never_rerun_a_perturbation_gpu_part():
    """Fig 4b's GPU parts and the task preparation before them reach neither the scoring nor the
    statistics: a change there reruns the CPU merge, not hours of generation."""
    for script in ("perturbation_part", "prepare_task"):
        reached = closure(script)
        assert not {"scoring.py", "perturbation_stats.py", "stages/perturbation_stats.py"} & reached, script
    assert {"scoring.py", "perturbation_stats.py"} <= closure("perturbation_merge") | closure("perturbation_stats")


def test_scoring_and_statistics_edits_never_rerun_a_finetune_evaluation():
    """Fig 5's evaluation parts reach neither the scoring nor the statistics (the training parts
    reach the scoring: it is GRPO's reward), and no GPU part reaches the statistics."""
    assert not {"scoring.py", "finetune_stats.py", "stages/finetune_stats.py"} & closure("finetune_eval")
    assert "scoring.py" in closure("finetune_train")
    assert not {"finetune_stats.py", "stages/finetune_stats.py"} & closure("finetune_train")
    assert {"scoring.py", "finetune_stats.py"} <= closure("finetune_merge") | closure("finetune_stats")


def test_statistics_edits_never_rerun_ranking_or_ablation():
    """The ranking (and so the GPU ablation after it) and the ablation statistics do not reach
    the profile statistics or the graph analysis."""
    for script in ("rank_heads", "ablate_heads", "ablation_stats"):
        assert not {"stats.py", "graphs.py", "stages/stats.py"} & closure(script), script


def test_plot_rules_do_not_reach_science_modules():
    for script in ("plot_model", "plot_ablation", "plot_profiles", "plot_progression", "plot_scaling"):
        assert not {"phiid/kernel.py", "ranking.py", "stats.py", "ablation.py"} & closure(script)


def _package(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_resolution_of_relative_and_absolute_imports(tmp_path):
    root = _package(tmp_path, {
        "synergy_core/__init__.py": "",
        "synergy_core/a.py": "from .sub import b\nimport numpy\n",
        "synergy_core/sub/__init__.py": "",
        "synergy_core/sub/b.py": "def f():\n    from ..c import g\n",
        "synergy_core/c.py": "g = 1\n",
        "synergy_core/unused.py": "x = 1\n",
        "script.py": "from synergy_core.a import thing\n",
    })
    got = {str(p.relative_to(root / "synergy_core")) for p in module_closure(root / "script.py", root)}
    assert got == {"__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "c.py"}


def test_comments_and_blank_lines_do_not_change_the_hash_code_does(tmp_path):
    root = _package(tmp_path, {"synergy_core/__init__.py": "",
                               "synergy_core/m.py": "x = 1  # one\n",
                               "script.py": "from synergy_core.m import x\n"})
    before = code_hash(root / "script.py", root)
    (root / "synergy_core/m.py").write_text("# a new comment\n\nx = 1  # changed comment\n\n")
    assert code_hash(root / "script.py", root) == before
    (root / "synergy_core/m.py").write_text("x = 2\n")
    assert code_hash(root / "script.py", root) != before
    (root / "synergy_core/m.py").write_text("x = 1\n")
    (root / "script.py").write_text("from synergy_core.m import x\nprint(x)\n")
    assert code_hash(root / "script.py", root) != before


def test_every_script_rule_hashes_its_own_script():
    """Each rule with `script: "../scripts/X.py"` has `code=code_of("X")` in its params."""
    rules = 0
    for smk in (WORKFLOW / "rules").glob("*.smk"):
        for block in re.split(r"\nrule ", smk.read_text())[1:]:
            script = re.search(r'script:\s*"\.\./scripts/(\w+)\.py"', block)
            if not script or script[1] == "download_models":
                continue
            rules += 1
            assert re.search(rf'code=\[?\s*code_of\("{script[1]}"\)', block), (smk.name, block[:60])
    assert rules == 28


def test_planning_imports_neither_torch_nor_transformers(tmp_path):
    """`snakemake -n` and `--lint` run with torch and transformers made unimportable."""
    for name in ("torch", "transformers"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} imported')\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "HOME": str(tmp_path)}
    for args in (["-n"], ["--lint"]):
        proc = subprocess.run(["snakemake", *args, "--configfile", "config/demo.yaml"], cwd=REPO,
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "imported" not in proc.stdout + proc.stderr

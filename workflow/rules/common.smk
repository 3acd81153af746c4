# Shared set-up: config validation (fails at parse time naming the key), wildcards, paths, and
# code hashes that make a rule stale when the package code it runs changes.
import hashlib
import sys
from pathlib import Path

WORKFLOW_DIR = Path(workflow.basedir) / "workflow"
sys.path.insert(0, str(WORKFLOW_DIR))

from synergy_core.config import ablated_models, export_environment, load_yaml_strict, model_spec, validate_config

for _path in workflow.overwrite_configfiles or workflow.configfiles:
    load_yaml_strict(_path)  # refuses duplicate keys, which YAML would silently merge
validate_config(config, WORKFLOW_DIR / "schemas" / "config.schema.yaml")

# Jobs (local, conda or SLURM) import synergy_core from this checkout and share the model cache.
export_environment(config, WORKFLOW_DIR)

MODELS = list(config["models"])
RESULTS = "results"
# Training-progression groups: families with two or more revisions.
FAMILIES = {}
for _name, _spec in config["models"].items():
    if _spec.get("revision") and _spec["init"] == "pretrained":
        FAMILIES.setdefault(_spec["family"], []).append(_name)
FAMILIES = {f: m for f, m in FAMILIES.items() if len(m) > 1}


# Light rules (seconds each) run where Snakemake runs, e.g. a cluster's login node, instead of
# waiting in the queue; the GPU rules, PhiID chunks and model_stats are submitted as jobs.
localrules:
    phiid_merge,
    rank_heads,
    ablation_stats,
    plot_model,
    plot_model_stats,
    plot_ablation,
    plot_profiles,
    plot_progression,
    summary,


wildcard_constraints:
    model="|".join(MODELS),
    family="|".join(FAMILIES) or "no-family",
    chunk=r"\d+",


def code_hash(*modules):
    """Hash of package modules a rule runs (Snakemake does not track a script's imports)."""
    digest = hashlib.sha256()
    for name in sorted(set(modules) | {"io", "runtime", "pipeline"}):
        digest.update((WORKFLOW_DIR / "synergy_core" / f"{name}.py").read_bytes())
    return digest.hexdigest()[:12]


def spec_of(wildcards):
    return model_spec(config, wildcards.model)


def phiid_chunks(wildcards):
    return expand(
        f"{RESULTS}/{wildcards.model}/phiid/chunks/chunk_{{chunk}}.npz",
        chunk=range(config["phiid"]["n_chunks"]),
    )


def summary_inputs(wildcards):
    """Per-model tables the verdict table reads (ablation ones for ablated models only)."""
    inputs = {}
    for m in MODELS:
        inputs[f"{m}__diagnostics"] = f"{RESULTS}/{m}/ranking/diagnostics.json"
        inputs[f"{m}__scores"] = f"{RESULTS}/{m}/stats/profile_scores.tsv"
        inputs[f"{m}__stats"] = f"{RESULTS}/{m}/stats/stats.json"
        inputs[f"{m}__graphs"] = f"{RESULTS}/{m}/stats/graphs.tsv"
    for m in ablated_models(config):
        inputs[f"{m}__ablation"] = f"{RESULTS}/{m}/ablation/auc_ci.tsv"
        inputs[f"{m}__ablation_json"] = f"{RESULTS}/{m}/ablation/auc_ci.json"
    return inputs


def all_outputs():
    """Every final output: per-model figures and tables, ablation where configured, Fig 2c,
    training progression per family, and the verdict table."""
    ablated = ablated_models(config)
    return (
        expand(f"{RESULTS}/{{model}}/figures/fig2b_syn_red.png", model=MODELS)
        + expand(f"{RESULTS}/{{model}}/figures/fig3bc_graphs.png", model=MODELS)
        + expand(f"{RESULTS}/{{model}}/figures/fig4a_ablation.png", model=ablated)
        + expand(f"{RESULTS}/figures/fig3a_progression_{{family}}.png", family=FAMILIES)
        + [f"{RESULTS}/figures/fig2c_layer_profiles.png", f"{RESULTS}/summary.tsv"]
    )

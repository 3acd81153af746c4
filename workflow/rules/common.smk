# Shared set-up: config validation (fails at parse time naming the key), wildcards, paths, and
# what makes a job stale.
#
# Staleness rules (each rule's params hold exactly what changes its numbers):
# * code: code_of(script) hashes the rule's script and every package module it imports,
#   transitively (synergy_core.codehash reads the imports; nothing is imported here);
# * config: params are narrowed per rule (no cache paths, no lists of other models, no keys of
#   other rules); keys that only shape execution (phiid.block_pairs, threads) are no params;
# * the PhiID chunks are temp() files in a directory named by phiid.n_chunks, gathered by the
#   merge: changing n_chunks changes which chunk files exist but not one merged byte, and with
#   the rerun triggers of profiles/default (no `input` trigger) it reruns nothing. The merge's
#   params therefore carry everything the merged numbers depend on, the chunk code included.
import functools
import math
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.logging import logger

WORKFLOW_DIR = Path(workflow.basedir) / "workflow"
sys.path.insert(0, str(WORKFLOW_DIR))

from synergy_core.codehash import code_hash, save_disk_cache, use_disk_cache
from synergy_core.config import (
    ablated_models,
    export_environment,
    load_yaml_strict,
    missing_models,
    missing_models_message,
    model_spec,
    paired_comparisons,
    validate_config,
)
from synergy_core.io import RESULTS_ENV
from synergy_core.finetune_plan import (
    EVAL_KEYS as FINETUNE_EVAL_KEYS,
    TRAIN_KEYS as FINETUNE_TRAIN_KEYS,
    eval_steps as finetune_eval_steps,
    plan_eval_units as finetune_eval_units,
    plan_runs as finetune_runs,
    run_label as finetune_run_label,
)
from synergy_core.perturbation_plan import PLAN_KEYS
from synergy_core.stages.phiid import NUMERIC_SETTINGS
from synergy_core.builtin import total_heads
from synergy_core.compute import GENERATION_KEYS as COMPUTE_KEYS, compute_settings, gpus_needed
from synergy_core.sizing import gpu_job_resources, model_config, phiid_chunk_minutes, prompt_count
from synergy_core.slurm import use_sacct_wrapper
from synergy_core.tasks import DOWNLOADABLE_SFT, DOWNLOADABLE_TASKS, task_source

# The SLURM executor plugin (<= 2.8.0) polls a job that sacct reports as "CANCELLED by <uid>" or
# PREEMPTED forever; workflow/slurm-bin/sacct (first on PATH when a real sacct exists) reports
# those as CANCELLED / FAILED, so they fail and are retried (README, "SLURM: cancelled ...").
use_sacct_wrapper()

# refuses duplicate keys, which YAML would silently merge (the default config/config.yaml was
# read strictly in the Snakefile already, before Snakemake loaded it)
for _path in workflow.overwrite_configfiles:
    load_yaml_strict(_path)
validate_config(config, WORKFLOW_DIR / "schemas" / "config.schema.yaml")

# Jobs (local, conda or SLURM) import synergy_core from this checkout and share the model cache.
export_environment(config, WORKFLOW_DIR)

MODELS = list(config["models"])
ABLATED = ablated_models(config)
RESULTS = config["results_dir"]  # normalised by validate_config
# every job records its outputs' paths relative to it (synergy_core.io), so a renamed results
# directory stays readable
os.environ[RESULTS_ENV] = RESULTS
# Training-progression groups: families with two or more revisions.
FAMILIES = {}
for _name, _spec in config["models"].items():
    if _spec.get("revision") and _spec["init"] == "pretrained":
        FAMILIES.setdefault(_spec["family"], []).append(_name)
FAMILIES = {f: m for f, m in FAMILIES.items() if len(m) > 1}


# Paired comparisons for compare_models: (model, other, kind), see config.paired_comparisons.
COMPARISONS = paired_comparisons(config, FAMILIES)


# Light rules (seconds each) run where Snakemake runs, e.g. a cluster's login node, instead of
# waiting in the queue; the GPU rules, PhiID chunks and model_stats are submitted as jobs.
localrules:
    compare_models,
    phiid_merge,
    ablate_merge,
    rank_heads,
    ablation_stats,
    plot_model,
    plot_model_stats,
    plot_ablation,
    plot_profiles,
    plot_progression,
    plot_scaling,
    summary,


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    other="|".join(re.escape(m) for m in MODELS),
    family="|".join(re.escape(f) for f in FAMILIES) or "no-family",
    chunk=r"\d+",
    part=r"\d+",


use_disk_cache(Path(".snakemake") / "synergy_core-codehash.json")  # saved by the Snakefile


def code_of(script):
    """Hash of workflow/scripts/<script>.py and the package modules it imports."""
    return code_hash(WORKFLOW_DIR / "scripts" / f"{script}.py", WORKFLOW_DIR)


# What identifies a model's weights (not its family, which only groups figures).
WEIGHT_KEYS = ("name", "hf_id", "revision", "init", "seed", "dtype", "local_path")


def weights_of(model):
    spec = model_spec(config, model)
    return {k: spec.get(k) for k in WEIGHT_KEYS}


def spec_of(wildcards):
    return weights_of(wildcards.model)


def pick(section, *keys):
    return {k: config[section][k] for k in keys}


# The decoding settings of the extraction; generation.dtype/tf32/gpus reach the extraction and
# the ablation as each stage's effective compute settings instead (synergy_core.compute), so a
# dtype override equal to a model's own dtype reruns nothing.
GENERATION = {k: v for k, v in sorted(config["generation"].items()) if k not in COMPUTE_KEYS}


def compute_of(stage):
    """Param: the dtype, TF32 and GPUs of one model's extraction or ablation."""
    return lambda wildcards: compute_settings(config, wildcards.model, stage)


# Cluster resources sized by the model (synergy_core.sizing): memory and wall time of the GPU
# jobs from the parameter count, dtype, prompts, tokens and masks; the GPUs from
# generation.gpus. A SLURM profile's `resources:` are ceilings on top (profiles/narval).
@functools.lru_cache(maxsize=None)
def _gpu_job(model, stage):
    return gpu_job_resources(config, model, stage)


def gpu_job_resource(stage, key):
    return lambda wildcards: _gpu_job(wildcards.model, stage)[key]


def gpu_gres(wildcards):
    return f"gpu:{gpus_needed(config, wildcards.model)}"


def phiid_chunk_runtime(wildcards, threads):
    return _phiid_chunk_minutes(wildcards.model, threads)


@functools.lru_cache(maxsize=None)
def _phiid_chunk_minutes(model, threads):
    """Minutes of one PhiID chunk of a model (the same for each of its chunks)."""
    heads = total_heads(model_config(model_spec(config, model), config.get("hf_home")) or {})
    if heads is None:
        return 60
    pairs = math.ceil(heads * (heads - 1) / 2 / N_CHUNKS)
    return phiid_chunk_minutes(
        pairs,
        prompt_count(config),
        config["generation"]["num_tokens"],
        config["phiid"]["backend"],
        threads,
        cap=24 * 60,
    )


PHIID_NUMERIC = pick("phiid", *NUMERIC_SETTINGS, "backend")
N_CHUNKS = config["phiid"]["n_chunks"]
CHUNK = f"{RESULTS}/{{model}}/phiid/chunks/n{N_CHUNKS}/chunk_{{chunk}}.npz"


# The ablation: one GPU job per model (ablate_heads), or with ablation.n_parts > 1 that many
# (ablate_part, each a contiguous range of the groups of masks) and a merge (ablate_merge) whose
# tables are the same bytes; the parts are temp() files in a directory named by n_parts, so
# changing n (> 1) reruns nothing (as for the PhiID chunks).
ABLATION = pick(
    "ablation",
    "n_random_orders",
    "seed",
    "max_fraction",
    "step",
    "random_grid",
    "cross_validate",
    "prompt_batch",
    "mask_group",
)
N_ABLATION_PARTS = config["ablation"]["n_parts"]
ABLATION_PART = f"{RESULTS}/{{model}}/ablation/parts/n{N_ABLATION_PARTS}/part_{{part}}.npz"


def ablation_parts(wildcards):
    return expand(ABLATION_PART, model=wildcards.model, part=range(N_ABLATION_PARTS))


# The perturbation stage (Fig 4b): models, task data, units of work dealt over N_PARTS GPU jobs.
PERTURBED = list(config["perturbation"]["models"])
PERTURBATION = pick("perturbation", *PLAN_KEYS)


def perturbation_settings(wildcards):
    """The perturbation settings of one model: chat_template may be set per model."""
    chat = config["perturbation"]["chat_template"]
    if isinstance(chat, dict):
        chat = chat.get(wildcards.model, "auto")
    return dict(PERTURBATION, chat_template=chat)


N_PARTS = config["perturbation"]["n_parts"]
PERTURBATION_PART = f"{RESULTS}/{{model}}/perturbation/parts/n{N_PARTS}/part_{{part}}.json"
TASK_JSON = f"{RESULTS}/task/problems.json"
TASK_SOURCE = task_source(config["perturbation"]["task"], config["data_dir"])

# The fine-tuning stage (Fig 5): runs dealt over N_TRAIN_PARTS GPU jobs, checkpoints over
# N_EVAL_PARTS GPU jobs (workflow/synergy_core/finetune_plan.py).
FINETUNED = list(config["finetune"]["models"])
FINETUNE = pick("finetune", *FINETUNE_TRAIN_KEYS, *FINETUNE_EVAL_KEYS)
# the training parts' settings: the evaluation's keys never rerun them
FINETUNE_TRAINING = pick("finetune", *FINETUNE_TRAIN_KEYS)
FINETUNE_RUNS = finetune_runs(config["finetune"]["methods"], config["finetune"]["n_seeds"])
N_TRAIN_PARTS = config["finetune"]["n_train_parts"] or len(FINETUNE_RUNS)
N_EVAL_PARTS = config["finetune"]["n_eval_parts"]
FINETUNE_TRAIN_PART = f"{RESULTS}/{{model}}/finetune/train/n{N_TRAIN_PARTS}/part_{{part}}"
FINETUNE_EVAL_PART = f"{RESULTS}/{{model}}/finetune/eval/n{N_EVAL_PARTS}/part_{{part}}.json"
FINETUNE_DATA = f"{RESULTS}/finetune_data/data.json"
FINETUNE_SOURCES = {
    key: task_source(config["finetune"][key], config["data_dir"])
    for key in ("train_task", "sft_data", "eval_task")
}


# The scaling figure (figures/scaling.png from summary.tsv): off unless scaling.models lists models.
SCALED = list(config["scaling"]["models"])


def finetune_scratch(wildcards):
    root = config["finetune"]["scratch_dir"]
    return f"{root}/{wildcards.model}" if root else f"{RESULTS}/{wildcards.model}/finetune/scratch"


def finetune_train_parts(wildcards):
    return expand(FINETUNE_TRAIN_PART, model=wildcards.model, part=range(N_TRAIN_PARTS))


def finetune_train_dirs(wildcards):
    """The training part of each run an evaluation part needs: run i is in part i % N."""
    units = finetune_eval_units(
        FINETUNE_RUNS,
        finetune_eval_steps(
            config["finetune"]["max_steps"],
            config["finetune"]["eval_from"],
            config["finetune"]["eval_every"],
        ),
    )[int(wildcards.part) :: N_EVAL_PARTS]
    index = {finetune_run_label(r): i for i, r in enumerate(FINETUNE_RUNS)}
    needed = {index[finetune_run_label(u)] % N_TRAIN_PARTS for u in units if u["method"] != "base"}
    return {
        f"train_part_{i}": expand(FINETUNE_TRAIN_PART, model=wildcards.model, part=i)[0]
        for i in sorted(needed)
    }


def finetune_eval_parts(wildcards):
    return expand(FINETUNE_EVAL_PART, model=wildcards.model, part=range(N_EVAL_PARTS))


DOWNLOADS = [
    (task, task_source(task, config["data_dir"]))
    for task in [config["perturbation"]["task"]]
    if task in DOWNLOADABLE_TASKS and PERTURBED
]
DOWNLOADS += [
    (data, task_source(data, config["data_dir"]))
    for data in dict.fromkeys(
        config["finetune"][k] for k in ("train_task", "sft_data", "eval_task")
    )
    if (data in DOWNLOADABLE_TASKS or data in DOWNLOADABLE_SFT)
    and FINETUNED
    and data not in [t for t, _ in DOWNLOADS]
]


def perturbation_parts(wildcards):
    return expand(PERTURBATION_PART, model=wildcards.model, part=range(N_PARTS))


def warn_about_rerun_triggers():
    """Warn once when the rerun triggers include `input` or `code`, i.e. profiles/default was not
    applied. Called while the DAG is built (the triggers are not known while parsing)."""
    if WARNED or not {"input", "code"} & {str(t) for t in workflow.rerun_triggers}:
        return
    WARNED.append(True)
    logger.warning(
        "synergy-core: the rerun triggers include `input` or `code` (profiles/default was not "
        "applied, e.g. --workflow-profile none or --rerun-triggers): changing phiid.n_chunks or "
        "a comment in a rule script will rerun jobs whose numbers cannot change."
    )


WARNED = []


def phiid_chunks(wildcards):
    warn_about_rerun_triggers()
    return expand(CHUNK, model=wildcards.model, chunk=range(N_CHUNKS))


def all_outputs():
    """Every final output: per-model figures and tables, ablation where configured, Fig 2c,
    training progression per family, the verdict table, and the scaling figure where configured."""
    return (
        expand(f"{RESULTS}/{{model}}/figures/fig2b_syn_red.png", model=MODELS)
        + expand(f"{RESULTS}/{{model}}/figures/fig3bc_graphs.png", model=MODELS)
        + expand(f"{RESULTS}/{{model}}/figures/fig4a_ablation.png", model=ABLATED)
        + expand(f"{RESULTS}/figures/fig3a_progression_{{family}}.png", family=FAMILIES)
        + [f"{RESULTS}/{m}/comparisons/vs_{o}.tsv" for m, o, _ in COMPARISONS]
        + expand(f"{RESULTS}/{{model}}/perturbation/tests.tsv", model=PERTURBED)
        + ([f"{RESULTS}/figures/fig4b_perturbation.png"] if PERTURBED else [])
        + expand(f"{RESULTS}/{{model}}/finetune/tests.tsv", model=FINETUNED)
        + ([f"{RESULTS}/figures/fig5_finetune.png"] if FINETUNED else [])
        + ([f"{RESULTS}/figures/scaling.png"] if SCALED else [])
        + [f"{RESULTS}/figures/fig2c_layer_profiles.png", f"{RESULTS}/summary.tsv"]
        + [f"{RESULTS}/summary.json", f"{RESULTS}/summary.html"]
    )


# Preflight: hub models missing from the local cache. Listed as a warning when the workflow is
# parsed (also by `snakemake -n`), and the run stops before its first job (onstart, in the
# Snakefile) if a job that is about to run needs one of them.
MISSING_MODELS = missing_models(config)
# the --configfile options as the user would type them where Snakemake was started (Snakemake
# makes them absolute; with --directory the commands name it)
CONFIGFILES = [
    (
        c
        if os.path.relpath(c, workflow.workdir_init).startswith("..")
        else os.path.relpath(c, workflow.workdir_init)
    )
    for c in map(str, workflow.overwrite_configfiles or [])
]
RUN_OPTIONS = (["--configfile", *CONFIGFILES] if CONFIGFILES else []) + (
    [] if os.path.samefile(os.getcwd(), workflow.workdir_init) else ["--directory", os.getcwd()]
)
if MISSING_MODELS and workflow.is_main_process:
    logger.warning(
        "synergy-core: "
        + missing_models_message(MISSING_MODELS, config, RUN_OPTIONS)
        + "\n(a run stops before its first job if a job it would run needs one of them)"
    )
MODEL_LOADING_RULES = (
    "extract_activations",
    "ablate_heads",
    "ablate_part",
    "perturbation_part",
    "finetune_train",
    "finetune_eval",
)


def stop_if_models_missing(jobs):
    """Called by onstart with the jobs about to run: stop, before any job, when one of them
    loads a model that is not in the cache."""
    needed = {j.wildcards["model"] for j in jobs if j.rule.name in MODEL_LOADING_RULES}
    missing = {m: w for m, w in MISSING_MODELS.items() if m in needed}
    if missing:
        raise SystemExit(
            "synergy-core: stopped before any job ran.\n"
            + missing_models_message(missing, config, RUN_OPTIONS)
        )


def report_command():
    return shlex.join(["snakemake", "--report", f"{RESULTS}/report.html", *RUN_OPTIONS])

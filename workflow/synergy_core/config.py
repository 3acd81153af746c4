"""Config validation: JSON schema (with defaults filled in) plus the cross-key rules a schema cannot say.

Every error is a :class:`ConfigError` whose message starts with the offending key, e.g.
``config key generation.num_tokens: -3 is less than the minimum of 1``, and is raised when the
Snakefile is parsed, before any job runs. YAML syntax errors name the file, line and column.

Check a config file without Snakemake (Snakemake itself reports a YAML syntax error in a
``--configfile`` without file or line)::

    python -m synergy_core.config config/my.yaml    # prints "config/my.yaml: OK", or the error (exit 1)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import re
import sys
from pathlib import Path

import jsonschema
import yaml

from .builtin import BUILTIN_MODELS, builtin_total_heads, is_builtin, total_heads
from .head_counts import last_removal_count, min_max_fraction
from .phiid.kernel import MIN_SAMPLES

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


#: Names under results/ that the workflow writes itself: no model or family may take them.
RESERVED_NAMES = frozenset({"figures", "logs", "benchmarks", "models", "task", "summary.tsv",
                            "summary.json", "summary.html", "report.html", "README.md", "comparisons",
                            "demo"})  # the demo's results_dir is results/demo


class ConfigError(ValueError):
    """Invalid configuration; the message names the key and the fix."""


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _no_duplicates(loader, node, deep=False):
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise ConfigError(f"config key {key!r} appears twice in the same mapping ({loader.name} "
                              f"line {key_node.start_mark.line + 1}); YAML would silently keep the last")
        keys.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def load_yaml_strict(path: str | Path) -> dict:
    """Load a YAML config file, refusing duplicate keys (e.g. two models with the same name).

    Every error is a :class:`ConfigError` naming the file and the line: a YAML syntax error
    (``config file F line 3, column 1: invalid YAML: ...``), a byte that is not UTF-8, a key
    that appears twice."""
    from .prompts import read_utf8  # the prompt table is read the same way

    try:
        text = read_utf8(path, f"config file {path}", "the file")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)   # marks (and so messages) name the file, not "<unicode string>"
    try:
        return loader.get_single_data() or {}
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = _where(mark) if mark else "(no position)"
        context = ""
        if err.context:
            context = f" ({err.context}" + (f" started at {_where(err.context_mark)}"
                                            if err.context_mark and err.context_mark is not mark else "") + ")"
        raise ConfigError(f"config file {path} {where}: invalid YAML: {err.problem}{context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: invalid YAML: {err}") from None
    finally:
        loader.dispose()


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _fill_defaults(instance: dict, schema: dict) -> None:
    """Set schema defaults for absent keys, recursively through objects and model entries."""
    if schema.get("type") != "object" or not isinstance(instance, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name, value in instance.items():
            if name not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def _is_integer(checker, instance) -> bool:
    """JSON Schema counts 1.0 as an integer; the jobs do not (``range(3.0)`` fails), so a
    config integer must be a YAML integer. ``true`` is no integer either."""
    return isinstance(instance, int) and not isinstance(instance, bool)


#: Draft 2020-12 with the stricter "integer" type.
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place (defaults filled) and return it; raise :class:`ConfigError`."""
    schema = load_schema(schema_path)
    validator = Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            where = _key(err.absolute_path)
            raise ConfigError(f"config key {where}: {err.message} (check the spelling against "
                              "workflow/schemas/config.schema.yaml)")
        hint = err.schema.get("description") if err.validator == "pattern" else None
        if (err.validator == "type" and isinstance(err.instance, float) and err.instance.is_integer()
                and "integer" in err.validator_value):
            hint = f"write {int(err.instance)}, without a decimal point"
        raise ConfigError(f"config key {_key(err.absolute_path)}: {err.message}"
                          + (f" ({' '.join(hint.split())})" if hint else ""))
    _fill_defaults(config, schema)
    _expand_revisions(config)
    _check_semantics(config)
    return config


def _expand_revisions(config: dict) -> None:
    """Replace each entry with ``revisions: [r1, r2, ...]`` by entries ``<name>-<r>``, each with
    ``revision: r`` and ``family: <name>`` (the training-progression group)."""
    expanded = {}
    for name, spec in config["models"].items():
        revisions = spec.pop("revisions", None)
        spec.setdefault("family", name)
        if revisions is None:
            expanded[name] = spec
            continue
        if spec.get("revision"):
            raise ConfigError(f"config key models.{name}: give either revision or revisions, not both")
        for rev in revisions:
            new = f"{name}-{rev}"
            if new in config["models"] or new in expanded:
                raise ConfigError(f"config key models.{name}.revisions: expanding {rev!r} gives "
                                  f"the model name {new!r}, which already exists")
            expanded[new] = dict(spec, revision=rev)  # family: the entry's (default: its name)
    config["models"] = expanded


#: Fewest prompts the workflow runs on: the split-half reliability of the ranking (rule
#: model_stats, :func:`stats.split_half_reliability`) needs two halves of at least one prompt,
#: and so do the cross-validated ablation's halves (``ablation.cross_validate``).
MIN_PROMPTS = 2


def surrogate_shift(n_steps: int, trim: float) -> int:
    """Shift half-range D of the surrogate test for ``n_steps`` steps (window ``T - 2 D``): the
    formula of :func:`synergy_core.stats.trim_steps` (pinned by tests/test_config.py), here so
    that checking a config does not import scipy and pandas."""
    return max(1, math.floor(trim * n_steps / 2 + 0.5))


def _check_prompt_selection(config: dict) -> None:
    """The selection exists and keeps at least :data:`MIN_PROMPTS` prompts; the message names the
    key that cut it down (first_k, else per_category, else categories, else the table)."""
    sel = config["prompts"]
    from .prompts import load_prompts, select_prompts

    try:
        table = load_prompts(sel["file"])
        chosen = select_prompts(table, sel["categories"], sel["per_category"], sel["first_k"])
    except ValueError as err:
        raise ConfigError(f"config key {err}") from err
    n = len(chosen)
    if n >= MIN_PROMPTS:
        return
    why = (f"the selection keeps {n} prompt, but the split-half reliability of the ranking (rule "
           f"model_stats) needs at least {MIN_PROMPTS}")
    n_categories = len(select_prompts(table, sel["categories"]))
    if sel["first_k"] is not None and sel["first_k"] < MIN_PROMPTS:
        raise ConfigError(f"config key prompts.first_k: {why}; use first_k >= {MIN_PROMPTS}")
    if sel["per_category"] is not None and n_categories > n:
        raise ConfigError(f"config key prompts.per_category: {why}; use per_category >= {MIN_PROMPTS} "
                          "or more prompts.categories")
    if sel["categories"] != "all":
        raise ConfigError(f"config key prompts.categories: {why}; choose categories with at least "
                          f"{MIN_PROMPTS} prompts in {sel['file']}")
    raise ConfigError(f"config key prompts.file: {why}; {sel['file']} has only {n}")


def _check_compute(gen: dict) -> None:
    """generation.gpus and generation.tf32 need a GPU: refused with device cpu, and several GPUs
    with one named GPU (cuda:N); ``auto`` is checked by the job (it fails if it sees too few)."""
    if gen["gpus"] > 1 and (gen["device"] == "cpu" or gen["device"].startswith("cuda:")):
        raise ConfigError(f"config key generation.gpus: {gen['gpus']} GPUs per model need "
                          f"generation.device auto or cuda, not {gen['device']!r} (the model is "
                          "spread over every GPU the job is given)")
    if gen["tf32"] and gen["device"] == "cpu":
        raise ConfigError("config key generation.tf32: TF32 is a CUDA matmul mode and has no effect "
                          "with generation.device cpu; set it false (or run on a GPU)")


def _check_semantics(config: dict) -> None:
    gen, phi, stats = config["generation"], config["phiid"], config["stats"]
    _check_compute(gen)
    max_tau = gen["num_tokens"] - MIN_SAMPLES
    if max_tau < 1:
        raise ConfigError(
            f"config key generation.num_tokens: {gen['num_tokens']} tokens leave fewer than "
            f"{MIN_SAMPLES} PhiID samples at any lag; use at least {MIN_SAMPLES + phi['tau']} "
            f"(phiid.tau + {MIN_SAMPLES})")
    if phi["tau"] > max_tau:
        raise ConfigError(
            f"config key phiid.tau: {phi['tau']} leaves fewer than {MIN_SAMPLES} samples with "
            f"generation.num_tokens = {gen['num_tokens']}; use tau <= {max_tau} or more tokens")
    if stats["n_surrogates"]:
        # the surrogate test (rule model_stats) runs PhiID on windows of T - 2 D steps
        steps, trim = gen["num_tokens"], stats["surrogate_trim"]
        d = surrogate_shift(steps, trim)
        if steps - 2 - phi["tau"] < MIN_SAMPLES:
            raise ConfigError(
                f"config key generation.num_tokens: {steps} tokens are too few for the surrogate "
                f"test at phiid.tau = {phi['tau']} (a window of at least tau + {MIN_SAMPLES} steps "
                f"after trimming at least 1 step at each end); use at least "
                f"{phi['tau'] + MIN_SAMPLES + 2} tokens, or stats.n_surrogates: 0 to skip the test")
        if steps - 2 * d - phi["tau"] < MIN_SAMPLES:
            raise ConfigError(
                f"config key stats.surrogate_trim: {trim} trims {d} of the {steps} steps at each "
                f"end, leaving a window of {steps - 2 * d} steps, too short for PhiID at phiid.tau "
                f"= {phi['tau']} (the window needs tau + {MIN_SAMPLES}); use a smaller trim or more "
                "generation.num_tokens, or stats.n_surrogates: 0 to skip the test")
    if phi["backend"] == "phyid" and importlib.util.find_spec("phyid") is None:
        from .phiid.reference import PHYID_INSTALL

        raise ConfigError("config key phiid.backend: 'phyid' needs the reference library, which "
                          f"is not installed here (it is not on PyPI): {PHYID_INSTALL}")
    if phi["backend"] == "phyid" and phi["aggregation"] != "per_prompt":
        raise ConfigError("config key phiid.aggregation: the phyid backend supports per_prompt only")
    config["results_dir"] = os.path.normpath(config["results_dir"])   # ./out/ -> out
    if config["results_dir"] in (os.curdir, os.sep) or config["results_dir"].startswith(os.pardir):
        raise ConfigError(f"config key results_dir: {config['results_dir']!r} would put the outputs "
                          "in the project (or file system) root or outside the working directory "
                          "by a relative path; name a directory of their own, e.g. results/myrun "
                          "(an absolute path elsewhere is fine)")
    # one spelling per file (./config/x.tsv and config/x.tsv are the same input and params)
    config["prompts"]["file"] = os.path.normpath(config["prompts"]["file"])
    prompts_file = Path(config["prompts"]["file"])
    if not prompts_file.is_file():
        raise ConfigError(f"config key prompts.file: {prompts_file} does not exist")
    _check_prompt_selection(config)
    unknown = sorted(set(config["ablation"]["models"] or ()) - set(config["models"]))
    if unknown:
        raise ConfigError(f"config key ablation.models: {unknown} are not configured models "
                          f"(configured: {sorted(config['models'])})")
    heads: dict[str, int | None] = {}   # total heads of each model, where known without loading it
    for name, spec in config["models"].items():
        where = f"config key models.{name}"
        if name in RESERVED_NAMES or spec.get("family") in RESERVED_NAMES:
            raise ConfigError(f"{where}: {name!r} (or its family) is a name the workflow uses under "
                              f"results/ itself ({', '.join(sorted(RESERVED_NAMES))}); choose another")
        if is_builtin(spec["hf_id"]):
            if spec["hf_id"] not in BUILTIN_MODELS:
                raise ConfigError(f"{where}.hf_id: unknown built-in model {spec['hf_id']!r}; "
                                  f"choose one of {', '.join(BUILTIN_MODELS)}")
            if spec.get("local_path"):
                raise ConfigError(f"{where}.local_path: built-in models have no local_path")
            if spec.get("revision") and not re.fullmatch(r"step\d+", spec["revision"]):
                raise ConfigError(f"{where}.revision: built-in models take step0, step1, ... "
                                  f"(training steps), not {spec['revision']!r}")
            n_total_heads = builtin_total_heads(spec["hf_id"])
        else:
            n_total_heads = _cached_heads(spec, config.get("hf_home"))
        if (spec.get("revision") and not is_builtin(spec["hf_id"])
                and not spec["hf_id"].lower().startswith("eleutherai/pythia")):
            raise ConfigError(f"{where}.revision: training-checkpoint revisions are only defined "
                              f"for EleutherAI/pythia-* models, not {spec['hf_id']!r}")
        if spec.get("local_path"):
            path = Path(spec["local_path"])
            if not (path / "config.json").is_file():
                raise ConfigError(f"{where}.local_path: {path} is not a Hugging Face model "
                                  "directory (no config.json there)")
        if n_total_heads is not None:
            n_pairs = n_total_heads * (n_total_heads - 1) // 2
            if phi["n_chunks"] > n_pairs:
                raise ConfigError(f"config key phiid.n_chunks: {phi['n_chunks']} chunks for "
                                  f"{n_pairs} head pairs of model {name}; use at most {n_pairs}")
        heads[name] = n_total_heads
    _check_perturbation(config, heads)
    _check_finetune(config, heads)
    _check_scaling(config)
    fraction = config["ablation"]["max_fraction"]
    for name in ablated_models(config):
        h = heads[name]
        if h is not None and last_removal_count(h, fraction) < 1:
            raise ConfigError(
                f"config key ablation.max_fraction: {fraction} of the {h} heads of model {name} "
                f"is less than one head, so the ablation would remove none; use at least "
                f"{min_max_fraction(h)} (1/{h})")
        n_parts = config["ablation"]["n_parts"]
        if h is not None and n_parts > 1 and n_parts > max_ablation_units(h, config["ablation"]):
            units = max_ablation_units(h, config["ablation"])
            raise ConfigError(
                f"config key ablation.n_parts: {n_parts} jobs for at most {units} groups of "
                f"ablation.mask_group = {config['ablation']['mask_group']} masks of model {name} (a job "
                f"evaluates whole groups); use at most {units}")


def max_ablation_units(n_total_heads: int, ablation: dict) -> int:
    """An upper bound on the units of work of one model's ablation, the groups of ``mask_group``
    masks that ``ablation.n_parts`` jobs share (:func:`synergy_core.ablation_plan.mask_units`):
    per prompt group (two with ``cross_validate``) the all-heads mask plus one mask per order and
    positive removal count, as if no two orders shared a mask (random ones rarely do). Plain
    arithmetic on the grids of :func:`synergy_core.ablation_curves.ablation_grids` (which this
    module does not import: it would import pandas)."""
    last = last_removal_count(n_total_heads, ablation["max_fraction"])
    step = ablation["step"]
    ranked = last // step + (last % step != 0)            # positive counts, every step-th and the last
    grid = ablation["random_grid"]
    random = ranked if grid is None else min(grid - 1, last)
    if grid is not None:
        ranked = min(last, ranked + random - 1)           # with the random grid's (the last in both)
    masks = 1 + 2 * ranked + ablation["n_random_orders"] * random
    return (2 if ablation["cross_validate"] else 1) * math.ceil(masks / ablation["mask_group"])


def _check_scaling(config: dict) -> None:
    """The scaling figure's models: configured ones, at least two (one point is no trend)."""
    chosen = config["scaling"]["models"]
    unknown = sorted(set(chosen) - set(config["models"]))
    if unknown:
        raise ConfigError(f"config key scaling.models: {unknown} are not configured models "
                          f"(configured: {sorted(config['models'])})")
    if len(chosen) == 1:
        raise ConfigError(f"config key scaling.models: {chosen} is one model; the scaling figure "
                          "needs at least 2 (or [] for no figure)")


def _check_finetune(config: dict, heads: dict[str, int | None]) -> None:
    """The finetune section: known models, readable data, trl's batch rule, parts that each get
    work, evaluation steps within the run, and regions of at least one head."""
    from .builtin import BUILTIN_TASKS
    from .finetune_plan import REGIONS, eval_steps
    from .tasks import BUILTIN_SFT, DOWNLOADABLE_SFT, DOWNLOADABLE_TASKS

    ft = config["finetune"]
    unknown = sorted(set(ft["models"]) - set(config["models"]))
    if unknown:
        raise ConfigError(f"config key finetune.models: {unknown} are not configured models "
                          f"(configured: {sorted(config['models'])})")
    if not ft["models"]:
        return
    for key, builtin, downloadable in (("train_task", BUILTIN_TASKS, DOWNLOADABLE_TASKS),
                                       ("eval_task", BUILTIN_TASKS, DOWNLOADABLE_TASKS),
                                       ("sft_data", BUILTIN_SFT, DOWNLOADABLE_SFT)):
        value = ft[key]
        if value not in builtin and value not in downloadable and not Path(value).is_file():
            raise ConfigError(f"config key finetune.{key}: {value!r} is neither a known data set "
                              f"({', '.join([*downloadable, *builtin])}) nor an existing JSONL file")
    grpo = ft["grpo"]
    if "grpo" in ft["methods"] and (grpo["batch_size"] * grpo["gradient_accumulation_steps"]) % grpo["num_generations"]:
        raise ConfigError(f"config key finetune.grpo.batch_size: {grpo['batch_size']} completions x "
                          f"{grpo['gradient_accumulation_steps']} accumulation steps is not a multiple of "
                          f"num_generations {grpo['num_generations']} (trl samples whole groups per prompt)")
    if "grpo" in ft["methods"] and grpo["beta"] > 0:
        for name in ft["models"]:
            spec = config["models"][name]
            if is_builtin(spec["hf_id"]) or spec.get("revision") or spec.get("init") == "random":
                raise ConfigError(f"config key finetune.grpo.beta: {grpo['beta']} > 0 needs a KL reference "
                                  f"model, which trl loads from the hub id alone: for model {name} (built-in, a "
                                  "revision or random init) it would be another model; use beta 0 or local_path")
    if ft["eval_from"] > ft["max_steps"]:
        raise ConfigError(f"config key finetune.eval_from: {ft['eval_from']} is after max_steps {ft['max_steps']}")
    n_runs = len(ft["methods"]) * len(REGIONS) * ft["n_seeds"]
    if ft["n_train_parts"] is not None and ft["n_train_parts"] > n_runs:
        raise ConfigError(f"config key finetune.n_train_parts: {ft['n_train_parts']} jobs for {n_runs} runs "
                          f"per model; use at most {n_runs} (or null: one job per run)")
    n_units = 1 + n_runs * len(eval_steps(ft["max_steps"], ft["eval_from"], ft["eval_every"]))
    if ft["n_eval_parts"] > n_units:
        raise ConfigError(f"config key finetune.n_eval_parts: {ft['n_eval_parts']} jobs for {n_units} "
                          f"checkpoints per model; use at most {n_units}")
    _check_head_sets("finetune.region_fraction", ft["region_fraction"], ft["models"], heads)


def _check_perturbation(config: dict, heads: dict[str, int | None]) -> None:
    """The perturbation section: known models, a readable task, a verdict alpha that is run,
    and sets of at least one head (where the head count is known without loading the model)."""
    from .builtin import BUILTIN_TASKS

    pert = config["perturbation"]
    unknown = sorted(set(pert["models"]) - set(config["models"]))
    if unknown:
        raise ConfigError(f"config key perturbation.models: {unknown} are not configured models "
                          f"(configured: {sorted(config['models'])})")
    task = pert["task"]
    if task.startswith("builtin:") and task not in BUILTIN_TASKS:
        raise ConfigError(f"config key perturbation.task: unknown built-in task {task!r}; choose one "
                          f"of {', '.join(BUILTIN_TASKS)}")
    if pert["models"] and task not in BUILTIN_TASKS and task not in ("math500",) and not Path(task).is_file():
        raise ConfigError(f"config key perturbation.task: {task!r} is neither a known task "
                          f"(math500, {', '.join(BUILTIN_TASKS)}) nor an existing JSONL file")
    if isinstance(pert["chat_template"], dict):
        stray = sorted(set(pert["chat_template"]) - set(pert["models"]))
        if stray:
            raise ConfigError(f"config key perturbation.chat_template: {stray} are not perturbation.models "
                              f"({pert['models']})")
    # noise seeds and unit labels identify an alpha by its millionths (perturbation_plan.noise_seed)
    millionths = [round(a * 1e6) for a in pert["alpha"]]
    if len(set(millionths)) < len(millionths):
        raise ConfigError(f"config key perturbation.alpha: {pert['alpha']} has values equal to within 1e-6, "
                          "which would share their noise draws; use distinct values")
    n_units = 1 + (2 + pert["n_random_sets"]) * len(pert["alpha"]) * pert["n_repeats"]
    if pert["n_parts"] > n_units:
        raise ConfigError(f"config key perturbation.n_parts: {pert['n_parts']} jobs for {n_units} units of "
                          f"work per model; use at most {n_units} (a job without a unit only loads the model)")
    if pert["verdict_alpha"] is None:
        pert["verdict_alpha"] = pert["alpha"][0]
    elif pert["verdict_alpha"] not in pert["alpha"]:
        raise ConfigError(f"config key perturbation.verdict_alpha: {pert['verdict_alpha']} is not one "
                          f"of perturbation.alpha {pert['alpha']}")
    _check_head_sets("perturbation.core_fraction", pert["core_fraction"], pert["models"], heads)


def _check_head_sets(key: str, fraction: float, models, heads: dict[str, int | None]) -> None:
    """A set of ``fraction`` of each model's heads (perturbed core, fine-tuned region) has at
    least one head, where the head count is known without loading the model."""
    from .head_counts import perturbation_set_size

    for name in models:
        h = heads.get(name)
        if h is not None and perturbation_set_size(h, fraction) < 1:
            raise ConfigError(f"config key {key}: {fraction} of the {h} heads of model {name} is "
                              "less than one head")


def export_environment(config: dict, workflow_dir: str | Path) -> None:
    """Environment every job inherits: this checkout's package on PYTHONPATH (jobs work without
    a pip install, also in conda envs and on SLURM nodes) and HF_HOME from ``hf_home``."""
    paths = [str(workflow_dir)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if config.get("hf_home"):
        os.environ["HF_HOME"] = str(Path(config["hf_home"]).resolve())


def ablated_models(config: dict) -> list[str]:
    """Models the ablation stage runs on: ``ablation.models``, or every pretrained model."""
    if not config["ablation"]["enabled"]:
        return []
    chosen = config["ablation"]["models"]
    if chosen is None:
        return [m for m, spec in config["models"].items() if spec["init"] == "pretrained"]
    return list(chosen)


def hub_cache_dir(hf_home: str | None = None) -> Path:
    """The hub cache the jobs read, in huggingface_hub's order: ``$HF_HUB_CACHE``, else
    ``hf_home/hub`` (the workflow exports ``hf_home`` as ``HF_HOME``), else ``$HF_HOME/hub``,
    else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if hf_home:
        return Path(hf_home) / "hub"
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def hub_cache_file(hf_id: str, filename: str, revision: str | None = None,
                   hf_home: str | None = None) -> Path | None:
    """The local copy of one file of a hub model, or None when it is not cached.

    Reads the Hugging Face cache layout directly (``<cache>/models--org--name/refs/<revision>``
    holds a commit, the file is under ``snapshots/<commit>/``) so that checking a config never
    imports huggingface_hub or opens a connection. The cache is :func:`hub_cache_dir`.
    """
    repo = hub_cache_dir(hf_home) / ("models--" + hf_id.replace("/", "--"))
    ref = repo / "refs" / (revision or "main")
    if ref.is_file():
        commit = ref.read_text().strip()
    elif revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        commit = revision
    else:
        return None
    path = repo / "snapshots" / commit / filename
    return path if path.is_file() else None


def paired_comparisons(config: dict, families: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """The paired model comparisons ``(model, other, kind)``: every pretrained model minus its
    random-init twin (the first ``init: random`` model with the same ``hf_id``; kind
    ``random``), and each family's final checkpoint minus its first (by the step number in the
    revision; kind ``first``). ``families`` maps a family to its models (two or more)."""
    models = config["models"]

    def step(name):
        digits = "".join(c for c in str(models[name].get("revision") or "") if c.isdigit())
        return int(digits or 0)

    out = []
    for name, spec in models.items():
        if spec["init"] != "pretrained":
            continue
        twins = [r for r, s in models.items() if s["init"] == "random" and s["hf_id"] == spec["hf_id"]]
        if twins:
            out.append((name, twins[0], "random"))
    for members in families.values():
        ordered = sorted(members, key=step)
        out.append((ordered[-1], ordered[0], "first"))
    return out


#: Files that make a hub model loadable offline: its config, one form of weights (not needed
#: for a random initialisation) and a tokenizer.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def missing_from_cache(spec: dict, hf_home: str | None) -> list[str]:
    """What of a hub model is not in the local cache (``[]``: it loads offline): any of
    ``config.json``, ``weights``, ``tokenizer``. Built-in and ``local_path`` models: ``[]``.
    Reads the cache layout only (no network, no huggingface_hub import)."""
    if is_builtin(spec["hf_id"]) or spec.get("local_path"):
        return []

    def cached(*names):
        return any(hub_cache_file(spec["hf_id"], n, spec.get("revision"), hf_home) for n in names)

    missing = [] if cached("config.json") else ["config.json"]
    if spec.get("init", "pretrained") != "random" and not cached(*WEIGHT_FILES):
        missing.append("weights")
    if not cached(*TOKENIZER_FILES):
        missing.append("tokenizer")
    return missing


def missing_models(config: dict) -> dict[str, list[str]]:
    """``{model: what is missing}`` for every configured model that cannot load offline."""
    out = {}
    for name, spec in config["models"].items():
        missing = missing_from_cache(spec, config.get("hf_home"))
        if missing:
            out[name] = missing
    return out


def missing_models_message(missing: dict[str, list[str]], config: dict, options=()) -> str:
    """The preflight's message: every missing model, the cache looked in, and the one command
    that fetches them all (``options``: this run's ``--configfile``/``--directory`` options)."""
    import shlex

    lines = [f"{len(missing)} model(s) are missing from the Hugging Face cache "
             f"{hub_cache_dir(config.get('hf_home'))} (jobs never download):"]
    for name, what in missing.items():
        spec = config["models"][name]
        rev = f" revision {spec['revision']}" if spec.get("revision") else ""
        lines.append(f"  {name}: {spec['hf_id']}{rev} (missing: {', '.join(what)})")
    command = ["snakemake", "download_models", "--cores", "1", *map(str, options)]
    lines.append("Fetch them all where the network is (on a cluster: the login node), with the same "
                 "hf_home/HF_HOME:")
    lines.append(f"  {shlex.join(command)}")
    return "\n".join(lines)


def cached_model_config(spec: dict, hf_home: str | None) -> dict | None:
    """A hub model's config.json as a dict if it is already local (``local_path`` or the hub
    cache; no network), else None; also None when it is unreadable (loading will say so)."""
    import json

    if spec.get("local_path"):
        path = Path(spec["local_path"]) / "config.json"
    else:
        path = hub_cache_file(spec["hf_id"], "config.json", spec.get("revision"), hf_home)
    if path is None or not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):  # a damaged config
        return None
    return cfg if isinstance(cfg, dict) else None


def _cached_heads(spec: dict, hf_home: str | None) -> int | None:
    """Total heads of a hub model if its config.json is already local (no network), else None."""
    cfg = cached_model_config(spec, hf_home)
    try:
        return None if cfg is None else total_heads(cfg)
    except (AttributeError, TypeError):  # a damaged config: loading will say so
        return None


def model_spec(config: dict, name: str) -> dict:
    """The spec of a configured model plus its ``name``: only what identifies the weights
    (where the cache lives is the environment's ``HF_HOME``, so moving it reruns nothing)."""
    return dict(config["models"][name], name=name)


def main(argv: list[str] | None = None) -> int:
    """``python -m synergy_core.config FILE...``: load each config file strictly and validate it
    as the workflow would (run from the repository root: prompts.file is relative to it).
    Prints ``FILE: OK`` or ``FILE: <the error>``; exit code 1 if any file is invalid."""
    parser = argparse.ArgumentParser(
        prog="python -m synergy_core.config",
        description="Check workflow config files before a run: YAML syntax (with file and line), "
                    "duplicate keys, the schema and the cross-key rules. Run from the repository root.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="config file(s), e.g. config/config.yaml")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        try:
            validate_config(load_yaml_strict(path))
        except (ConfigError, OSError) as err:
            message = str(err)
            print(message if str(path) in message else f"{path}: {message}", file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: OK")
    return 1 if failed else 0


if __name__ == "__main__":
    # run the package module's main (not this __main__ copy), so that the ConfigError caught is the
    # one the package raises
    from synergy_core.config import main as _main

    sys.exit(_main())

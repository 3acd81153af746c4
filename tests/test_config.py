"""Bad configuration fails at validation time with a message naming the offending key."""
import copy
import re
import shutil

import pytest
import yaml

from synergy_core.config import ConfigError, load_yaml_strict, validate_config
from synergy_core.phiid.all_pairs import DEFAULT_MAX_BLOCK_PAIRS


@pytest.fixture
def demo(repo, monkeypatch):
    """The demo config without its perturbation models, since most tests replace the models
    (the perturbation cases name theirs; test_demo_perturbation_config_is_valid checks the file)."""
    monkeypatch.chdir(repo)
    with open(repo / "config/demo.yaml") as fh:
        cfg = yaml.safe_load(fh)
    cfg["perturbation"]["models"] = []
    cfg["finetune"]["models"] = []
    return cfg


def test_demo_perturbation_and_fig4b_configs_are_valid(repo, monkeypatch):
    monkeypatch.chdir(repo)
    demo = validate_config(yaml.safe_load((repo / "config/demo.yaml").read_text()))
    assert demo["perturbation"]["models"] == ["tiny-llama"] and demo["perturbation"]["verdict_alpha"] == 3.0
    fig4b = validate_config(yaml.safe_load((repo / "config/fig4b.yaml").read_text()))
    assert fig4b["perturbation"]["verdict_alpha"] == 0.5 and len(fig4b["perturbation"]["models"]) == 3
    assert fig4b["data_dir"] == "data" and fig4b["perturbation"]["prompt_template"].endswith("\\boxed{}.")
    assert demo["finetune"]["models"] == ["tiny-llama"] and demo["finetune"]["n_train_parts"] == 1
    fig5 = validate_config(yaml.safe_load((repo / "config/fig5.yaml").read_text()))
    ft = fig5["finetune"]
    assert ft["max_steps"] == 5000 and ft["eval_from"] == 2500 and ft["eval_every"] == 500
    assert ft["n_seeds"] == 5 and ft["region_fraction"] == 0.5 and ft["grpo"]["num_generations"] == 8
    assert ft["grpo"]["max_completion_length"] == 1024 and ft["grpo"]["batch_size"] == 16


def test_pythia_scaling_config(repo, monkeypatch):
    """config/pythia-scaling.yaml: the 8 Pythia sizes at their final checkpoint, each with a
    random-init twin of the same architecture and dtype; bfloat16 from 6.9B only; the paper's
    prompts and PhiID settings; the trained models ablated; all 16 in the scaling figure; the
    default (the paper's and the demo's) draws none."""
    monkeypatch.chdir(repo)
    cfg = validate_config(load_yaml_strict(repo / "config/pythia-scaling.yaml"))
    sizes = ["70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]
    trained = [f"pythia-{s}" for s in sizes]
    assert list(cfg["models"]) == [m for t in trained for m in (t, f"{t}-random")]
    for t in trained:
        model, twin = cfg["models"][t], cfg["models"][f"{t}-random"]
        assert model["hf_id"] == twin["hf_id"] == f"EleutherAI/{t}"
        assert model["revision"] == twin["revision"] == "step143000"
        assert (model["init"], twin["init"], twin["seed"]) == ("pretrained", "random", 1)
        big = t in ("pythia-6.9b", "pythia-12b")
        assert model["dtype"] == twin["dtype"] == ("bfloat16" if big else "float32")
    paper = validate_config(load_yaml_strict(repo / "config/config.yaml"))
    assert cfg["prompts"] == paper["prompts"] and cfg["generation"] == paper["generation"]
    assert cfg["phiid"] == paper["phiid"] and cfg["stats"] == paper["stats"]
    assert {k: v for k, v in cfg["ablation"].items() if k not in ("models", "step")} == \
        {k: v for k, v in paper["ablation"].items() if k not in ("models", "step")}
    assert cfg["ablation"]["models"] == trained and cfg["ablation"]["step"] == 4
    assert cfg["scaling"]["models"] == list(cfg["models"])
    assert cfg["results_dir"] == "results/pythia-scaling"
    assert paper["scaling"]["models"] == [] and validate_config({})["scaling"] == {"models": []}


def test_demo_and_paper_configs_are_valid_and_defaults_filled(repo, demo):
    cfg = validate_config(copy.deepcopy(demo))
    assert cfg["phiid"]["redundancy"] == "MMI" and cfg["phiid"]["block_pairs"] == DEFAULT_MAX_BLOCK_PAIRS
    assert cfg["models"]["tiny-neox-step150"]["dtype"] == "float32"
    assert cfg["hf_home"] is None
    paper = validate_config(load_yaml_strict(repo / "config/config.yaml"))
    assert paper["models"]["pythia-1b-step143000"]["hf_id"] == "EleutherAI/pythia-1b"
    assert len([m for m in paper["models"] if m.startswith("pythia-1b-step")]) == 12
    assert paper["generation"]["num_tokens"] == 100


def test_empty_config_gets_the_paper_defaults(repo, monkeypatch):
    monkeypatch.chdir(repo)
    cfg = validate_config({})
    assert cfg["models"] == {"pythia-1b": {"hf_id": "EleutherAI/pythia-1b", "revision": None,
                                           "init": "pretrained", "seed": 0, "dtype": "float32",
                                           "local_path": None, "family": "pythia-1b"}}
    assert validate_config(copy.deepcopy(cfg)) == cfg  # idempotent
    assert cfg["phiid"]["tau"] == 1 and cfg["generation"]["num_tokens"] == 100


BAD = [
    ({"bogus": 1}, r"config key \(top level\): Additional properties .*'bogus'"),
    ({"phiid": {"n_chunk": 2}}, r"config key phiid: Additional properties .*'n_chunk'"),
    ({"generation": {"num_tokens": "many"}}, r"config key generation.num_tokens: 'many' is not of type 'integer'"),
    ({"generation": {"num_tokens": 0}}, r"config key generation.num_tokens: 0 is less than the minimum of 1"),
    ({"generation": {"num_tokens": -5}}, r"config key generation.num_tokens: -5 is less than"),
    ({"phiid": {"tau": 0}}, r"config key phiid.tau: 0 is less than the minimum of 1"),
    ({"phiid": {"tau": 36}}, r"config key phiid.tau: 36 leaves fewer than 5 samples .* tau <= 35"),
    ({"phiid": {"n_chunks": 0}}, r"config key phiid.n_chunks: 0 is less than the minimum of 1"),
    ({"phiid": {"n_chunks": 277}}, r"config key phiid.n_chunks: 277 chunks for 276 head pairs"),
    ({"ablation": {"models": ["nope"]}}, r"config key ablation.models: \['nope'\] are not configured models"),
    ({"phiid": {"redundancy": "CCS"}}, r"config key phiid.redundancy: 'CCS' is not one of \['MMI'\]"),
    ({"phiid": {"aggregation": "mean"}}, r"config key phiid.aggregation: 'mean' is not one of"),
    ({"phiid": {"backend": "jax"}}, r"config key phiid.backend: 'jax' is not one of"),
    ({"prompts": {"categories": []}}, r"config key prompts.categories"),
    ({"prompts": {"first_k": 0}}, r"config key prompts.first_k: 0 is less than the minimum of 1"),
    ({"prompts": {"file": "nope.tsv"}}, r"config key prompts.file: nope.tsv does not exist"),
    ({"prompts": {"categories": ["Astrology"]}}, r"config key prompts.categories: unknown categories \['Astrology'\]"),
    ({"models": {}}, r"config key models: \{\} should be non-empty"),
    ({"models": {"bad name!": {"hf_id": "x/y"}}}, r"config key models: 'bad name!' does not match"),
    # `__` would break the summary's bookkeeping, `/` and spaces the paths: refused at parse time
    ({"models": {"a__b": {"hf_id": "x/y"}}}, r"config key models: 'a__b' does not match .*without '__'"),
    ({"models": {"a/b": {"hf_id": "x/y"}}}, r"config key models: 'a/b' does not match .*no '/'"),
    ({"models": {"m": {"hf_id": "x/y", "family": "../../x"}}}, r"config key models.m.family: '../../x' does not"),
    ({"models": {"m": {"hf_id": "x/y", "revisions": ["a__b"]}}}, r"config key models.m.revisions.0: 'a__b'"),
    ({"models": {"m": {"init": "random"}}}, r"config key models.m: 'hf_id' is a required property"),
    ({"models": {"m": {"hf_id": "x/y", "init": "trained"}}}, r"config key models.m.init: 'trained' is not one of"),
    ({"models": {"m": {"hf_id": "meta-llama/Llama-3.2-1B", "revision": "step1000"}}},
     r"config key models.m.revision: training-checkpoint revisions are only defined for EleutherAI/pythia"),
    ({"models": {"m": {"hf_id": "builtin:tiny-bert"}}}, r"config key models.m.hf_id: unknown built-in model"),
    ({"models": {"m": {"hf_id": "builtin:tiny-llama", "revision": "main"}}},
     r"config key models.m.revision: built-in models take step0, step1"),
    ({"models": {"m": {"hf_id": "EleutherAI/pythia-1b", "revision": "step1", "revisions": ["step2"]}}},
     r"config key models.m: give either revision or revisions"),
    ({"models": {"m": {"hf_id": "EleutherAI/pythia-1b", "revisions": ["s1"]}, "m-s1": {"hf_id": "x/y"}}},
     r"config key models.m.revisions: expanding 's1' gives the model name 'm-s1', which already exists"),
    ({"models": {"m": {"hf_id": "x/y", "local_path": "/does/not/exist"}}},
     r"config key models.m.local_path: /does/not/exist is not a Hugging Face model directory"),
    ({"generation": {"device": "tpu"}}, r"config key generation.device: 'tpu' does not match"),
    # compute settings of the extraction and ablation (synergy_core.compute); the demo runs on cpu
    ({"generation": {"dtype": "fp8"}}, r"^config key generation.dtype: 'fp8' is not one of"),
    ({"ablation": {"dtype": "bf16"}}, r"^config key ablation.dtype: 'bf16' is not one of"),
    ({"generation": {"gpus": 0}}, r"^config key generation.gpus: 0 is less than the minimum of 1$"),
    ({"generation": {"gpus": 2}},
     r"^config key generation.gpus: 2 GPUs per model need generation.device auto or cuda, not 'cpu'"),
    ({"generation": {"gpus": 2, "device": "cuda:1"}},
     r"^config key generation.gpus: 2 GPUs per model need generation.device auto or cuda, not 'cuda:1'"),
    ({"generation": {"tf32": True}}, r"^config key generation.tf32: TF32 is a CUDA matmul mode"),
    ({"generation": {"tf32": "yes"}}, r"^config key generation.tf32: 'yes' is not of type 'boolean'$"),
    # integers are integers: JSON Schema counts 20.0 as one, the jobs do not
    ({"generation": {"num_tokens": 20.0}},
     r"^config key generation.num_tokens: 20.0 is not of type 'integer' \(write 20, without a decimal point\)$"),
    ({"phiid": {"tau": 1.0}}, r"^config key phiid.tau: 1.0 is not of type 'integer' \(write 1, without a decimal"),
    ({"phiid": {"n_chunks": 3.0}}, r"^config key phiid.n_chunks: 3.0 is not of type 'integer' \(write 3, "),
    ({"prompts": {"first_k": 2.0}},
     r"^config key prompts.first_k: 2.0 is not of type 'integer', 'null' \(write 2, without a decimal point\)$"),
    ({"stats": {"n_boot_graph": 20.0}}, r"^config key stats.n_boot_graph: 20.0 is not of type 'integer'"),
    ({"ablation": {"n_random_orders": 2.5}}, r"^config key ablation.n_random_orders: 2.5 is not of type 'integer'$"),
    ({"generation": {"batch_size": True}}, r"^config key generation.batch_size: True is not of type 'integer'$"),
    # seeds: numpy's generators refuse negative ones
    ({"stats": {"seed": -1}}, r"^config key stats.seed: -1 is less than the minimum of 0$"),
    ({"ablation": {"seed": -1}}, r"^config key ablation.seed: -1 is less than the minimum of 0$"),
    ({"models": {"m": {"hf_id": "builtin:tiny-llama", "seed": -2}}},
     r"^config key models.m.seed: -2 is less than the minimum of 0$"),
    ({"ablation": {"models": ["tiny-llama", "tiny-llama"]}},
     r"^config key ablation.models: \['tiny-llama', 'tiny-llama'\] has non-unique elements$"),
    ({"models": {"m": {"hf_id": "x/y", "family": "a(b"}}}, r"^config key models.m.family: 'a\(b' does not match "),
    # the selection must keep 2 prompts (split halves in model_stats), blamed on the key that cut it
    ({"prompts": {"first_k": 1}},
     r"^config key prompts.first_k: the selection keeps 1 prompt, but the split-half reliability of the "
     r"ranking \(rule model_stats\) needs at least 2; use first_k >= 2$"),
    ({"prompts": {"categories": ["Basic Numerical Reasoning"], "per_category": 1}},
     r"^config key prompts.per_category: the selection keeps 1 prompt, .* needs at least 2; use "
     r"per_category >= 2 or more prompts.categories$"),
    # too few tokens: for PhiID at all, then for the surrogate test's trimmed window (demo: tau 1,
    # 20 surrogates, trim 0.4)
    ({"generation": {"num_tokens": 5}},
     r"^config key generation.num_tokens: 5 tokens leave fewer than 5 PhiID samples at any lag; use at "
     r"least 6 \(phiid.tau \+ 5\)$"),
    ({"generation": {"num_tokens": 7}},
     r"^config key generation.num_tokens: 7 tokens are too few for the surrogate test at phiid.tau = 1 .* use "
     r"at least 8 tokens, or stats.n_surrogates: 0 to skip the test$"),
    ({"generation": {"num_tokens": 8}},
     r"^config key stats.surrogate_trim: 0.4 trims 2 of the 8 steps at each end, leaving a window of 4 steps, "
     r"too short for PhiID at phiid.tau = 1 \(the window needs tau \+ 5\); use a smaller trim or more "
     r"generation.num_tokens, or stats.n_surrogates: 0 to skip the test$"),
    ({"stats": {"surrogate_trim": 0.9}},
     r"^config key stats.surrogate_trim: 0.9 trims 18 of the 40 steps at each end, leaving a window of 4 steps"),
    ({"stats": {"ci": 1}}, r"^config key stats.ci: 1 is greater than or equal to the maximum of 1$"),
    ({"stats": {"ci": 0}}, r"^config key stats.ci: 0 is less than or equal to the minimum of 0$"),
    # max_fraction must remove a head of every ablated model (tiny-neox: 24 heads, tiny-llama: 12)
    ({"ablation": {"max_fraction": 0.04}},
     r"^config key ablation.max_fraction: 0.04 of the 24 heads of model tiny-neox-step150 is less than one "
     r"head, so the ablation would remove none; use at least 0.0417 \(1/24\)$"),
    ({"ablation": {"max_fraction": 0.05}},
     r"^config key ablation.max_fraction: 0.05 of the 12 heads of model tiny-llama is less than one head, "
     r"so the ablation would remove none; use at least 0.0834 \(1/12\)$"),
    # the perturbation stage (tiny-llama: 12 heads; the demo's alpha [1.0, 3.0])
    ({"perturbation": {"models": ["nope"]}},
     r"^config key perturbation.models: \['nope'\] are not configured models"),
    ({"perturbation": {"task": "builtin:geometry"}},
     r"^config key perturbation.task: unknown built-in task 'builtin:geometry'; choose one of builtin:arithmetic$"),
    ({"perturbation": {"models": ["tiny-llama"], "task": "/no/such/problems.jsonl"}},
     r"^config key perturbation.task: '/no/such/problems.jsonl' is neither a known task .* nor an existing JSONL"),
    ({"perturbation": {"verdict_alpha": 2.0}},
     r"^config key perturbation.verdict_alpha: 2.0 is not one of perturbation.alpha \[1.0, 3.0\]$"),
    ({"perturbation": {"models": ["tiny-llama"], "core_fraction": 0.05}},
     r"^config key perturbation.core_fraction: 0.05 of the 12 heads of model tiny-llama is less than one head$"),
    ({"perturbation": {"core_fraction": 0.6}},
     r"^config key perturbation.core_fraction: 0.6 is greater than the maximum of 0.5$"),
    ({"perturbation": {"alpha": [1.0, 1.0]}}, r"^config key perturbation.alpha: \[1.0, 1.0\] has non-unique"),
    ({"perturbation": {"alpha": [-1.0]}}, r"^config key perturbation.alpha.0: -1.0 is less than the minimum of 0$"),
    ({"perturbation": {"prompt_template": "no field"}},
     r"^config key perturbation.prompt_template: 'no field' does not match"),
    ({"perturbation": {"n_repeats": 0}}, r"^config key perturbation.n_repeats: 0 is less than the minimum of 1$"),
    ({"perturbation": {"chat_template": "yes"}},
     r"^config key perturbation.chat_template: 'yes' is not valid under any of the given schemas$"),
    ({"perturbation": {"models": ["tiny-llama"], "chat_template": {"tiny-neox-random": False}}},
     r"^config key perturbation.chat_template: \['tiny-neox-random'\] are not perturbation.models"),
    ({"perturbation": {"n_parts": 200}},
     r"^config key perturbation.n_parts: 200 jobs for 127 units of work per model; use at most 127"),
    ({"perturbation": {"alpha": [0.1, 0.1000001]}},
     r"^config key perturbation.alpha: \[0.1, 0.1000001\] has values equal to within 1e-6"),
    # the fine-tuning stage (the demo's: 2 methods x 3 regions x 2 seeds, steps 5 and 10)
    ({"finetune": {"models": ["nope"]}}, r"^config key finetune.models: \['nope'\] are not configured models"),
    ({"finetune": {"models": ["tiny-llama"], "eval_task": "/no/such.jsonl"}},
     r"^config key finetune.eval_task: '/no/such.jsonl' is neither a known data set"),
    ({"finetune": {"models": ["tiny-llama"], "grpo": {"batch_size": 12, "num_generations": 8}}},
     r"^config key finetune.grpo.batch_size: 12 completions x 1 accumulation steps is not a multiple"),
    ({"finetune": {"models": ["tiny-llama"], "eval_from": 50}},
     r"^config key finetune.eval_from: 50 is after max_steps 10$"),
    ({"finetune": {"models": ["tiny-llama"], "n_train_parts": 13}},
     r"^config key finetune.n_train_parts: 13 jobs for 12 runs per model; use at most 12"),
    ({"finetune": {"models": ["tiny-llama"], "n_eval_parts": 26}},
     r"^config key finetune.n_eval_parts: 26 jobs for 25 checkpoints per model; use at most 25$"),
    ({"finetune": {"models": ["tiny-llama"], "region_fraction": 0.05}},
     r"^config key finetune.region_fraction: 0.05 of the 12 heads of model tiny-llama is less than one head$"),
    ({"finetune": {"models": ["tiny-llama"], "grpo": {"beta": 0.04}}},
     r"^config key finetune.grpo.beta: 0.04 > 0 needs a KL reference model"),
    ({"finetune": {"n_seeds": 1}}, r"^config key finetune.n_seeds: 1 is less than the minimum of 2$"),
    ({"finetune": {"methods": ["ppo"]}}, r"^config key finetune.methods.0: 'ppo' is not one of"),
    # the scaling figure: configured models, at least two
    ({"scaling": {"models": ["tiny-llama", "pythia-99b"]}},
     r"^config key scaling.models: \['pythia-99b'\] are not configured models \(configured: "),
    ({"scaling": {"models": ["tiny-llama"]}},
     r"^config key scaling.models: \['tiny-llama'\] is one model; the scaling figure needs at least 2 "),
    ({"scaling": {"models": ["tiny-llama", "tiny-llama"]}},
     r"^config key scaling.models: \['tiny-llama', 'tiny-llama'\] has non-unique elements$"),
    ({"scaling": {"model": ["tiny-llama"]}}, r"^config key scaling: Additional properties .*'model'"),
    ({"scaling": {"models": "all"}}, r"^config key scaling.models: 'all' is not of type 'array'$"),
]


def _case_id(change: dict) -> str:
    """``section.key=value`` of a BAD case, e.g. ``phiid.n_chunks=3.0``."""
    def flat(prefix, value):
        if isinstance(value, dict) and value:
            return [x for k, v in value.items() for x in flat(f"{prefix}.{k}" if prefix else k, v)]
        return [f"{prefix}={value!r}".replace(" ", "")]
    return ",".join(flat("", change))


@pytest.mark.parametrize("change,message", BAD, ids=[_case_id(c) for c, _ in BAD])
def test_bad_values_are_rejected_naming_the_key(demo, change, message):
    cfg = copy.deepcopy(demo)
    if "models" in change:
        cfg["ablation"]["models"] = None
    for section, value in change.items():
        if isinstance(value, dict) and isinstance(cfg.get(section), dict) and section != "models":
            cfg[section].update(value)
        else:
            cfg[section] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_good_edge_values_are_accepted(demo):
    """The lowest values the checks allow run (each checked end to end when they were set)."""
    for section, change in [("prompts", {"first_k": 2}),
                            ("prompts", {"categories": ["Basic Numerical Reasoning"], "per_category": 2}),
                            ("ablation", {"max_fraction": 0.0834}),            # 1 of tiny-llama's 12
                            ("ablation", {"enabled": False, "max_fraction": 0.01}),
                            ("stats", {"n_boot_graph": 0, "n_null_graph": 0}),
                            ("ablation", {"n_random_orders": 0, "random_grid": None}),
                            ("generation", {"num_tokens": 8}), ("stats", {"surrogate_trim": 0.3})]:
        cfg = copy.deepcopy(demo)
        cfg[section].update(change)
        if section == "generation":
            cfg["stats"]["surrogate_trim"] = 0.3           # 8 steps: D = 1, window 6 = tau + 5
        validate_config(cfg)
    cfg = copy.deepcopy(demo)
    cfg["generation"]["num_tokens"] = 6
    cfg["stats"]["n_surrogates"] = 0                       # no surrogate test: 6 tokens suffice
    validate_config(cfg)


def test_surrogate_and_ablation_formulas_match_the_stages():
    """config.py repeats two formulas of the stages (so that a config check imports neither scipy
    nor pandas): the surrogate test's trim and the ablation's last removal count."""
    from synergy_core.ablation_curves import removal_counts
    from synergy_core.config import surrogate_shift
    from synergy_core.head_counts import last_removal_count
    from synergy_core.stats import trim_steps

    for steps in range(6, 120):
        for trim in (0.01, 0.1, 0.25, 0.3, 0.4, 0.5, 0.55, 0.9):
            try:
                expected = trim_steps(steps, trim, 1)
            except ValueError:
                expected = None
            d = surrogate_shift(steps, trim)
            assert (d if steps - 2 * d - 1 >= 5 else None) == expected, (steps, trim)
    for heads in (1, 4, 12, 24, 128, 1024):
        for fraction in (0.001, 0.04, 0.05, 1 / 12, 0.0834, 0.1, 0.4, 0.7, 1.0):
            assert last_removal_count(heads, fraction) == removal_counts(heads, fraction)[-1]


def test_two_prompts_are_the_fewest_the_statistics_take():
    """MIN_PROMPTS is what split_half_reliability (rule model_stats) needs."""
    import numpy as np

    from synergy_core.config import MIN_PROMPTS
    from synergy_core.stats import split_half_reliability

    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    rng = np.random.default_rng(0)
    split_half_reliability(rng.random((3, MIN_PROMPTS)), rng.random((3, MIN_PROMPTS)), pairs, 3, 2)
    with pytest.raises(ValueError, match="need at least 2 prompts"):
        split_half_reliability(rng.random((3, MIN_PROMPTS - 1)), rng.random((3, MIN_PROMPTS - 1)), pairs, 3, 2)


def test_duplicate_model_names_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("models:\n  a:\n    hf_id: builtin:tiny-gpt-neox\n  a:\n    hf_id: builtin:tiny-llama\n")
    with pytest.raises(ConfigError, match=f"^config key 'a' appears twice in the same mapping "
                                          f"\\({re.escape(str(path))} line 4\\); YAML would silently keep the last$"):
        load_yaml_strict(path)


YAML_BAD = [
    ("unclosed-list", b"generation:\n  num_tokens: [1\n",
     r"line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' \(while parsing a flow "
     r"sequence started at line 2, column 15\)"),
    ("tab-indent", b"phiid:\n\ttau: 2\n",
     r"line 2, column 1: invalid YAML: found character '\\t' that cannot start any token \(while scanning "
     r"for the next token\)"),
    ("bad-indent", b"phiid:\n  tau: 2\n n_chunks: 3\n",
     r"line 3, column 2: invalid YAML: expected <block end>, but found '<block mapping start>' \(while "
     r"parsing a block mapping started at line 1, column 1\)"),
    ("latin-1", b"# caf\xe9\nphiid:\n  tau: 2\n",
     r"line 1: byte 0xe9 at column 6 is not UTF-8; save the file as UTF-8"),
]


@pytest.mark.parametrize("name,content,message", YAML_BAD, ids=[c[0] for c in YAML_BAD])
def test_yaml_errors_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^config file {re.escape(str(path))} {message}$"):
        load_yaml_strict(path)


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH")
def test_snakefile_names_file_and_line_of_a_yaml_error_in_the_default_config(repo, tmp_path):
    """Snakemake's own message for a broken config file names neither; the Snakefile reads
    config/config.yaml strictly before its configfile: directive."""
    import subprocess

    from worktree import copy_worktree

    work = copy_worktree(repo, tmp_path / "wt")
    with open(work / "config/config.yaml", "a") as fh:
        fh.write("bogus: [1\n")
    n = len((work / "config/config.yaml").read_text().splitlines())
    proc = subprocess.run(["snakemake", "-n"], cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert (f"config file config/config.yaml line {n + 1}, column 1: invalid YAML: expected ',' or ']', but "
            f"got '<stream end>' (while parsing a flow sequence started at line {n}, column 8)"
            ) in proc.stdout + proc.stderr


def test_yaml_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfphiid:\n  tau: 2\n")
    assert load_yaml_strict(path) == {"phiid": {"tau": 2}}


def test_command_line_checker(repo, tmp_path, monkeypatch, capsys):
    """python -m synergy_core.config FILE...: OK, or the error with file and line; exit 1."""
    import os
    import subprocess
    import sys

    from synergy_core.config import main

    monkeypatch.chdir(repo)
    assert main(["config/demo.yaml", "config/config.yaml"]) == 0
    assert capsys.readouterr().out == "config/demo.yaml: OK\nconfig/config.yaml: OK\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation:\n  num_tokens: [1\n")
    floats = tmp_path / "floats.yaml"
    floats.write_text("phiid:\n  n_chunks: 3.0\n")
    # as a user runs it: a module of the package, from the repository root
    env = dict(os.environ, PYTHONPATH=str(repo / "workflow"))
    proc = subprocess.run([sys.executable, "-m", "synergy_core.config", "config/demo.yaml", str(bad), str(floats)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == "config/demo.yaml: OK\n"
    assert proc.stderr.splitlines() == [
        f"config file {bad} line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence started at line 2, column 15)",
        f"{floats}: config key phiid.n_chunks: 3.0 is not of type 'integer' (write 3, without a decimal point)"]


def test_revisions_expand_into_one_model_per_checkpoint(demo):
    cfg = copy.deepcopy(demo)
    cfg["ablation"]["models"] = None
    cfg["models"] = {"p": {"hf_id": "EleutherAI/pythia-160m", "revisions": ["step0", "step512"]},
                     "q": {"hf_id": "builtin:tiny-llama", "revision": "step3"}}
    out = validate_config(cfg)["models"]
    assert list(out) == ["p-step0", "p-step512", "q"]
    assert out["p-step512"]["revision"] == "step512" and out["p-step512"]["family"] == "p"
    assert "revisions" not in out["p-step0"] and out["q"]["family"] == "q"


def test_phyid_backend_is_checked_at_parse_time(demo, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "phyid" else real(name, *a))
    cfg = copy.deepcopy(demo)
    cfg["phiid"]["backend"] = "phyid"
    with pytest.raises(ConfigError,
                       match="config key phiid.backend: 'phyid' needs the reference library.*pip install git"):
        validate_config(cfg)


def test_n_chunks_is_checked_against_a_local_model_config(demo, tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "gpt_neox", "num_hidden_layers": 2, "num_attention_heads": 3}))
    cfg = copy.deepcopy(demo)
    cfg["ablation"]["models"] = None
    cfg["models"] = {"local": {"hf_id": "x/y", "local_path": str(tmp_path)}}
    cfg["phiid"]["n_chunks"] = 16
    with pytest.raises(ConfigError, match="phiid.n_chunks: 16 chunks for 15 head pairs of model local"):
        validate_config(cfg)


HEADER = b"prompt_id\tcategory\ttext\n"
PROMPTS_BAD = [
    ("tab-in-prompt", HEADER + b"a\tX\thello\nb\tX\tsay\thi\n",
     r"{file} line 3: 4 fields, expected 3 \(a tab inside a prompt\? prompts cannot contain tabs\)"),
    ("short-row", HEADER + b"a\tX\thello\nb\tX\n",
     r"{file} line 3: 2 fields, expected 3 \(fields are separated by tabs\)"),
    ("latin-1", HEADER + b"a\tX\thello\nb\tX\tcaf\xe9\n",
     r"{file} line 3: byte 0xe9 at column 8 is not UTF-8; save the table as UTF-8"),
    ("empty-id", HEADER + b"a\tX\thello\n\tX\tagain\n", r"{file} line 3: empty prompt_id"),
    ("empty-category", HEADER + b"a\t \thello\nb\tX\tagain\n", r"{file} line 2: empty category"),
    ("empty-text", HEADER + b"a\tX\t \nb\tX\tagain\n", r"{file} line 2: empty text"),
    ("duplicate-id", HEADER + b"a\tX\thello\nb\tX\tmid\na\tX\tagain\n",
     r"{file} line 4: duplicate prompt id 'a' \(first on line 2\)"),
    ("no-header", b"id\ttext\na\thello\n",
     r"{file} lacks columns \['category', 'prompt_id'\] \(line 1 must be the tab-separated header prompt_id, "
     r"category, text\)"),
    ("one-prompt", HEADER + b"a\tX\thello\n",
     r"the selection keeps 1 prompt, but the split-half reliability of the ranking \(rule model_stats\) "
     r"needs at least 2; {file} has only 1"),
]


@pytest.mark.parametrize("name,table,message", PROMPTS_BAD, ids=[c[0] for c in PROMPTS_BAD])
def test_bad_prompt_tables_are_refused_naming_file_and_line(demo, tmp_path, name, table, message):
    path = tmp_path / f"{name}.tsv"
    path.write_bytes(table)
    cfg = copy.deepcopy(demo)
    cfg["prompts"] = {"file": str(path)}
    file = re.escape(str(path))
    with pytest.raises(ConfigError, match=f"^config key prompts.file: {message.format(file=file)}$"):
        validate_config(cfg)


def test_selection_of_a_one_prompt_category_is_refused_naming_categories(demo, tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes(HEADER + b"a\tX\thello\nb\tY\tone\nc\tY\ttwo\n")
    cfg = copy.deepcopy(demo)
    cfg["prompts"] = {"file": str(path), "categories": ["X"]}
    with pytest.raises(ConfigError, match=f"^config key prompts.categories: the selection keeps 1 prompt, .*; "
                                          f"choose categories with at least 2 prompts in {re.escape(str(path))}$"):
        validate_config(cfg)
    cfg["prompts"] = {"file": str(path), "categories": ["Y"]}
    validate_config(cfg)


def test_prompt_table_with_bom_crlf_and_blank_lines_is_read(tmp_path):
    """A byte-order mark (spreadsheets write one), Windows line ends and blank lines are fine."""
    from synergy_core.prompts import Prompt, load_prompts

    path = tmp_path / "p.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n")
                     + b"a\tX\thello \"you\"\r\n\r\nb\tY\tcaf\xc3\xa9\r\n\n")
    assert load_prompts(path) == [Prompt("a", "X", 'hello "you"'), Prompt("b", "Y", "caf\u00e9")]


def test_shipped_prompt_table_is_read_unchanged(repo):
    """The paper's 60 prompts: every row has three fields, ids unique (the same as csv reads)."""
    import csv

    from synergy_core.prompts import load_prompts

    prompts = load_prompts(repo / "config/prompts.tsv")
    with open(repo / "config/prompts.tsv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(prompts) == 60
    assert [(p.prompt_id, p.category, p.text) for p in prompts] == [
        (r["prompt_id"], r["category"], r["text"]) for r in rows]


def test_config_readme_defaults_match_the_schema(repo):
    """Every default stated in config/README.md's key table is the schema's default."""
    import re

    import yaml

    from synergy_core.config import load_schema

    schema = load_schema()
    checked = 0
    for keys, defaults in re.findall(r"^\| (`[^|]+`) \| ([^|]+) \|", (repo / "config/README.md").read_text(),
                                     re.M):
        names = re.findall(r"`([^`]+)`", keys)
        values = re.findall(r"`([^`]*)`", defaults)
        if len(values) != len(names):   # "(required)", "the entry's name": prose, no default
            continue
        for name, value in zip(names, values):
            node = schema
            for part in name.split("."):
                node = node["additionalProperties"] if part == "<name>" else node["properties"][part]
            assert node["default"] == yaml.safe_load(value), name
            checked += 1
    assert checked >= 35


def test_family_of_a_revisions_entry_is_kept(demo):
    cfg = copy.deepcopy(demo)
    cfg["models"] = {"m": {"hf_id": "builtin:tiny-gpt-neox", "revisions": ["step0", "step1"],
                           "family": "neox"}}
    cfg["ablation"]["models"] = None
    models = validate_config(cfg)["models"]
    assert {n: s["family"] for n, s in models.items()} == {"m-step0": "neox", "m-step1": "neox"}


def test_n_chunks_checked_against_a_cached_hub_config(demo, tmp_path):
    """The head count of a hub model comes from its config.json in the local cache (the HF
    layout: refs/<revision> -> snapshots/<commit>/), read without huggingface_hub."""
    import json

    repo_dir = tmp_path / "hub" / "models--EleutherAI--pythia-tiny"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "step5").write_text("a" * 40)
    snap = repo_dir / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "num_attention_heads": 2}))
    cfg = copy.deepcopy(demo)
    cfg.update(hf_home=str(tmp_path), ablation={"models": None})
    cfg["models"] = {"m": {"hf_id": "EleutherAI/pythia-tiny", "revision": "step5"}}
    cfg["phiid"]["n_chunks"] = 7   # 4 heads -> 6 pairs
    with pytest.raises(ConfigError, match="phiid.n_chunks: 7 chunks for 6 head pairs of model m"):
        validate_config(copy.deepcopy(cfg))
    cfg["models"]["m"]["revision"] = "step6"   # not cached: cannot be checked, no error
    validate_config(copy.deepcopy(cfg))


def test_max_fraction_checked_against_a_cached_hub_config(demo, tmp_path):
    """A hub model's head count from its cached config.json: max_fraction x heads >= 1."""
    import json

    repo_dir = tmp_path / "hub" / "models--org--tiny"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("b" * 40)
    (repo_dir / "snapshots" / ("b" * 40)).mkdir(parents=True)
    (repo_dir / "snapshots" / ("b" * 40) / "config.json").write_text(
        json.dumps({"num_hidden_layers": 2, "num_attention_heads": 2}))
    cfg = copy.deepcopy(demo)
    cfg.update(hf_home=str(tmp_path), ablation={"models": None, "max_fraction": 0.2})
    cfg["models"] = {"m": {"hf_id": "org/tiny"}, "other": {"hf_id": "org/uncached"}}
    with pytest.raises(ConfigError, match=r"^config key ablation.max_fraction: 0.2 of the 4 heads of model m "
                                          r"is less than one head, .* use at least 0.25 \(1/4\)$"):
        validate_config(copy.deepcopy(cfg))
    cfg["ablation"]["max_fraction"] = 0.25
    validate_config(copy.deepcopy(cfg))
    cfg["ablation"] = {"models": ["other"], "max_fraction": 0.01}   # head count unknown: no check
    validate_config(copy.deepcopy(cfg))


def test_paired_comparisons_of_the_demo(demo):
    from synergy_core.config import paired_comparisons

    cfg = validate_config(copy.deepcopy(demo))
    families = {"tiny-neox": ["tiny-neox-step0", "tiny-neox-step30", "tiny-neox-step150"]}
    assert paired_comparisons(cfg, families) == [
        ("tiny-neox-step0", "tiny-neox-random", "random"),
        ("tiny-neox-step30", "tiny-neox-random", "random"),
        ("tiny-neox-step150", "tiny-neox-random", "random"),
        ("tiny-neox-step150", "tiny-neox-step0", "first"),
    ]


@pytest.mark.parametrize("name", ["figures", "logs", "summary.tsv"])
def test_reserved_names_refused(demo, name):
    cfg = copy.deepcopy(demo)
    cfg["models"] = {name: {"hf_id": "builtin:tiny-gpt-neox"}}
    cfg["ablation"]["models"] = None
    with pytest.raises(ConfigError, match=f"config key models.{re.escape(name)}: .* a name the workflow uses"):
        validate_config(cfg)


@pytest.mark.parametrize("value", [".", "/", "./", "../elsewhere"])
def test_results_dir_that_is_no_directory_of_its_own_is_refused(demo, value):
    with pytest.raises(ConfigError, match="config key results_dir: "):
        validate_config(dict(copy.deepcopy(demo), results_dir=value))


def test_results_dir_is_normalised(demo):
    assert validate_config(dict(copy.deepcopy(demo), results_dir="./out//run1/"))["results_dir"] == "out/run1"


def test_compute_settings_of_extraction_and_ablation(demo):
    """generation.dtype overrides every model's dtype in both stages, ablation.dtype the
    ablation's alone; tf32 and gpus are shared; the defaults change nothing."""
    from synergy_core.compute import compute_settings, gpus_needed, stage_dtype

    cfg = validate_config(copy.deepcopy(demo))
    model = next(iter(cfg["models"]))
    assert cfg["generation"]["dtype"] is None and cfg["ablation"]["dtype"] is None
    assert compute_settings(cfg, model, "extraction") == {"dtype": "float32", "tf32": False, "gpus": 1}
    assert compute_settings(cfg, model, "ablation") == {"dtype": "float32", "tf32": False, "gpus": 1}
    cfg["models"][model]["dtype"] = "float16"
    assert stage_dtype(cfg, model, "extraction") == stage_dtype(cfg, model, "ablation") == "float16"
    cfg["generation"]["dtype"] = "float32"
    assert stage_dtype(cfg, model, "extraction") == stage_dtype(cfg, model, "ablation") == "float32"
    cfg["ablation"]["dtype"] = "bfloat16"
    assert (stage_dtype(cfg, model, "extraction"), stage_dtype(cfg, model, "ablation")) == ("float32", "bfloat16")
    with pytest.raises(ValueError, match="unknown stage 'perturbation'"):
        stage_dtype(cfg, model, "perturbation")
    gpu = copy.deepcopy(demo)
    gpu["generation"].update(device="auto", gpus=4, tf32=True)
    gpu = validate_config(gpu)
    assert gpus_needed(gpu, model) == 4
    assert compute_settings(gpu, model, "ablation") == {"dtype": "float32", "tf32": True, "gpus": 4}

"""Bad configuration fails at validation time with a message naming the offending key."""
import copy
import re

import pytest
import yaml

from synergy_core.config import ConfigError, load_yaml_strict, validate_config
from synergy_core.phiid.all_pairs import DEFAULT_MAX_BLOCK_PAIRS


@pytest.fixture
def demo(repo, monkeypatch):
    monkeypatch.chdir(repo)
    with open(repo / "config/demo.yaml") as fh:
        return yaml.safe_load(fh)


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
]


@pytest.mark.parametrize("change,message", BAD, ids=[m[:40] for _, m in BAD])
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


def test_duplicate_model_names_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("models:\n  a:\n    hf_id: builtin:tiny-gpt-neox\n  a:\n    hf_id: builtin:tiny-llama\n")
    with pytest.raises(ConfigError, match="config key 'a' appears twice .*line 4"):
        load_yaml_strict(path)


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


def test_bad_prompt_tables_are_refused(demo, tmp_path):
    cases = {
        "prompt_id\tcategory\ttext\na\tX\thello\na\tX\tagain\n": "duplicate prompt ids \\['a'\\]",
        "prompt_id\tcategory\ttext\na\tX\t \n": "empty prompt text for \\['a'\\]",
        "id\ttext\na\thello\n": "lacks columns",
    }
    for i, (table, message) in enumerate(cases.items()):
        path = tmp_path / f"p{i}.tsv"
        path.write_text(table)
        cfg = copy.deepcopy(demo)
        cfg["prompts"] = {"file": str(path)}
        with pytest.raises(ConfigError, match=f"config key prompts.file: .*{message}"):
            validate_config(cfg)


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

"""Sharded ablation (ablation.n_parts > 1): on the demo's ablated models, the parts merged give the
same kl_long.tsv, summary.tsv and auc.tsv as the single job, byte for byte (records included);
the merge refuses missing, repeated, foreign and stale parts; the units of work and the
configuration's bound on the part count."""
import copy
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from synergy_core.ablation_plan import mask_units, part_rows, units_of_part
from synergy_core.config import ConfigError, max_ablation_units, validate_config
from synergy_core.io import RESULTS_ENV, CorruptOutputError, load_arrays, save_arrays, write_table
from synergy_core.stages.ablate import read_plan, run_ablation
from synergy_core.stages.ablate_parts import merge_ablation_parts, run_ablation_part

#: The ablation settings a rule passes (workflow/rules/common.smk, ABLATION).
KEYS = ("n_random_orders", "seed", "max_fraction", "step", "random_grid", "cross_validate", "prompt_batch",
        "mask_group")
OUTPUTS = ("kl_long.tsv", "summary.tsv", "auc.tsv")


def _demo_raw(repo):
    cfg = yaml.safe_load((repo / "config/demo.yaml").read_text())
    cfg["prompts"]["file"] = str(repo / cfg["prompts"]["file"])
    cfg["perturbation"]["models"] = cfg["finetune"]["models"] = []
    return cfg


@pytest.fixture(scope="module")
def demo_config(repo):
    return validate_config(_demo_raw(repo))


@pytest.fixture(scope="module")
def demo(demo_config, tmp_path_factory):
    """The demo's ablated models: activations as the demo extracts them (12 prompts, 40 tokens) and
    a seeded ranking (with half rankings), under a results directory of their own."""
    from synergy_core.stages.extract import run_extraction

    root = tmp_path_factory.mktemp("results")
    mp = pytest.MonkeyPatch()
    mp.setenv(RESULTS_ENV, str(root))
    sel = {k: demo_config["prompts"][k] for k in ("file", "categories", "per_category", "first_k", "chat_template")}
    models = {}
    for i, name in enumerate(demo_config["ablation"]["models"]):
        spec = dict(demo_config["models"][name], name=name)
        acts = root / name / "activations.npz"
        run_extraction(sel["file"], acts, spec, sel, demo_config["generation"])
        labels = load_arrays(acts)[0]["head_labels"]
        rng = np.random.default_rng(i)
        heads = root / name / "ranking" / "heads.tsv"
        write_table(heads, pd.DataFrame({"head_label": labels, "syn_red": rng.standard_normal(len(labels)),
                                         "syn_red_half0": rng.standard_normal(len(labels)),
                                         "syn_red_half1": rng.standard_normal(len(labels))}), [acts])
        models[name] = (spec, acts, heads)
    yield root, models, {k: demo_config["ablation"][k] for k in KEYS}
    mp.undo()


def _outputs(directory):
    return [directory / name for name in OUTPUTS]


def _files(directory):
    """Every output and its record, as bytes."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def _parts(spec, acts, heads, cfg, n_parts, directory, code="c0"):
    paths = [directory / f"part_{p}.npz" for p in range(n_parts)]
    for p, path in enumerate(paths):
        run_ablation_part(acts, heads, path, spec, cfg, p, n_parts, "cpu", code)
    return paths


@pytest.mark.parametrize("model_index,changes", [(0, {}), (1, {}), (0, dict(cross_validate=True, n_random_orders=2))],
                         ids=["tiny-neox-step150", "tiny-llama", "tiny-neox-step150-cross-validated"])
def test_three_parts_merge_to_the_single_jobs_bytes(demo, model_index, changes):
    """The demo's settings (97 masks of tiny-neox, 13 groups of 8; tiny-llama's 12 heads), and the
    cross-validated plan (two prompt groups, each with its reference pass)."""
    root, models, cfg = demo
    name = list(models)[model_index]
    spec, acts, heads = models[name]
    cfg = dict(cfg, **changes)
    out = root / name / "ablation"
    if out.exists():
        shutil.rmtree(out)
    run_ablation(acts, heads, *_outputs(out), spec, cfg, "cpu")
    single = _files(out)
    shutil.rmtree(out)
    parts = _parts(spec, acts, heads, cfg, 3, root / name / "ablation_parts" / "n3")
    merge_ablation_parts(parts, acts, heads, *_outputs(out), spec, cfg, part_code="c0")
    assert _files(out) == single   # the tables and their records: nothing downstream can tell
    # every part did a share of the work: 3 contiguous ranges of the groups of masks
    _, _, plan = read_plan(acts, heads, cfg)
    units = mask_units([len(g["masks"]) for g in plan], cfg["mask_group"])
    covered = [sum(len(load_arrays(p)[0][f"mask_index_{i}"]) for i in range(len(plan))) for p in parts]
    assert sum(covered) == sum(len(g["masks"]) for g in plan) and min(covered) > 0
    assert len(units) >= 3 * len(plan)


@pytest.fixture(scope="module")
def small(demo):
    """tiny-neox-step150 with few masks (fast): the single job's tables and a set of 3 parts."""
    root, models, cfg = demo
    spec, acts, heads = models["tiny-neox-step150"]
    cfg = dict(cfg, n_random_orders=2, mask_group=4, prompt_batch=6)
    work = root / "tiny-neox-step150"
    run_ablation(acts, heads, *_outputs(work / "single"), spec, cfg, "cpu")
    parts = _parts(spec, acts, heads, cfg, 3, work / "small_parts")
    return spec, acts, heads, cfg, parts, work


def test_more_parts_than_groups_of_masks_leaves_the_extra_parts_empty(small):
    spec, acts, heads, cfg, _, work = small
    _, _, plan = read_plan(acts, heads, cfg)
    n_units = len(mask_units([len(g["masks"]) for g in plan], cfg["mask_group"]))
    parts = _parts(spec, acts, heads, cfg, n_units + 2, work / "many_parts")
    sizes = [len(load_arrays(p)[0]["mask_index_0"]) for p in parts]
    assert sizes.count(0) == 2 and sum(sizes) == len(plan[0]["masks"])
    merge_ablation_parts(parts, acts, heads, *_outputs(work / "many"), spec, cfg, part_code="c0")
    for a, b in zip(_outputs(work / "single"), _outputs(work / "many")):
        assert a.read_bytes() == b.read_bytes()


def _merge(small, parts, tag, **kw):
    spec, acts, heads, cfg, _, work = small
    args = dict(spec=spec, cfg=cfg, part_code="c0") | kw
    merge_ablation_parts(parts, acts, heads, *_outputs(work / tag), **args)


def test_merge_refuses_a_missing_part(small):
    parts = small[4]
    with pytest.raises(CorruptOutputError, match="3 parts.*than this run's.*2 parts"):
        _merge(small, parts[:2], "missing")


def test_merge_refuses_a_repeated_part(small):
    parts = small[4]
    with pytest.raises(CorruptOutputError, match="part 0 of 3 is repeated"):
        _merge(small, [parts[0], parts[0], parts[2]], "repeated")


def test_merge_refuses_a_copy_of_another_part(small):
    parts = small[4]
    saved = parts[1].read_bytes()
    try:
        shutil.copy(parts[0], parts[1])      # part 0 where part 1 should be
        with pytest.raises(CorruptOutputError, match="part_1.npz: this file was written as .*part_0.npz"):
            _merge(small, parts, "copied")
    finally:
        parts[1].write_bytes(saved)


def test_merge_refuses_parts_of_other_settings_weights_code_or_model(small, demo):
    spec, acts, heads, cfg, parts, work = small
    other = work / "other"
    # other settings
    stray = other / "settings" / "part_1.npz"
    run_ablation_part(acts, heads, stray, spec, dict(cfg, n_random_orders=3), 1, 3, "cpu", "c0")
    with pytest.raises(CorruptOutputError, match="other settings"):
        _merge(small, [parts[0], stray, parts[2]], "settings")
    # other compute settings (dtype) than the merge's
    with pytest.raises(CorruptOutputError, match="other settings"):
        _merge(small, parts, "compute", compute={"dtype": "bfloat16", "tf32": False, "gpus": 1})
    # other weights (the same model's initialisation, same activations and ranking)
    stray = other / "weights" / "part_1.npz"
    run_ablation_part(acts, heads, stray, dict(spec, revision="step0"), cfg, 1, 3, "cpu", "c0")
    with pytest.raises(CorruptOutputError, match="other weights"):
        _merge(small, [parts[0], stray, parts[2]], "weights")
    # other code (e.g. a part kept by --touch after a code change)
    with pytest.raises(CorruptOutputError, match="other code than this checkout's ablate_part"):
        _merge(small, parts, "code", part_code="c1")
    # another model's part, placed where this model's part 1 belongs
    root, models, _ = demo
    llama_spec, llama_acts, llama_heads = models["tiny-llama"]
    stray = work / "small_parts_llama" / "part_1.npz"
    run_ablation_part(llama_acts, llama_heads, stray, llama_spec, cfg, 1, 3, "cpu", "c0")
    with pytest.raises(CorruptOutputError, match="not made from .*tiny-neox-step150/activations.npz"):
        _merge(small, [parts[0], stray, parts[2]], "model")


def test_merge_refuses_parts_of_an_older_ranking(small):
    spec, acts, heads, cfg, parts, work = small
    table = pd.read_csv(heads, sep="\t")
    saved = heads.read_bytes(), heads.with_name(heads.name + ".meta.json").read_bytes()
    try:
        write_table(heads, table.assign(syn_red=table.syn_red[::-1].to_numpy()), [acts])
        with pytest.raises(CorruptOutputError, match="made from a different .*heads.tsv"):
            _merge(small, parts, "reranked")
    finally:
        heads.write_bytes(saved[0])
        heads.with_name(heads.name + ".meta.json").write_bytes(saved[1])


def test_merge_refuses_a_part_covering_other_masks(small):
    """A part whose recorded units are not its index's (a hand-edited or mislabelled file)."""
    spec, acts, heads, cfg, parts, work = small
    arrays, prov = load_arrays(parts[1])
    prov.pop("record")
    prov["units"] = prov["units"][:-1]
    forged = work / "forged" / "part_1.npz"
    save_arrays(forged, prov, made_from=[acts, heads], **arrays)
    with pytest.raises(CorruptOutputError, match="covers other masks than part 1 of 3"):
        _merge(small, [parts[0], forged, parts[2]], "forged")


def test_merge_imports_no_torch(repo):
    """The merge is a CPU job in the analysis environment."""
    code = ("import sys; import synergy_core.stages.ablate_parts; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=repo / "workflow", check=True)


# ----------------------------------------------------------------------------- units of work
@pytest.mark.parametrize("n_units,n_parts", [(13, 3), (26, 4), (5, 5), (3, 7), (1, 1)])
def test_parts_are_contiguous_equal_ranges_covering_every_unit_once(n_units, n_parts):
    units = mask_units([8 * n_units - 3] if n_units > 1 else [2], 8)
    assert len(units) == n_units
    shares = [units_of_part(units, p, n_parts) for p in range(n_parts)]
    assert [u for share in shares for u in share] == units
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1


def test_part_rows_put_the_reference_group_first():
    evaluated, covered = part_rows(21, 8, [1, 2])
    np.testing.assert_array_equal(covered, np.arange(8, 21))
    np.testing.assert_array_equal(evaluated, np.r_[np.arange(8), np.arange(8, 21)])
    evaluated, covered = part_rows(21, 8, [0])
    np.testing.assert_array_equal(evaluated, np.arange(8))
    np.testing.assert_array_equal(covered, np.arange(8))
    assert [len(a) for a in part_rows(21, 8, [])] == [0, 0]
    with pytest.raises(ValueError, match="not contiguous"):
        part_rows(40, 8, [1, 3])


@pytest.mark.parametrize("seed", range(20))
def test_config_bound_on_units_holds_for_every_plan(seed):
    from synergy_core.ablation_plan import masks_for_orders
    from synergy_core.stages.ablate import plan_ablation

    rng = np.random.default_rng(seed)
    h = int(rng.integers(4, 60))
    cfg = dict(max_fraction=float(rng.uniform(0.1, 1.0)), step=int(rng.integers(1, 5)),
               random_grid=[None, 2, 3, 11][seed % 4], n_random_orders=int(rng.integers(0, 12)),
               seed=seed, cross_validate=bool(seed % 3 == 0), mask_group=int(rng.integers(1, 10)))
    if cfg["max_fraction"] * h < 1:
        cfg["max_fraction"] = 1.0
    table = pd.DataFrame({c: rng.standard_normal(h) for c in ("syn_red", "syn_red_half0", "syn_red_half1")})
    plan = plan_ablation(table, np.repeat(["a", "b"], 3), h, cfg)
    n_masks = [len(masks_for_orders(g["orders"], g["counts"], 1, h)[0]) for g in plan]
    assert len(mask_units(n_masks, cfg["mask_group"])) <= max_ablation_units(h, cfg)


def test_demo_bound_is_exact_and_n_parts_is_checked_naming_the_key(repo, demo_config, demo):
    # tiny-neox (24 heads): 97 masks (the comment in config/demo.yaml) in 13 groups of 8, as
    # planned from its ranking; tiny-llama (12 heads): at most 87 masks in 11 groups, 76 in 10 as
    # planned (random orders of 12 heads often share their first 2)
    _, models, cfg = demo
    for name, heads_total, bound, n_masks in (("tiny-neox-step150", 24, 13, 97), ("tiny-llama", 12, 11, 76)):
        assert max_ablation_units(heads_total, demo_config["ablation"]) == bound
        _, acts, heads = models[name]
        _, _, plan = read_plan(acts, heads, cfg)
        assert [len(g["masks"]) for g in plan] == [n_masks]
    assert demo_config["ablation"]["n_parts"] == 1
    raw = _demo_raw(repo)
    for n, ok in ((11, True), (12, False)):
        trial = copy.deepcopy(raw)
        trial["ablation"]["n_parts"] = n
        if ok:
            validate_config(trial)
        else:
            message = "config key ablation.n_parts: 12 jobs for at most 11 groups .* of model tiny-llama"
            with pytest.raises(ConfigError, match=message):
                validate_config(trial)
    for bad, message in ((0, "is less than the minimum of 1"), (2.0, "is not of type 'integer'")):
        trial = copy.deepcopy(raw)
        trial["ablation"]["n_parts"] = bad
        with pytest.raises(ConfigError, match=f"config key ablation.n_parts: {bad} {message}"):
            validate_config(trial)

"""The fine-tuning stage (Fig 5): which elements train, the gradient masking and its check, the
plan, a GRPO learning signal, checkpoints that resume bitwise, the stage end to end with the
merge's refusals, and the task readers it uses. Runs offline on the built-in tiny models."""
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from synergy_core.builtin import arithmetic_problems
from synergy_core.finetune import (
    load_values,
    masks_digest,
    restrict_training,
    snapshot,
    trainable_masks,
    trainable_values,
    verify_frozen,
)
from synergy_core.finetune_plan import (
    eval_steps,
    plan_eval_units,
    plan_runs,
    region_heads,
    regions,
    run_label,
    run_seed,
    share,
    unit_label,
)
from synergy_core.hooks import model_shape
from synergy_core.io import CorruptOutputError, load_arrays, read_json, read_table, write_json, write_table
from synergy_core.models import load_model, load_tokenizer

# trl 1.16's GRPOConfig and SFTConfig default gradient_checkpointing=True and its trainers call
# model.gradient_checkpointing_enable/disable and is_gradient_checkpointing, all renamed
# activation_checkpointing* by transformers 5.24: trl's deprecations, not this project's.
pytestmark = [pytest.mark.filterwarnings(f"ignore:`{name}` is deprecated:FutureWarning")
              for name in ("gradient_checkpointing", "is_gradient_checkpointing",
                           "gradient_checkpointing_enable", "gradient_checkpointing_disable")]

D = 16                                  # head width of the built-in tiny models (tiny-qwen3: 24)
ARITH = {"hf_id": "builtin:tiny-llama-arith", "revision": "step150", "seed": 0, "init": "pretrained",
         "dtype": "float32"}


def _untrained(hf_id):
    return load_model({"hf_id": hf_id, "seed": 0, "init": "pretrained", "dtype": "float32"})


# --- which elements train -------------------------------------------------------------------

def _expected_masks(model, heads, kv=False):
    """The masks written out by hand from each architecture's weight layout."""
    params = dict(model.named_parameters())
    masks = {}
    d = model_shape(model).head_dim

    def mark(name, index):
        masks.setdefault(name, torch.zeros_like(params[name], dtype=torch.bool))[index] = True

    kind = model.config.model_type
    n = model.config.num_attention_heads if kind != "gpt2" else model.config.n_head
    for layer, h in heads:
        rows = slice(h * d, (h + 1) * d)
        if kind in ("llama", "qwen3", "gemma3_text"):                 # 4 query heads, 2 kv heads
            p = f"model.layers.{layer}.self_attn"
            mark(f"{p}.q_proj.weight", (rows, slice(None)))
            mark(f"{p}.o_proj.weight", (slice(None), rows))
            group = {2 * (h // 2), 2 * (h // 2) + 1}
            if kv and group <= {hh for ll, hh in heads if ll == layer}:
                kv_rows = slice((h // 2) * d, (h // 2 + 1) * d)
                mark(f"{p}.k_proj.weight", (kv_rows, slice(None)))
                mark(f"{p}.v_proj.weight", (kv_rows, slice(None)))
        elif kind == "gpt_neox":                        # fused, per head [q | k | v]
            p = f"gpt_neox.layers.{layer}.attention"
            q = slice(3 * h * D, 3 * h * D + D)
            mark(f"{p}.query_key_value.weight", (q, slice(None)))
            mark(f"{p}.query_key_value.bias", (q,))
            mark(f"{p}.dense.weight", (slice(None), rows))
            if kv:
                kv_rows = slice(3 * h * D + D, 3 * h * D + 3 * D)
                mark(f"{p}.query_key_value.weight", (kv_rows, slice(None)))
                mark(f"{p}.query_key_value.bias", (kv_rows,))
        else:                                           # GPT-2 Conv1D: [in, out], out = [q | k | v]
            p = f"transformer.h.{layer}.attn"
            mark(f"{p}.c_attn.weight", (slice(None), rows))
            mark(f"{p}.c_attn.bias", (rows,))
            mark(f"{p}.c_proj.weight", (rows, slice(None)))
            if kv:
                for off in (n * D, 2 * n * D):
                    cols = slice(off + h * D, off + (h + 1) * D)
                    mark(f"{p}.c_attn.weight", (slice(None), cols))
                    mark(f"{p}.c_attn.bias", (cols,))
    return masks


def _assert_same_masks(got, expected):
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        assert torch.equal(got[name], expected[name]), name


@pytest.mark.parametrize("hf_id,bias,d", [("builtin:tiny-llama", 0, D), ("builtin:tiny-gpt-neox", 1, D),
                                          ("builtin:tiny-gpt2", 1, D), ("builtin:tiny-qwen3", 0, 24),
                                          ("builtin:tiny-gemma3", 0, D)])
def test_masks_cover_exactly_the_query_rows_and_output_columns_of_the_chosen_heads(hf_id, bias, d):
    model = _untrained(hf_id)
    shape = model_shape(model)
    assert shape.head_dim == d and shape.n_heads == 4
    hidden = 64
    heads = [(0, 1), (0, 2), (shape.n_layers - 1, 3)]
    masks = trainable_masks(model, shape, heads)
    _assert_same_masks(masks, _expected_masks(model, heads))
    # per head: d query rows (hidden inputs each, + a bias entry) and d output columns
    assert sum(int(m.sum()) for m in masks.values()) == len(heads) * d * (hidden + hidden + bias)
    # no shared bias (GPT-NeoX's dense bias, GPT-2's c_proj bias), MLP, norm or embedding trains
    assert all(("attn" in n or "attention" in n) and not n.endswith(("dense.bias", "c_proj.bias"))
               for n in masks)
    # regions of equal size train equal numbers of elements, whichever heads they hold
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(4):
        flat = rng.choice(shape.n_total_heads, shape.n_total_heads // 2, replace=False)
        region = [(int(i) // 4, int(i) % 4) for i in flat]
        counts.add(sum(int(m.sum()) for m in trainable_masks(model, shape, region).values()))
    assert counts == {shape.n_total_heads // 2 * d * (2 * hidden + bias)}


@pytest.mark.parametrize("hf_id", ["builtin:tiny-llama", "builtin:tiny-gpt-neox", "builtin:tiny-gpt2",
                                   "builtin:tiny-qwen3"])
def test_kv_heads_group_adds_key_and_value_rows_of_whole_groups_only(hf_id):
    model = _untrained(hf_id)
    shape = model_shape(model)
    heads = [(0, 0), (0, 1), (1, 2)]        # llama: layer 0's kv head 0 is whole, layer 1's kv head 1 is not
    masks = trainable_masks(model, shape, heads, kv_heads="group")
    _assert_same_masks(masks, _expected_masks(model, heads, kv=True))
    none = sum(int(m.sum()) for m in trainable_masks(model, shape, heads).values())
    extra = sum(int(m.sum()) for m in masks.values()) - none
    if hf_id in ("builtin:tiny-llama", "builtin:tiny-qwen3"):      # one kv head: k and v rows, 64 inputs
        assert extra == 2 * shape.head_dim * 64
        assert not any("layers.1.self_attn.k_proj" in n or "layers.1.self_attn.v_proj" in n for n in masks)
    else:                                       # one kv head per query head, with its bias entries
        assert extra == len(heads) * 2 * D * (64 + 1)


def test_masks_digest_and_saved_values_round_trip():
    model = _untrained("builtin:tiny-llama")
    shape = model_shape(model)
    a = trainable_masks(model, shape, [(0, 0), (2, 3)])
    b = trainable_masks(model, shape, [(0, 0), (2, 2)])
    assert masks_digest(a) == masks_digest(trainable_masks(model, shape, [(2, 3), (0, 0)]))
    assert masks_digest(a) != masks_digest(b)
    values = trainable_values(model, a)
    other = _untrained("builtin:tiny-llama")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    before = snapshot(other)
    load_values(other, a, values)
    for name, p in other.named_parameters():
        if name in a:
            assert torch.equal(p.detach()[a[name]], dict(model.named_parameters())[name].detach()[a[name]])
            assert torch.equal(p.detach()[~a[name]], before[name][~a[name]])
        else:
            assert torch.equal(p.detach(), before[name])
    with pytest.raises(ValueError, match="checkpoint holds"):
        load_values(other, b, {"x": values[next(iter(values))]})


# --- gradient masking and the frozen-weight check -------------------------------------------

def test_masked_training_moves_only_trainable_elements_and_the_check_catches_a_moved_frozen_one():
    model = _untrained("builtin:tiny-llama")
    shape = model_shape(model)
    masks = trainable_masks(model, shape, [(0, 1), (1, 0), (1, 1), (2, 3)], kv_heads="group")
    before = snapshot(model)
    handles = restrict_training(model, masks)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(masks)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(3):
        ids = torch.randint(0, 250, (4, 12), generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            if name in masks:
                assert not p.grad[~masks[name]].any(), name      # the hook zeroed the rest
                assert p.grad[masks[name]].abs().sum() > 0, name
            else:
                assert p.grad is None, name
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
    for h in handles:
        h.remove()
    check = verify_frozen(model, before, masks)
    n_total = sum(p.numel() for p in model.parameters())
    assert check["n_trainable"] == sum(int(m.sum()) for m in masks.values())
    assert check["n_frozen"] == n_total - check["n_trainable"]
    assert check["n_trainable_changed"] > 0.99 * check["n_trainable"]
    # a frozen element of a parameter that partly trains, then one of a wholly frozen parameter
    q = dict(model.named_parameters())["model.layers.0.self_attn.q_proj.weight"]
    with torch.no_grad():
        q[0, 0] += 1e-3                                 # head 0's row: not in the region
    with pytest.raises(RuntimeError, match=r"model\.layers\.0\.self_attn\.q_proj\.weight: 1 frozen elements"):
        verify_frozen(model, before, masks)
    with torch.no_grad():
        q[0, 0] = before["model.layers.0.self_attn.q_proj.weight"][0, 0]
        model.model.norm.weight[3] += 1.0
    with pytest.raises(RuntimeError, match=r"model\.norm\.weight: 1 frozen elements changed"):
        verify_frozen(model, before, masks)


# --- the plan -------------------------------------------------------------------------------

def test_regions_have_equal_sizes_and_the_right_heads():
    syn_red = np.array([0.9, -0.8, 0.1, np.nan, 0.5, -0.3, 0.0, 0.7, -0.9, 0.2, 0.3, -0.1])
    r = regions(syn_red, 0.25, seed=0, run_seed=0)
    assert list(r["synergistic"]) == [0, 4, 7] and list(r["redundant"]) == [1, 5, 8]
    assert {len(v) for v in r.values()} == {3}
    assert not set(r["synergistic"]) & set(r["redundant"])
    draws = [regions(syn_red, 0.25, 0, s)["random"] for s in range(8)]
    assert all(3 not in d and len(set(d)) == 3 for d in draws)        # the NaN head is in no region
    assert len({tuple(d) for d in draws}) > 1                         # a new draw per run seed
    assert np.array_equal(regions(syn_red, 0.25, 0, 5)["random"], draws[5])     # reproducible
    for s in range(3):                                                # the ranked regions do not move
        assert np.array_equal(regions(syn_red, 0.25, 0, s)["synergistic"], r["synergistic"])
    # the 50% regions of 12 heads with one unranked: 6 and 6 of 11 ranked is too many
    with pytest.raises(ValueError, match="need 1 <= k and 2k <= ranked"):
        regions(syn_red, 0.5, 0, 0)
    full = np.arange(12.0)
    half = regions(full, 0.5, 0, 0)
    assert list(half["synergistic"]) == [6, 7, 8, 9, 10, 11] and list(half["redundant"]) == [0, 1, 2, 3, 4, 5]
    # ties are broken by a seeded order, not by head index; a given seed always breaks them alike
    ties = np.zeros(12)
    assert np.array_equal(regions(ties, 0.5, 3, 0)["synergistic"], regions(ties, 0.5, 3, 1)["synergistic"])
    tied_top = {tuple(regions(ties, 0.5, s, 0)["synergistic"]) for s in range(6)}
    assert len(tied_top) > 1


def test_eval_steps_runs_units_and_shares():
    assert eval_steps(10, 4, 4) == [4, 8, 10]
    assert eval_steps(8, 4, 4) == [4, 8]
    assert eval_steps(8, 0, 4) == [8]
    assert eval_steps(5000, 2500, 500) == [2500, 3000, 3500, 4000, 4500, 5000]
    runs = plan_runs(["grpo", "sft"], 3)
    assert len(runs) == 2 * 3 * 3 and len({run_label(r) for r in runs}) == len(runs)
    units = plan_eval_units(runs, eval_steps(10, 4, 4))
    assert len(units) == 1 + len(runs) * 3 and unit_label(units[0]) == "base"
    assert len({unit_label(u) for u in units}) == len(units)
    for items, n_parts in ((units, 4), (runs, 5), (units, 1), (runs, 30)):
        parts = [share(items, p, n_parts) for p in range(n_parts)]
        flat = [json.dumps(x, sort_keys=True) for part in parts for x in part]
        assert sorted(flat) == sorted(json.dumps(x, sort_keys=True) for x in items)   # each once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # runs of every region with one seed share the training seed; other seeds differ
    seeds = {r["seed"]: run_seed(0, r) for r in runs}
    assert all(run_seed(0, r) == seeds[r["seed"]] for r in runs) and len(set(seeds.values())) == 3


# --- training with trl ------------------------------------------------------------------------

def _cfg(**over):
    cfg = dict(methods=["grpo", "sft"], region_fraction=0.5, kv_heads="none", n_seeds=1, seed=0,
               train_task="builtin:arithmetic", sft_data="builtin:arithmetic", eval_task="builtin:arithmetic",
               n_train_problems=None, n_sft_examples=None, n_eval_problems=None, prompt_template="{problem}",
               chat_template=False, max_steps=4, eval_from=2, eval_every=2, precision="fp32",
               grpo=dict(learning_rate=1e-3, batch_size=16, gradient_accumulation_steps=1,
                         lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0, num_generations=8,
                         max_completion_length=10, temperature=0.7, beta=0.0, loss_type="dapo"),
               sft=dict(learning_rate=3e-3, batch_size=16, gradient_accumulation_steps=1,
                        lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0, max_length=64),
               eval_max_new_tokens=10, eval_batch_size=36)
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def arith():
    """tiny-llama-arith after 150 steps (answers 22 of the 36 problems greedily): its weights and
    tokenizer; each test trains a fresh copy."""
    model = load_model(ARITH)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, load_tokenizer(ARITH)


def _fresh(state):
    model = load_model(dict(ARITH, revision=None))      # the architecture, untrained (fast)
    model.load_state_dict(state)
    return model


def _rows():
    from synergy_core.finetune_train import grpo_rows, sft_rows
    from synergy_core.tasks import load_sft

    return dict(grpo=grpo_rows(arithmetic_problems(), "{problem}", False),
                sft=sft_rows(load_sft("builtin:arithmetic", None), "{problem}", False, "<|endoftext|>"))


HALF = [(0, 0), (0, 2), (1, 1), (1, 3), (2, 0), (2, 1)]        # 6 of the 12 heads


def _train(state, tokenizer, method, cfg, scratch, steps, checkpoint_every=1000, seed=0):
    from synergy_core.finetune_train import train_run

    model = _fresh(state)
    masks = trainable_masks(model, model_shape(model), HALF)
    base = snapshot(model)
    handles = restrict_training(model, masks)
    try:
        result = train_run(model, tokenizer, dict(method=method, region="random", seed=seed), masks, _rows(),
                           cfg, scratch, steps, "cpu", checkpoint_every, dict(test=True))
    finally:
        for h in handles:
            h.remove()
    return model, result, verify_frozen(model, base, masks)


def test_rows_and_reward():
    from synergy_core.finetune_train import correctness_reward

    rows = _rows()
    assert rows["grpo"][0] == dict(prompt="0+0=", answer="0")
    assert rows["sft"][7] == dict(prompt="1+1=", completion="\\boxed{2}<|endoftext|>")
    assert correctness_reward(["\\boxed{7}", "\\boxed{8}", "7", [{"role": "assistant", "content": "\\boxed{7}"}]],
                              answer=["7", "7", "7", "7"]) == [1.0, 0.0, 0.0, 1.0]


def test_grpo_on_half_the_heads_raises_the_reward(arith, tmp_path):
    """40 GRPO steps of 16 prompts x 8 completions at temperature 0.7 and learning rate 3e-3, only
    the 6 heads of HALF learning. Measured, mean reward of the last quarter (10 logged steps) minus
    the first quarter's, stage seeds 0-7: +0.094 +0.101 +0.086 +0.062 +0.066 +0.067 +0.084 +0.094
    (last quarter 0.445-0.513); learning rate 0 (no learning), seeds 0-3: -0.004 +0.008 -0.028
    +0.017 (last quarter 0.32-0.37). Learning rate 1e-3: +0.068 to +0.085 (seeds 0-2). Batches of 64
    gave +0.030 to +0.124 over 60 steps (seeds 0-5): less reliable for the same time (~6 s)."""
    state, tokenizer = arith
    grpo = dict(_cfg()["grpo"], batch_size=128, learning_rate=3e-3)
    cfg = _cfg(max_steps=40, grpo=grpo)
    _, result, check = _train(state, tokenizer, "grpo", cfg, tmp_path / "run", [40])
    rewards = np.array([h["reward"] for h in result["history"] if "reward" in h])
    assert len(rewards) == 40
    first, last = rewards[:10].mean(), rewards[-10:].mean()
    assert last - first > 0.04, (first, last)
    assert last > 0.42, last
    assert check["n_trainable_changed"] > 0.9 * check["n_trainable"]
    assert check["n_trainable"] == len(HALF) * D * 128
    assert (tmp_path / "run" / "eval" / "step40.npz").is_file()


class _Killed(Exception):
    pass


def _kill_at(monkeypatch, step, nth=1):
    """Make the ``nth`` trainer from now raise after ``step`` (as a job killed at its wall time)."""
    from synergy_core import finetune_train

    original = finetune_train._save_callback
    made = []

    def patched(*args):
        callback = original(*args)
        on_step_end = callback.on_step_end
        made.append(callback)
        kill = len(made) == nth

        def killing(args, state, control, **kwargs):
            result = on_step_end(args, state, control, **kwargs)
            if kill and state.global_step == step:
                raise _Killed(step)
            return result

        callback.on_step_end = killing
        return callback

    monkeypatch.setattr(finetune_train, "_save_callback", patched)


@pytest.mark.parametrize("method", ["grpo", "sft"])
def test_a_killed_run_resumes_to_bitwise_the_uninterrupted_one(arith, tmp_path, monkeypatch, method):
    state, tokenizer = arith
    cfg = _cfg(max_steps=8)
    whole, result, _ = _train(state, tokenizer, method, cfg, tmp_path / "whole", [4, 8], checkpoint_every=4)
    assert result["resumed_from"] is None
    with monkeypatch.context() as m:
        _kill_at(m, 6)
        with pytest.raises(_Killed):
            _train(state, tokenizer, method, cfg, tmp_path / "killed", [4, 8], checkpoint_every=4)
    assert not (tmp_path / "killed" / "eval" / "step8.npz").exists()
    resumed, result, check = _train(state, tokenizer, method, cfg, tmp_path / "killed", [4, 8], checkpoint_every=4)
    assert result["resumed_from"] is not None and result["resumed_from"].endswith("checkpoint-4")
    assert check["n_trainable_changed"] > 0
    params = dict(whole.named_parameters())
    for name, p in resumed.named_parameters():
        assert torch.equal(p, params[name]), name
    moved = sum(not torch.equal(p, state[n]) for n, p in resumed.named_parameters())
    assert moved > 0                                    # the run did train
    for step in (4, 8):
        a, _ = load_arrays(tmp_path / "whole" / "eval" / f"step{step}.npz", verify=False)
        b, _ = load_arrays(tmp_path / "killed" / "eval" / f"step{step}.npz", verify=False)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# --- the stage, end to end --------------------------------------------------------------------

SPEC = dict(ARITH, name="tiny-llama-arith")
LABELS = [f"L{i // 4}H{i % 4}" for i in range(12)]
SYN_RED = np.array([0.9, -0.8, 0.1, 0.4, 0.5, -0.3, 0.0, 0.7, -0.9, 0.2, 0.3, -0.1])


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """data -> 2 training parts -> 2 evaluation parts -> merge, 6 runs of 4 steps each."""
    from synergy_core.stages.finetune import run_train_part
    from synergy_core.stages.finetune_eval import run_eval_part
    from synergy_core.stages.finetune_stats import merge, run_prepare_data

    work = tmp_path_factory.mktemp("finetune")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("SYNERGY_CORE_RESULTS", str(work))
        cfg = _cfg()
        write_table(work / "heads.tsv", pd.DataFrame({"head_label": LABELS, "syn_red": SYN_RED}))
        data = work / "data.json"
        run_prepare_data(cfg, dict(train_task=None, sft_data=None, eval_task=None), data)
        train = [work / f"train{p}" for p in range(2)]
        for p, out in enumerate(train):
            run_train_part(data, work / "heads.tsv", out, SPEC, cfg, p, 2, work / "scratch", "cpu", 2, "tcode")
        dirs = {run_label(r): train[i % 2] for i, r in enumerate(plan_runs(cfg["methods"], cfg["n_seeds"]))}
        evals = [work / f"eval{p}.json" for p in range(2)]
        for p, out in enumerate(evals):
            run_eval_part(data, work / "heads.tsv", dirs, out, SPEC, cfg, p, 2, "cpu", "ecode")
        out = _outputs(work)
        merge(evals, train, data, out, cfg, SPEC, "ecode", "tcode")
        yield dict(work=work, cfg=cfg, data=data, train=train, evals=evals, out=out, dirs=dirs)


def _outputs(folder):
    return {k: folder / f"{k}.{'json' if k == 'runs' else 'tsv'}" for k in ("problems", "accuracy", "training", "runs")}


def _arrays(folder):
    return {p.relative_to(folder): load_arrays(p)[0] for p in sorted(folder.rglob("*.npz"))}


def _same_arrays(a, b):
    assert a.keys() == b.keys()
    for path in a:
        assert a[path].keys() == b[path].keys(), path
        assert all(np.array_equal(a[path][k], b[path][k]) for k in a[path]), path


def test_stage_merges_one_row_per_checkpoint_with_the_frozen_weight_counts(stage):
    out, cfg = stage["out"], stage["cfg"]
    accuracy = read_table(out["accuracy"], ("method", "region", "seed", "step", "accuracy"),
                          text_columns=("method", "region"))
    assert len(accuracy) == 1 + 6 * 2
    base = accuracy[accuracy.method == "base"]
    assert len(base) == 1 and base.step.iloc[0] == 0
    assert base.n_correct.iloc[0] == 22 and base.n_problems.iloc[0] == 36     # step150's greedy answers
    runs = accuracy[accuracy.method != "base"]
    assert sorted(set(zip(runs.method, runs.region))) == [(m, r) for m in ("grpo", "sft")
                                                          for r in ("random", "redundant", "synergistic")]
    assert sorted(set(runs.step)) == [2, 4] and (accuracy.n_problems == 36).all()
    record = read_json(out["runs"])
    assert len(record["runs"]) == 6 and record["n_problems"] == 36
    model = _untrained("builtin:tiny-llama-arith")          # the masks depend on the shape only
    n_total = sum(v.numel() for v in model.parameters())
    for run in record["runs"]:
        assert run["n_trainable"] == 6 * D * 128                        # 6 heads, q rows + o columns
        assert run["n_frozen"] == n_total - run["n_trainable"]
        assert 0 < run["n_trainable_changed"] <= run["n_trainable"]
        assert run["resumed_from"] is None
    training = read_table(out["training"], ("method", "region", "seed", "step", "loss"),
                          text_columns=("method", "region"))
    assert len(training) == 6 * cfg["max_steps"]
    assert training[training.method == "grpo"].reward.notna().all()
    data = read_json(stage["data"])
    assert (data["n_grpo"], data["n_sft"], data["n_eval"], data["n_eval_in_train"]) == (36, 36, 36, 36)
    # the regions trained are those of the ranking: the synergistic run's masks are its top 6 heads
    top = np.sort(np.argsort(-SYN_RED)[:6])
    syn = next(r for r in record["runs"] if r["label"] == "grpo-synergistic-s0")
    assert syn["masks_digest"] == masks_digest(trainable_masks(model, model_shape(model), region_heads(top, 4)))


def test_rerun_of_a_training_part_does_not_train_again(stage, monkeypatch, caplog):
    from synergy_core import finetune_train
    from synergy_core.stages.finetune import run_train_part

    work, cfg = stage["work"], stage["cfg"]
    part = stage["train"][1]
    before = _arrays(part)
    record = read_json(part / "record.json")

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(finetune_train, "train_run", no_training)
    with caplog.at_level(logging.INFO, logger="synergy_core.stages.finetune"):
        run_train_part(stage["data"], work / "heads.tsv", part, SPEC, cfg, 1, 2, work / "scratch", "cpu", 2, "tcode")
    assert caplog.text.count("not trained again") == 3
    after = _arrays(part)
    assert len(after) == 3 * 2
    _same_arrays(before, after)
    assert read_json(part / "record.json") == record


def test_changing_one_method_retrains_only_that_methods_runs(stage, monkeypatch, tmp_path):
    """The scratch key holds a run's own settings: a new SFT learning rate retrains the SFT runs
    and reuses the finished GRPO runs (35 A100-hours each in the paper configuration)."""
    import copy
    import shutil

    from synergy_core import finetune_train
    from synergy_core.stages.finetune import run_train_part

    work, cfg = stage["work"], copy.deepcopy(stage["cfg"])
    scratch = tmp_path / "scratch"
    shutil.copytree(work / "scratch", scratch)
    cfg["sft"] = dict(cfg["sft"], learning_rate=cfg["sft"]["learning_rate"] / 2)
    trained, original = [], finetune_train.train_run

    def recording(model, tokenizer, run, *args, **kwargs):
        trained.append(run["method"])
        return original(model, tokenizer, run, *args, **kwargs)

    monkeypatch.setattr(finetune_train, "train_run", recording)
    for part in (0, 1):
        run_train_part(stage["data"], work / "heads.tsv", tmp_path / f"part{part}", SPEC, cfg, part, 2, scratch,
                       "cpu", 2, "tcode")
    assert trained and set(trained) == {"sft"}


def _curve(record):
    return {r["label"]: [(h["step"], h["loss"], h.get("reward"), h["grad_norm"]) for h in r["history"] if "loss" in h]
            for r in record["runs"]}


def test_a_killed_training_part_resumes_to_the_uninterrupted_parts_checkpoints(stage, monkeypatch):
    """Part 1 (grpo-redundant, sft-synergistic, sft-random) killed at step 3 of its second run,
    then rerun: the first run is not trained again, the second resumes from its step-2
    checkpoint, and every saved array equals the uninterrupted part's, bitwise; so a run trained
    after another in one job equals the same run trained first."""
    from synergy_core.stages.finetune import run_train_part

    work, cfg, data = stage["work"], stage["cfg"], stage["data"]
    out, scratch = work / "killed" / "train1", work / "killed" / "scratch"
    with monkeypatch.context() as m:
        _kill_at(m, 3, nth=2)
        with pytest.raises(_Killed):
            run_train_part(data, work / "heads.tsv", out, SPEC, cfg, 1, 2, scratch, "cpu", 2, "tcode")
    run_train_part(data, work / "heads.tsv", out, SPEC, cfg, 1, 2, scratch, "cpu", 2, "tcode")
    record, whole = read_json(out / "record.json"), read_json(stage["train"][1] / "record.json")
    assert [r["resumed_from"] is not None for r in record["runs"]] == [False, True, False]
    assert record["runs"][1]["resumed_from"].endswith("checkpoint-2")
    assert _curve(record) == _curve(whole)
    assert [r["n_trainable_changed"] for r in record["runs"]] == [r["n_trainable_changed"] for r in whole["runs"]]
    _same_arrays(_arrays(out), _arrays(stage["train"][1]))
    assert not list(scratch.rglob("checkpoint-*"))               # finished runs drop their checkpoints


def test_evaluation_answers_are_those_of_the_checkpoint_alone(stage):
    """Each part evaluates several checkpoints with one model, restoring the base weights between
    them: a checkpoint's answers equal those of a fresh model given only that checkpoint, and the
    trained checkpoints answer differently from the base model."""
    from synergy_core.finetune_plan import checkpoint_path
    from synergy_core.perturb import build_prompts, greedy_answers

    cfg = stage["cfg"]
    rows = pd.DataFrame(read_json(stage["evals"][1])["rows"] + read_json(stage["evals"][0])["rows"])
    problems = read_json(stage["data"])["eval"]
    base = rows[rows.method == "base"].set_index("problem_id").output
    changed = {k: int((g.set_index("problem_id").output != base).sum())
               for k, g in rows[rows.method != "base"].groupby(["method", "region", "step"])}
    # measured: 10 of the 12 checkpoints change 1-11 of the 36 base answers, every SFT one 6 or more
    assert sum(n > 0 for n in changed.values()) >= 8, changed
    assert all(n >= 3 for (method, _, _), n in changed.items() if method == "sft"), changed
    run = dict(method="sft", region="random", seed=0)             # the last unit of evaluation part 1
    assert read_json(stage["evals"][1])["units"][-1] == "sft-random-s0/step2"
    model = load_model(ARITH)
    shape = model_shape(model)
    region = regions(SYN_RED, 0.5, cfg["seed"], 0)["random"]
    masks = trainable_masks(model, shape, region_heads(region, 4))
    arrays, _ = load_arrays(checkpoint_path(stage["dirs"][run_label(run)], run, 2))
    load_values(model, masks, {k.split(":", 1)[1]: v for k, v in arrays.items()})
    tokenizer = load_tokenizer(ARITH)
    prompts, stops = build_prompts(tokenizer, [p["problem"] for p in problems], False)
    texts, counts = greedy_answers(model, tokenizer, prompts, cfg["eval_max_new_tokens"], 36, "cpu", stops)
    unit = rows[(rows.method == "sft") & (rows.region == "random") & (rows.step == 2)].set_index("problem_id")
    assert list(unit.loc[[p["id"] for p in problems]].output) == texts
    assert list(unit.loc[[p["id"] for p in problems]].n_tokens) == counts


def _rewritten(path, new_path, edit, made_from):
    obj = read_json(path)
    edit(obj)
    new_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(new_path, obj, made_from=made_from)
    return new_path


def test_merge_refuses_missing_foreign_and_inert_parts(stage, tmp_path):
    from synergy_core.stages.finetune_stats import merge

    work, cfg, data, train, evals = stage["work"], stage["cfg"], stage["data"], stage["train"], stage["evals"]
    out = _outputs(tmp_path)
    merge(evals, train, data, out, cfg, SPEC, "ecode", "tcode")          # the parts as made: accepted
    with pytest.raises(CorruptOutputError, match="made with other settings"):
        merge(evals[:1], train, data, out, cfg, SPEC, "ecode", "tcode")           # an evaluation part missing
    with pytest.raises(CorruptOutputError, match="repeated or out of range"):
        merge([evals[0], evals[0]], train, data, out, cfg, SPEC, "ecode", "tcode")
    with pytest.raises(CorruptOutputError, match="made with other settings"):
        merge(evals, train[:1], data, out, cfg, SPEC, "ecode", "tcode")           # a training part missing
    heads = work / "heads.tsv"
    made_from = [data, heads]
    bad = work / "bad"
    # a training part that lost a run
    lost = _rewritten(train[1] / "record.json", bad / "lost" / "record.json",
                      lambda o: o["runs"].pop(0), made_from).parent
    with pytest.raises(CorruptOutputError, match="runs missing"):
        merge(evals, [train[0], lost], data, out, cfg, SPEC, "ecode", "tcode")
    # a run whose training changed nothing
    inert = _rewritten(train[1] / "record.json", bad / "inert" / "record.json",
                       lambda o: o["runs"][1].update(n_trainable_changed=0), made_from).parent
    with pytest.raises(CorruptOutputError, match="changed no trainable element"):
        merge(evals, [train[0], inert], data, out, cfg, SPEC, "ecode", "tcode")
    # an evaluation part made with other evaluation settings
    foreign = _rewritten(evals[1], bad / "eval1.json",
                         lambda o: o["settings"].update(eval_max_new_tokens=99), [data, heads])
    with pytest.raises(CorruptOutputError, match="made with other settings"):
        merge([evals[0], foreign], train, data, out, cfg, SPEC, "ecode", "tcode")
    # other code or weights
    with pytest.raises(CorruptOutputError, match="made by other code than this checkout's finetune_eval"):
        merge(evals, train, data, out, cfg, SPEC, "other", "tcode")
    with pytest.raises(CorruptOutputError, match="made by other code than this checkout's finetune_train"):
        merge(evals, train, data, out, cfg, SPEC, "ecode", "other")
    with pytest.raises(CorruptOutputError, match="made with other weights"):
        merge(evals, train, data, out, cfg, dict(SPEC, revision="step300"), "ecode", "tcode")
    # an evaluation part that lost a checkpoint's answers, or one answer of a checkpoint
    lost_unit = _rewritten(evals[1], bad / "lost_unit" / "eval1.json",
                           lambda o: o.update(rows=[r for r in o["rows"] if r["region"] != "random"]), [data, heads])
    with pytest.raises(CorruptOutputError, match=r"checkpoints missing \(grpo-random-s0/step"):
        merge([evals[0], lost_unit], train, data, out, cfg, SPEC, "ecode", "tcode")
    lost_row = _rewritten(evals[1], bad / "lost_row" / "eval1.json", lambda o: o["rows"].pop(5), [data, heads])
    with pytest.raises(CorruptOutputError, match="answered 35 problems, not each of the 36 once"):
        merge([evals[0], lost_row], train, data, out, cfg, SPEC, "ecode", "tcode")


def test_evaluation_refuses_a_checkpoint_of_other_settings(stage, tmp_path):
    from synergy_core.stages.finetune_eval import run_eval_part

    work, cfg = stage["work"], stage["cfg"]
    dirs = {run_label(r): stage["train"][i % 2] for i, r in enumerate(plan_runs(cfg["methods"], cfg["n_seeds"]))}
    other = _cfg(grpo=dict(cfg["grpo"], learning_rate=2e-3))
    with pytest.raises(CorruptOutputError, match="made for another run, model, step, settings or base weights"):
        run_eval_part(stage["data"], work / "heads.tsv", dirs, tmp_path / "e.json", SPEC, other, 1, 2, "cpu")


def test_evaluation_refuses_a_checkpoint_trained_from_other_base_weights(stage, tmp_path, monkeypatch):
    """Same spec, other base weights (e.g. a hub model re-downloaded between training and
    evaluation): the recorded digest of the base weights differs and the checkpoint is refused."""
    from synergy_core import finetune
    from synergy_core.stages.finetune_eval import run_eval_part

    work, cfg = stage["work"], stage["cfg"]
    dirs = {run_label(r): stage["train"][i % 2] for i, r in enumerate(plan_runs(cfg["methods"], cfg["n_seeds"]))}
    monkeypatch.setattr(finetune, "weights_digest", lambda weights: "other weights")
    with pytest.raises(CorruptOutputError, match="base weights"):
        run_eval_part(stage["data"], work / "heads.tsv", dirs, tmp_path / "e.json", SPEC, cfg, 1, 2, "cpu")


# --- task data ------------------------------------------------------------------------------

def test_last_boxed():
    from synergy_core.tasks import last_boxed

    assert last_boxed("so \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{x^{2}+{y_{1}}} and more") == "x^{2}+{y_{1}}"
    assert last_boxed("first \\boxed{7}, then \\boxed{8}") == "8"
    assert last_boxed("\\fbox{3} after \\boxed{2}") == "2" and last_boxed("\\boxed{2} then \\fbox{3}") == "3"
    assert last_boxed("\\boxed{}") == ""
    assert last_boxed("\\boxed{7} then \\boxed{\\frac{1}{2}") is None          # the last one is not closed
    assert last_boxed("\\boxed{") is None
    assert last_boxed("the answer is 7") is None and last_boxed("") is None


def test_sft_file_errors_name_the_file_and_line(tmp_path):
    from synergy_core.tasks import TaskError, load_sft, read_sft_file

    path = tmp_path / "sft.jsonl"
    cases = [('{"problem": "a", "solution": "b"}\nnot json\n', r"sft\.jsonl line 2: not a JSON object"),
             ('{"problem": "a"}\n', r"sft\.jsonl line 1: needs non-empty strings 'problem' and 'solution'"),
             ('\n{"problem": "a", "solution": "  "}\n', r"sft\.jsonl line 2: needs non-empty"),
             ('["problem", "solution"]\n', r"sft\.jsonl line 1: not a JSON object$"),
             ("\n\n", r"sft\.jsonl holds no examples")]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(TaskError, match=message):
            read_sft_file(path)
    with pytest.raises(TaskError, match=r"missing\.jsonl does not exist"):
        read_sft_file(tmp_path / "missing.jsonl")
    path.write_text('{"id": 3, "problem": "p", "generated_solution": "s \\\\boxed{1}"}\n\n'
                    '{"problem": "q", "solution": "t"}\n')
    assert read_sft_file(path) == [dict(id="3", problem="p", solution="s \\boxed{1}"),
                                   dict(id="line-3", problem="q", solution="t")]
    builtin = load_sft("builtin:arithmetic", None)
    assert len(builtin) == 36 and builtin[-1] == dict(id="add-5-5", problem="5+5=", solution="\\boxed{10}")


def test_task_rows_take_the_answer_or_the_last_boxed_of_the_solution():
    from synergy_core.tasks import task_rows

    rows = [dict(problem="p0", solution="so $x=\\boxed{\\frac{1}{2}}$", level="Level 2", type="Algebra"),
            dict(problem="p1", solution="no box here"),
            dict(problem="p2", solution="\\boxed{3} or \\boxed{4}"),
            dict(problem="p3", answer="7", solution="\\boxed{8}", unique_id="u3"),
            dict(problem="p4", solution="\\boxed{ }")]
    out = task_rows(rows, None)
    assert out == [dict(id="0", problem="p0", answer="\\frac{1}{2}", level="Level 2", type="Algebra"),
                   dict(id="2", problem="p2", answer="4"),
                   dict(id="3", problem="p3", answer="7")]
    assert [r["id"] for r in task_rows(rows[3:4], "unique_id")] == ["u3"]

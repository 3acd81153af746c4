"""The perturbation stage (Fig 4b): noise exactly on the chosen heads' slices, head sets, task
data and scoring, the merge's refusals, and a planted effect found by the set-rank test."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from synergy_core.builtin import BUILTIN_MODELS, arithmetic_problems
from synergy_core.hooks import head_hooks, model_shape
from synergy_core.io import CorruptOutputError, write_table
from synergy_core.models import load_model, load_tokenizer
from synergy_core.perturb import HeadPerturbation, build_prompts, greedy_answers, head_weight_slices
from synergy_core.perturbation_plan import head_sets, noise_seed, plan_units, units_of_part
from synergy_core.scoring import parse_reference, score_answer, usable_problems
from synergy_core.tasks import TaskError, format_prompt, read_task_file

ARCHITECTURES = [m for m in BUILTIN_MODELS if m != "builtin:tiny-llama-arith"]   # same shape as tiny-llama


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _slice_mask(model, slices, heads):
    """Per parameter name, a boolean mask of the entries belonging to ``heads``' slices."""
    params = dict(model.named_parameters())
    masks = {}
    for head in heads:
        for s in slices[head]:
            name = next(n for n, p in params.items() if p is s.param)
            mask = masks.setdefault(name, torch.zeros_like(s.param, dtype=torch.bool))
            mask[s.index] = True
    return masks


@pytest.mark.parametrize("hf_id", ARCHITECTURES)
def test_noise_lands_exactly_on_the_chosen_slices_and_is_restored_bitwise(hf_id):
    model = load_model({"hf_id": hf_id, "seed": 3})
    shape = model_shape(model)
    slices = head_weight_slices(model, shape)
    before = _state(model)
    heads = [(0, 1), (shape.n_layers - 1, shape.n_heads - 1)]
    perturbation = HeadPerturbation(slices)
    perturbation.apply(heads, alpha=0.5, seed=7)
    masks = _slice_mask(model, slices, heads)
    for name, value in model.state_dict().items():
        if name in masks:
            changed = value != before[name]
            assert changed[masks[name]].float().mean() > 0.99, name     # (almost) every entry moved
            assert not changed[~masks[name]].any(), name                # nothing else did
        else:
            assert torch.equal(value, before[name]), name
    # the query slice of a head is d rows (or columns) and its output slice d columns (or rows)
    n_entries = sum(int(m.sum()) for m in masks.values())
    assert n_entries == len(heads) * 2 * shape.head_dim * model.config.hidden_size
    perturbation.restore()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("hf_id", ARCHITECTURES)
def test_query_slice_changes_only_its_own_head_output(hf_id):
    """Noise on head h's query rows changes head h's attention output in that layer and no other
    head's there: the slice indexing (fused GPT-NeoX, GPT-2 Conv1D, grouped-query) is the head's."""
    model = load_model({"hf_id": hf_id, "seed": 3})
    shape = model_shape(model)
    slices = head_weight_slices(model, shape)
    ids = torch.randint(0, 250, (2, 9), generator=torch.Generator().manual_seed(0))

    def norms():
        with head_hooks(model, shape) as hooks, torch.no_grad():
            hooks.capture = True
            model(input_ids=ids)
            return hooks.pop_norms()[..., :shape.n_heads]       # layer 0's heads

    base = norms()
    h = 1
    query_only = HeadPerturbation({(0, h): slices[(0, h)][:1]})
    query_only.apply([(0, h)], alpha=2.0, seed=1)
    moved = norms()
    query_only.restore()
    diff = (moved - base).abs().amax(dim=(0, 1))
    assert diff[h] > 1e-4
    assert torch.all(diff[[i for i in range(shape.n_heads) if i != h]] < 1e-6)


def test_output_slice_is_the_heads_input_to_the_output_projection():
    """With head h's attention output zeroed (ablated), noise on its output-projection slice
    changes nothing: the slice multiplies exactly that head's output."""
    for hf_id in ARCHITECTURES:
        model = load_model({"hf_id": hf_id, "seed": 3})
        shape = model_shape(model)
        slices = head_weight_slices(model, shape)
        ids = torch.randint(0, 250, (1, 9), generator=torch.Generator().manual_seed(0))
        mask = torch.ones(1, shape.n_layers, shape.n_heads)
        mask[0, 1, 2] = 0
        with head_hooks(model, shape) as hooks, torch.no_grad():
            hooks.mask = mask
            base = model(input_ids=ids).logits
            output_only = HeadPerturbation({(1, 2): slices[(1, 2)][1:]})
            output_only.apply([(1, 2)], alpha=3.0, seed=1)
            moved = model(input_ids=ids).logits
            output_only.restore()
            hooks.mask = None
            unmasked_base = model(input_ids=ids).logits
            output_only.apply([(1, 2)], alpha=3.0, seed=1)
            unmasked_moved = model(input_ids=ids).logits
            output_only.restore()
        torch.testing.assert_close(moved, base, rtol=0, atol=1e-6)
        assert (unmasked_moved - unmasked_base).abs().max() > 1e-4, hf_id


def test_noise_scale_is_alpha_times_the_matrix_std():
    model = load_model({"hf_id": "builtin:tiny-llama", "seed": 0})
    shape = model_shape(model)
    slices = head_weight_slices(model, shape)
    q = slices[(0, 0)][0]
    assert q.std == pytest.approx(q.param.detach().float().std().item(), rel=1e-6)
    heads = [(layer, h) for layer in range(shape.n_layers) for h in range(shape.n_heads)]
    before = q.param.detach().clone()
    perturbation = HeadPerturbation(slices)
    perturbation.apply(heads, alpha=0.7, seed=3)
    noise = (q.param.detach() - before).flatten()
    perturbation.restore()
    assert noise.std().item() == pytest.approx(0.7 * q.std, rel=0.05)    # 4096 draws: ~1% error
    assert abs(noise.mean().item()) < 0.05 * 0.7 * q.std


@pytest.fixture(scope="module")
def arith():
    spec = {"hf_id": "builtin:tiny-llama-arith", "revision": "step300", "seed": 0}
    return load_model(spec), load_tokenizer(spec)


def _answers(model, tokenizer, problems, max_new_tokens=12):
    prompts, stops = build_prompts(tokenizer, [p["problem"] for p in problems], "auto")
    return greedy_answers(model, tokenizer, prompts, max_new_tokens, 8, "cpu", stops)


def test_alpha_zero_reproduces_the_baseline_token_for_token(arith):
    model, tokenizer = arith
    problems = arithmetic_problems()
    base_texts, base_counts = _answers(model, tokenizer, problems)
    shape = model_shape(model)
    perturbation = HeadPerturbation(head_weight_slices(model, shape))
    perturbation.apply([(0, 0), (1, 3), (2, 1)], alpha=0.0, seed=5)
    texts, counts = _answers(model, tokenizer, problems)
    perturbation.restore()
    assert texts == base_texts and counts == base_counts


def test_builtin_model_solves_the_builtin_task_well_above_chance(arith):
    model, tokenizer = arith
    problems = arithmetic_problems()
    texts, counts = _answers(model, tokenizer, problems)
    correct = [score_answer(parse_reference(p["answer"]), t)[0] for p, t in zip(problems, texts)]
    assert np.mean(correct) > 0.6
    assert max(counts) <= 12 and min(counts) >= len("\\boxed{0}")


def test_batching_does_not_change_greedy_answers(arith):
    """Batches are formed by prompt length, whatever the weights, so every condition answers in
    the same batches; here batch sizes 1 and 8 also agree on this task."""
    model, tokenizer = arith
    problems = arithmetic_problems()[:10]
    prompts, _ = build_prompts(tokenizer, [p["problem"] for p in problems], False)
    a = greedy_answers(model, tokenizer, prompts, 12, 1, "cpu")
    b = greedy_answers(model, tokenizer, prompts, 12, 8, "cpu")
    assert a == b


def test_head_sets_have_equal_sizes_and_the_right_heads():
    syn_red = np.array([0.9, -0.8, 0.1, np.nan, 0.5, -0.3, 0.0, 0.7, -0.9, 0.2, 0.3, -0.1])
    sets = head_sets(syn_red, 0.25, n_random_sets=5, seed=0)
    assert list(sets["synergistic"][0]) == [0, 4, 7]
    assert list(sets["redundant"][0]) == [1, 5, 8]
    sizes = {len(s) for group in sets.values() for s in group}
    assert sizes == {3}
    for s in sets["random"]:
        assert 3 not in s and len(set(s)) == 3            # the unranked head is in no set
    assert len({tuple(s) for s in sets["random"]}) > 1
    again = head_sets(syn_red, 0.25, n_random_sets=7, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(sets["random"], again["random"]))   # prefix-stable
    with pytest.raises(ValueError, match="need 1 <= k"):
        head_sets(syn_red, 0.05, 1, 0)


def test_noise_seeds_depend_only_on_their_labels():
    seeds = {noise_seed(0, c, s, a, r) for c in ("synergistic", "redundant", "random")
             for s in range(3) for a in (0.5, 1.0) for r in range(3)}
    assert len(seeds) == 3 * 3 * 2 * 3
    assert noise_seed(0, "random", 1, 0.5, 2) == noise_seed(0, "random", 1, 0.5, 2)
    assert noise_seed(0, "random", 1, 0.5, 2) != noise_seed(1, "random", 1, 0.5, 2)


def test_units_are_dealt_to_parts_without_loss_or_overlap():
    units = plan_units([0.5, 1.0], n_random_sets=4, n_repeats=3)
    assert len(units) == 1 + (2 + 4) * 2 * 3
    parts = [units_of_part(units, p, 5) for p in range(5)]
    flat = [json.dumps(u, sort_keys=True) for part in parts for u in part]
    assert sorted(flat) == sorted(json.dumps(u, sort_keys=True) for u in units)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


# scoring: math-verify's equivalence, on answers the MATH benchmark has
EQUIVALENT = [("7", "so the answer is \\boxed{7}."), ("\\frac{1}{2}", "\\boxed{0.5}"),
              ("\\frac{1}{2}", "\\boxed{\\dfrac12}"), ("10", "\\boxed{10 \\text{ cm}}"),
              ("[1,2)", "\\boxed{[1, 2)}"), ("x^2+1", "\\boxed{1+x^2}"),
              ("\\sqrt{2}/2", "\\boxed{\\frac{\\sqrt2}{2}}"), ("19", "19 is \\boxed{19}<|pad|>"),
              ("8", "first \\boxed{7}, on reflection \\boxed{8}")]                # the last \boxed counts
NOT_EQUIVALENT = [("[1,2)", "\\boxed{[1,2]}"), ("3", "\\boxed{4}"), ("7", "no answer at all"),
                  ("5", "\\boxed{5"), ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}"),
                  ("7", "\\boxed{7} then \\boxed{8}"),
                  ("7", "The answer is 7"),                                  # no \boxed: no answer
                  ("14", "so we get 14, then \\boxed{"),                    # cut off inside its \boxed
                  ("2", "3+4=7. Step 2: multiply by 2 to get")]                # a stray number is no answer


@pytest.mark.parametrize("reference,output", EQUIVALENT)
def test_scoring_accepts_equivalent_answers(reference, output):
    from math_verify import parse, verify

    correct, extracted, error = score_answer(parse_reference(reference), output)
    assert correct and extracted and not error
    last_boxed = output[output.rfind("\\boxed"):]
    assert correct == verify(parse(f"${reference}$"), parse(last_boxed))     # math-verify's own verdict


@pytest.mark.parametrize("reference,output", NOT_EQUIVALENT)
def test_scoring_refuses_other_answers(reference, output):
    correct, _, error = score_answer(parse_reference(reference), output)
    assert not correct and not error


def test_a_math_verify_timeout_is_counted_not_fatal(monkeypatch):
    """math-verify's TimeoutException is a BaseException: it must still become a counted error."""
    import math_verify
    from math_verify.errors import TimeoutException

    def slow(*args, **kwargs):
        raise TimeoutException("verify took too long")

    monkeypatch.setattr(math_verify, "verify", slow)
    assert score_answer(parse_reference("7"), "\\boxed{9^{9^{9^{9}}}}") == (False, "", True)


def test_prompt_template_replaces_only_the_problem_field():
    template = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert format_prompt(template, "1+1?") == \
        "1+1?\nPlease reason step by step, and put your final answer within \\boxed{}."


def test_task_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    cases = [('{"problem": "a", "answer": "1"}\nnot json\n', "line 2: not a JSON object"),
             ('{"problem": "a"}\n', "line 1: needs a non-empty string 'answer'"),
             ('{"id": 1, "problem": "a", "answer": "1"}\n{"id": "1", "problem": "b", "answer": "2"}\n',
              "line 2: duplicate id '1'"),
             ("\n\n", "holds no problems")]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(TaskError, match=message):
            read_task_file(path)
    with pytest.raises(TaskError, match="does not exist"):
        read_task_file(tmp_path / "missing.jsonl")
    path.write_text('{"unique_id": "test/a/1.json", "problem": "p", "answer": "\\\\frac{1}{2}", "level": 3}\n')
    assert read_task_file(path) == [dict(id="test/a/1.json", problem="p", answer="\\frac{1}{2}")]


def test_unparsable_reference_answers_are_dropped_and_counted():
    problems = [dict(id="a", problem="p", answer="3"), dict(id="b", problem="q", answer="\\"),
                dict(id="c", problem="r", answer="\\frac{1}{4}"), dict(id="d", problem="s", answer="9")]
    kept, dropped = usable_problems(problems[:3])
    assert [p["id"] for p in kept] == ["a", "c"] and dropped == ["b"]


# --- the stage, end to end on the built-in model: merge refusals, a planted effect ------------

CFG = dict(task="builtin:arithmetic", n_problems=None, prompt_template="{problem}", chat_template=False,
           max_new_tokens=12, batch_size=36, core_fraction=0.25, n_random_sets=19, alpha=[3.0], n_repeats=1,
           seed=0)
SPEC = {"hf_id": "builtin:tiny-llama-arith", "revision": "step300", "seed": 0, "name": "arith"}


def _head_importance(model, tokenizer):
    """Accuracy lost when each head alone is ablated: the heads the model needs."""
    from synergy_core.hooks import head_hooks

    problems = arithmetic_problems()
    refs = [parse_reference(p["answer"]) for p in problems]
    shape = model_shape(model)
    base = np.mean([score_answer(r, t)[0] for r, t in zip(refs, _answers(model, tokenizer, problems)[0])])
    loss = []
    with head_hooks(model, shape) as hooks:
        for i in range(shape.n_total_heads):
            mask = torch.ones(1, shape.n_layers, shape.n_heads)        # broadcast over the batch
            mask[:, i // shape.n_heads, i % shape.n_heads] = 0
            hooks.mask = mask
            texts = _answers(model, tokenizer, problems)[0]
            hooks.mask = None
            loss.append(base - np.mean([score_answer(r, t)[0] for r, t in zip(refs, texts)]))
    return np.array(loss)


@pytest.fixture(scope="module")
def planted_stage(tmp_path_factory, arith):
    """The stage run on a ranking whose 'synergistic' core is the 3 heads the model needs most."""
    from synergy_core.stages.perturb import run_part, run_prepare_task

    work = tmp_path_factory.mktemp("perturbation")
    model, tokenizer = arith
    importance = _head_importance(model, tokenizer)
    labels = [f"L{i // 4}H{i % 4}" for i in range(12)]
    write_table(work / "heads.tsv", pd.DataFrame({"head_label": labels, "syn_red": importance}))
    run_prepare_task("builtin:arithmetic", None, None, work / "task.json")
    parts = [work / f"part_{p}.json" for p in range(2)]
    for p, path in enumerate(parts):
        run_part(work / "task.json", work / "heads.tsv", path, SPEC, CFG, p, 2, "cpu")
    return work, parts, importance


def test_planted_effect_is_found_by_the_set_rank_test(planted_stage):
    from synergy_core.perturbation_stats import perturbation_statistics
    from synergy_core.stages.perturbation_stats import merge_parts

    work, parts, importance = planted_stage
    long = merge_parts(parts, work / "task.json", work / "heads.tsv", work / "problems.tsv",
                       work / "head_sets.json", CFG, SPEC)
    assert len(long) == (1 + 21) * 36
    accuracy, _, tests = perturbation_statistics(long, n_boot=200, ci=0.95, seed=0)
    acc = accuracy.set_index("condition").accuracy
    assert acc["synergistic"] < acc["random"] < acc["baseline"] + 1e-12
    syn = tests.set_index("comparison").loc["synergistic_vs_random"]
    assert syn.p == pytest.approx(1 / 20) and syn.p_floor == pytest.approx(1 / 20)
    sets = json.loads((work / "head_sets.json").read_text())["sets"]
    assert len(sets["synergistic"][0]) == 3 and len(sets["random"]) == 19


def test_merge_refuses_missing_stale_and_foreign_parts(planted_stage, tmp_path):
    from synergy_core.stages.perturbation_stats import merge_parts

    work, parts, importance = planted_stage
    out = (tmp_path / "p.tsv", tmp_path / "s.json")
    with pytest.raises(CorruptOutputError, match="made with other settings"):
        merge_parts(parts[:1], work / "task.json", work / "heads.tsv", *out, CFG, SPEC)   # n_parts differs
    with pytest.raises(CorruptOutputError, match="made with other settings"):
        merge_parts(parts, work / "task.json", work / "heads.tsv", *out, dict(CFG, n_repeats=2), SPEC)
    with pytest.raises(CorruptOutputError, match="repeated or out of range"):
        merge_parts([parts[0], parts[0]], work / "task.json", work / "heads.tsv", *out, CFG, SPEC)
    # a ranking rewritten after the parts were made: the parts are stale
    heads = work / "heads.tsv"
    saved = {p: p.read_bytes() for p in (heads, work / "heads.tsv.meta.json")}
    labels = [f"L{i // 4}H{i % 4}" for i in range(12)]
    try:
        write_table(heads, pd.DataFrame({"head_label": labels, "syn_red": -importance}))
        with pytest.raises(CorruptOutputError, match=r"made from a different \S*heads.tsv than the one there now"):
            merge_parts(parts, work / "task.json", heads, *out, CFG, SPEC)
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_download_stores_math500_as_jsonl_that_the_jobs_read(tmp_path, monkeypatch):
    """The download rule's conversion, with the datasets library replaced by a stand-in (no
    network in tests): ids, problems and answers kept, extra fields allowed, the file re-read."""
    import sys
    import types

    from synergy_core.tasks import download_task

    rows = [dict(problem="What is $1+1$?", answer="2", solution="...", subject="Algebra", level=1,
                 unique_id="test/algebra/1.json"),
            dict(problem="Simplify $\\frac{2}{4}$.", answer="\\frac{1}{2}", solution="...",
                 subject="Prealgebra", level=2, unique_id="test/prealgebra/7.json")]
    calls = []
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda repo, split: calls.append((repo, split)) or rows
    monkeypatch.setitem(sys.modules, "datasets", fake)
    out = tmp_path / "data" / "math500.jsonl"
    out.parent.mkdir()
    assert download_task("math500", out) == 2
    assert calls == [("HuggingFaceH4/MATH-500", "test")]
    problems = read_task_file(out)
    assert [p["id"] for p in problems] == ["test/algebra/1.json", "test/prealgebra/7.json"]
    assert problems[1]["answer"] == "\\frac{1}{2}" and problems[0]["problem"] == "What is $1+1$?"


def test_merge_refuses_parts_of_other_weights_or_code(planted_stage, tmp_path):
    from synergy_core.stages.perturbation_stats import merge_parts

    work, parts, _ = planted_stage
    with pytest.raises(CorruptOutputError, match="made with other weights"):
        merge_parts(parts, work / "task.json", work / "heads.tsv", tmp_path / "p.tsv", tmp_path / "s.json", CFG,
                    dict(SPEC, revision="step10"))
    with pytest.raises(CorruptOutputError, match="made by other code than this checkout's perturbation_part"):
        merge_parts(parts, work / "task.json", work / "heads.tsv", tmp_path / "p.tsv", tmp_path / "s.json", CFG,
                    SPEC, part_code="0123456789ab")


def test_problem_ids_and_answers_are_read_back_as_written(tmp_path):
    from synergy_core.io import read_table
    from synergy_core.stages.perturbation_stats import PROBLEM_COLUMNS, TEXT_COLUMNS

    frame = pd.DataFrame({"problem_id": ["1", "01", "NA", "nan"], "condition": "baseline", "set": 0,
                          "alpha": 0.0, "repeat": 0, "correct": [1, 0, 1, 0], "answer": ["7", "", "NA", "1.0"],
                          "n_tokens": 5, "scoring_error": 0})
    write_table(tmp_path / "problems.tsv", frame[PROBLEM_COLUMNS])
    back = read_table(tmp_path / "problems.tsv", tuple(PROBLEM_COLUMNS), text_columns=TEXT_COLUMNS)
    assert list(back.problem_id) == ["1", "01", "NA", "nan"] and list(back.answer) == ["7", "", "NA", "1.0"]
    assert back.correct.dtype.kind == "i" and back.alpha.dtype.kind in "if"      # numbers stay numbers


def test_a_query_projection_wider_than_the_heads_is_refused():
    """Latent attention (DeepSeek-V2) and similar: the slices would land on other heads."""
    model = load_model({"hf_id": "builtin:tiny-llama", "seed": 0})
    model.model.layers[1].self_attn.q_proj = torch.nn.Linear(64, 128, bias=False)
    with pytest.raises(RuntimeError, match="layer 1: the query projection is 128 wide .* not 4 heads x 16"):
        head_weight_slices(model, model_shape(model))


def test_chat_template_wraps_prompts_and_its_end_of_turn_token_stops():
    tokenizer = load_tokenizer({"hf_id": "builtin:tiny-llama"})
    with pytest.raises(ValueError, match="chat_template is true, but the tokenizer has no chat template"):
        build_prompts(tokenizer, ["1+1="], True)
    raw, stops = build_prompts(tokenizer, ["1+1="], "auto")                 # no template: raw text
    assert stops == [] and tokenizer.decode(raw[0]) == "1+1="
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tokenizer.chat_template = ("{% for m in messages %}<|user|>{{ m['content'] }}<|im_end|>{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    wrapped, stops = build_prompts(tokenizer, ["1+1="], "auto")
    assert tokenizer.decode(wrapped[0]) == "<|user|>1+1=<|im_end|><|assistant|>"
    assert stops == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert build_prompts(tokenizer, ["1+1="], False)[1] == []

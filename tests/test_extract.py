"""Generation and capture: batched == unbatched, cached == teacher-forced, EOS suppressed."""
import functools

import numpy as np
import pytest
import torch
from reference_norms import teacher_forced_norms

from synergy_core.extract import eos_ids, extract_activations, generate_with_norms, left_pad, tokenize_prompts
from synergy_core.hooks import head_hooks
from synergy_core.models import load_model, load_tokenizer
from synergy_core.prompts import load_prompts, select_prompts

TEXTS = ["Correct the error: He go to school every day.", "Hi", "What is 2 + 3?",
         "Describe the feeling of seeing a friend after many years apart."]
NAMES = [f"p{i}" for i in range(len(TEXTS))]
# Left padding changes the shapes of the matrix products, so float32 sums round differently:
# differences are a few ulps of the activations (~1e-7 relative), far below any PhiID effect.
RTOL, ATOL = 1e-4, 1e-5


def _run(model, tok, batch_size, num_tokens=12):
    ids = tokenize_prompts(tok, TEXTS, NAMES, False, 1024, num_tokens)
    with head_hooks(model) as hooks:
        gen = generate_with_norms(model, hooks, ids, num_tokens, eos_ids(model, tok),
                                  tok.pad_token_id, batch_size=batch_size)
        forced = teacher_forced_norms(model, hooks, ids, gen.tokens, tok.pad_token_id,
                                      batch_size=batch_size)
    return gen, forced


@pytest.mark.parametrize("hf_id", ["builtin:tiny-gpt-neox", "builtin:tiny-llama", "builtin:tiny-gpt2"])
def test_batched_equals_unbatched_and_cached_equals_teacher_forced(hf_id):
    model = load_model({"hf_id": hf_id, "seed": 0})
    tok = load_tokenizer({"hf_id": hf_id})
    batched, forced_b = _run(model, tok, batch_size=4)
    single, forced_s = _run(model, tok, batch_size=1)
    np.testing.assert_array_equal(batched.tokens, single.tokens)
    np.testing.assert_array_equal(batched.natural_length, single.natural_length)
    np.testing.assert_allclose(batched.norms, single.norms, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(batched.norms, forced_b, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(single.norms, forced_s, rtol=RTOL, atol=ATOL)
    assert batched.norms.shape == (4, model.config.num_hidden_layers * 4, 12)
    assert np.all(batched.norms > 0)


def test_left_pad_positions_start_at_zero():
    ids, mask, pos = left_pad([[5, 6, 7], [9]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos[1, -1].item() == 0 and pos[0].tolist() == [0, 1, 2]


class _EosLovingModel(torch.nn.Module):
    """Wraps a model and boosts EOS so that greedy decoding prefers it from step ``at`` on."""

    def __init__(self, model, eos, at):
        super().__init__()
        self.model, self.eos, self.at, self.calls = model, eos, at, 0
        self.config, self.generation_config = model.config, model.generation_config
        # the wrapped model's signature, so that the KV-cache argument gets its current name
        # (transformers 5 renamed past_key_values to cache and warns on the old one)
        self.forward = functools.wraps(model.forward)(lambda **kw: self._boosted(**kw))

    def _boosted(self, **kw):
        out = self.model(**kw)
        if self.calls >= self.at:
            out.logits[..., self.eos] += 1e4
        self.calls += 1
        return out


def test_eos_is_suppressed_and_natural_length_recorded(tiny_neox):
    model, tok = tiny_neox
    eos = eos_ids(model, tok)
    wrapped = _EosLovingModel(model, eos[0], at=5)
    ids = tokenize_prompts(tok, TEXTS[:2], NAMES[:2], False, 1024, 10)
    with head_hooks(model) as hooks:
        gen = generate_with_norms(wrapped, hooks, ids, 10, eos, tok.pad_token_id, batch_size=2)
    assert not np.isin(gen.tokens, eos).any()
    assert gen.tokens.shape == (2, 10)
    np.testing.assert_array_equal(gen.natural_length, [5, 5])


def test_natural_length_is_minus_one_when_eos_never_preferred(tiny_neox):
    model, tok = tiny_neox
    ids = tokenize_prompts(tok, TEXTS[:1], NAMES[:1], False, 1024, 6)
    with head_hooks(model) as hooks:
        gen = generate_with_norms(model, hooks, ids, 6, eos_ids(model, tok), tok.pad_token_id)
    assert gen.natural_length.tolist() == [-1]


def test_empty_and_too_long_prompts_are_refused(tiny_neox):
    _, tok = tiny_neox
    with pytest.raises(ValueError, match="prompt p0: empty"):
        tokenize_prompts(tok, [""], ["p0"], False, 1024, 5)
    with pytest.raises(ValueError, match="prompt p1: .* exceed the model's context of 64"):
        tokenize_prompts(tok, ["x" * 60], ["p1"], False, 64, 5)


def test_extraction_is_deterministic_and_labelled(repo):
    prompts = select_prompts(load_prompts(repo / "config/prompts.tsv"), per_category=1)
    spec = {"hf_id": "builtin:tiny-gpt-neox", "seed": 0, "name": "t"}
    a1, prov = extract_activations(spec, prompts, num_tokens=8, device="cpu")
    a2, _ = extract_activations(spec, prompts, num_tokens=8, device="cpu")
    np.testing.assert_array_equal(a1["acts"], a2["acts"])
    assert a1["acts"].dtype == np.float32 and a1["acts"].shape == (6, 24, 8)
    assert a1["head_labels"][5] == "L1H1"
    assert list(a1["prompt_ids"]) == [p.prompt_id for p in prompts]
    assert prov["shape"] == {"n_layers": 6, "n_heads": 4, "head_dim": 16}
    assert "torch" in prov["versions"] and "transformers" in prov["versions"]
    # the parameter count (the scaling figure's x axis): every tensor of the loaded model once
    model = load_model(spec)
    assert prov["model"]["n_parameters"] == sum(p.numel() for p in model.parameters()) > 0
    assert prov["model"]["name"] == "t" and prov["model"]["hf_id"] == "builtin:tiny-gpt-neox"


def test_random_init_depends_on_seed_only():
    a = load_model({"hf_id": "builtin:tiny-llama", "seed": 1})
    b = load_model({"hf_id": "builtin:tiny-llama", "seed": 1})
    c = load_model({"hf_id": "builtin:tiny-llama", "seed": 2})
    wa, wb, wc = (next(m.parameters()).detach() for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_byte_tokenizer_round_trips_every_prompt(repo):
    tok = load_tokenizer({"hf_id": "builtin:tiny-gpt-neox"})
    for p in load_prompts(repo / "config/prompts.tsv"):
        ids = tok(p.text)["input_ids"]
        assert tok.decode(ids) == p.text
        assert tok.eos_token_id not in ids


def test_trained_builtin_models_are_cached_bitwise_and_a_damaged_cache_is_replaced(tmp_path, monkeypatch):
    """A trained built-in model loaded from the cache equals one trained afresh, bit for bit; a
    damaged cache file is ignored, the model retrained and the file replaced."""
    import torch

    from synergy_core import models

    monkeypatch.setenv(models.BUILTIN_CACHE_ENV, str(tmp_path))
    spec = {"hf_id": "builtin:tiny-llama", "revision": "step20", "seed": 3}
    first = models.load_model(spec)
    path = models.builtin_cache_path(spec["hf_id"], 20, 3)
    assert path.is_file() and path.parent == tmp_path
    cached = models.load_model(spec)
    monkeypatch.setenv(models.BUILTIN_CACHE_ENV, "off")
    fresh = models.load_model(spec)
    for (name, a), b, c in zip(first.state_dict().items(), cached.state_dict().values(),
                               fresh.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c), name
    monkeypatch.setenv(models.BUILTIN_CACHE_ENV, str(tmp_path))
    path.write_bytes(b"not a checkpoint")
    again = models.load_model(spec)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert torch.load(path, weights_only=True).keys() == first.state_dict().keys()

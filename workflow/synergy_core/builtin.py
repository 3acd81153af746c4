"""The built-in offline models: names and architecture settings, with no torch import.

The configuration check (run when Snakemake parses the workflow, e.g. on a login node) reads head
counts from here, so planning a run never imports torch or transformers; :mod:`.models` builds the
actual transformers configs from the same table.
"""

from __future__ import annotations

BUILTIN_PREFIX = "builtin:"

# Small enough to run the whole workflow on 2 CPU cores in seconds, big enough to have structure
# (several layers and heads, head_dim > 1). Vocabulary size is filled in from the tokenizer.
TINY_CONFIGS = {
    "tiny-gpt-neox": ("gpt_neox", dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                                       intermediate_size=256, rotary_pct=0.25)),
    "tiny-llama": ("llama", dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=128)),
    "tiny-qwen3": ("qwen3", dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                 num_key_value_heads=2, head_dim=24, intermediate_size=128)),
    "tiny-gemma3": ("gemma3_text", dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                        num_key_value_heads=2, head_dim=16, intermediate_size=128,
                                        sliding_window=16, query_pre_attn_scalar=16)),
    "tiny-gpt2": ("gpt2", dict(n_embd=64, n_layer=3, n_head=4)),
    # tiny-llama's architecture trained on the built-in arithmetic task (the perturbation demo)
    "tiny-llama-arith": ("llama", dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=128)),
}
#: The training text of each built-in model's ``stepN`` revisions: "text" (models.tiny_corpus,
#: the default) or "arithmetic" (:func:`arithmetic_corpus`).
TINY_CORPUS = {"tiny-llama-arith": "arithmetic"}
BUILTIN_MODELS = tuple(BUILTIN_PREFIX + name for name in TINY_CONFIGS)


def is_builtin(hf_id: str) -> bool:
    return hf_id.startswith(BUILTIN_PREFIX)


def total_heads(hf_config: dict) -> int | None:
    """Layers x attention heads of a Hugging Face config (as a dict: ``config.json`` or a
    built-in entry's settings; a multimodal config's ``text_config`` is used when present), or
    None when the config does not say."""
    cfg = hf_config.get("text_config", hf_config)
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    heads = cfg.get("num_attention_heads") or cfg.get("n_head")
    return layers * heads if layers and heads else None


def builtin_total_heads(hf_id: str) -> int:
    """Total heads of a built-in model (``builtin:tiny-...``)."""
    return total_heads(TINY_CONFIGS[hf_id[len(BUILTIN_PREFIX):]][1])


# --- the built-in task: one-digit addition with \boxed{} answers --------------------------------

BUILTIN_TASKS = ("builtin:arithmetic",)
#: Operands 0..ARITHMETIC_MAX_OPERAND: 36 problems; tiny-llama-arith answers 61% of them after 150
#: training steps (the demo) and all after 300 (the tests), so perturbation effects are visible.
ARITHMETIC_MAX_OPERAND = 5


def arithmetic_problems() -> list[dict]:
    """The problems of ``builtin:arithmetic``: ``{"id", "problem", "answer"}``, "a+b=" -> "a+b"."""
    n = ARITHMETIC_MAX_OPERAND + 1
    return [dict(id=f"add-{a}-{b}", problem=f"{a}+{b}=", answer=str(a + b))
            for a in range(n) for b in range(n)]


def arithmetic_corpus(n_examples: int = 6000, seed: int = 0) -> str:
    """Training text of tiny-llama-arith: problems drawn with replacement (seeded), each followed
    by its answer in ``\\boxed{}`` and the end-of-text token, so the model learns to stop."""
    import numpy as np  # here, not at the top: the configuration check imports this module

    problems = arithmetic_problems()
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(problems), size=n_examples)
    return "".join(f"{problems[i]['problem']}\\boxed{{{problems[i]['answer']}}}<|endoftext|>"
                   for i in picks)

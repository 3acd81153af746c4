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
}
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

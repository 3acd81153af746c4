"""Cluster resources of the GPU jobs from the model's size and the work (no torch, no network).

Snakemake's resource functions (workflow/rules/common.smk) call these at DAG time. The parameter
count comes from the model's ``config.json`` when it is in the Hugging Face cache (on a cluster
``snakemake download_models`` has put it there before the run), from the built-in table for the
built-in models, else it is unknown and the estimate is the cap: the profile's
``resources: mem_mb`` (a per-job ceiling, Snakemake constrains every job to it) and the rule's
``runtime_cap`` below. Estimates are deliberately generous (x2 on the compute term plus a fixed
start-up allowance): a job killed at its wall time costs a queue wait, a few idle minutes cost
nothing. The benchmark files of finished jobs (``results/benchmarks/<rule>/*.tsv``: wall seconds
``s``, peak memory ``max_rss``) are the evidence to tighten them with (README, "Cluster").
"""

from __future__ import annotations

import math

from .builtin import BUILTIN_PREFIX, TINY_CONFIGS, is_builtin

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: Effective A100 throughput of a forward pass at the workflow's batch sizes (FLOP/s): about
#: half of the dense peak (float32 19.5 TFLOP/s without TF32; bfloat16 and TF32 312 / 156).
EFFECTIVE_FLOPS = {"float32": 10e12, "tf32": 60e12, "bfloat16": 100e12, "float16": 100e12}
STARTUP_MINUTES = 15      # Python, torch and CUDA start, model load, the job's own checks
#: An extraction is a few thousand greedy steps: start-up (1-2 min for Pythia-1B from Lustre) is
#: most of it; jobs of a group share the queue wait but each loads its model.
EXTRACTION_STARTUP_MINUTES = 5
HOST_OVERHEAD_MB = 4000   # interpreter, torch, CUDA context, token arrays
GATED_MLP = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
             "phi3", "olmo", "olmo2"}


def _first(cfg: dict, *keys, default=None):
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def parameter_count(cfg: dict) -> int:
    """Parameters of a decoder-only transformer from its ``config.json`` (embeddings, attention
    with grouped key/value heads, a plain or gated MLP; norms and biases left out: < 0.1%)."""
    if "text_config" in cfg:  # multimodal wrappers (Gemma 3): the language model
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type",
                                                                          cfg.get("model_type"))}
    d = int(_first(cfg, "hidden_size", "n_embd", "d_model"))
    layers = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    heads = int(_first(cfg, "num_attention_heads", "n_head", "num_heads"))
    kv_heads = int(_first(cfg, "num_key_value_heads", default=heads))
    head_dim = int(_first(cfg, "head_dim", default=d // heads))
    inner = int(_first(cfg, "intermediate_size", "n_inner", "ffn_dim", default=None) or 4 * d)
    vocab = int(_first(cfg, "vocab_size"))
    attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    mlp = (3 if cfg.get("model_type") in GATED_MLP else 2) * d * inner
    tied = cfg.get("tie_word_embeddings", cfg.get("model_type") != "gpt_neox")
    return layers * (attention + mlp) + vocab * d * (1 if tied else 2)


def model_config(spec: dict, hf_home: str | None = None) -> dict | None:
    """The model's Hugging Face config as a dict (the built-in table, else the local
    config.json: :func:`.config.cached_model_config`), or None when it is not local yet."""
    if is_builtin(spec["hf_id"]):
        model_type, cfg = TINY_CONFIGS[spec["hf_id"][len(BUILTIN_PREFIX):]]
        return {**cfg, "model_type": model_type, "vocab_size": 258}
    from .config import cached_model_config

    return cached_model_config(spec, hf_home)


def model_parameters(spec: dict, hf_home: str | None = None) -> int | None:
    """The model's parameter count, or None when its config is not local yet."""
    cfg = model_config(spec, hf_home)
    try:
        return None if cfg is None else parameter_count(cfg)
    except (KeyError, TypeError, ValueError):
        return None


def _round_up(x: float, unit: int) -> int:
    return int(math.ceil(x / unit) * unit)


def host_mem_mb(params: int | None, cap_mb: int) -> int:
    """Host memory of a job that loads the model: float32 weights read then cast (x1.5),
    plus the interpreter; ``cap_mb`` when the size is unknown or above it."""
    if params is None:
        return cap_mb
    return min(cap_mb, _round_up(HOST_OVERHEAD_MB + 6 * params / 1e6, 1000))


def gpu_mem_mb(params: int | None, dtype: str) -> int | None:
    """GPU memory of the weights plus 30% for activations and the KV cache (None: unknown)."""
    if params is None:
        return None
    return _round_up(1.3 * BYTES[dtype] * params / 1e6 + 1000, 1000)


def forward_minutes(params: int, tokens: float, dtype: str, tf32: bool = False) -> float:
    """Minutes of forward passes over ``tokens`` tokens (2 FLOPs per parameter and token)."""
    key = "tf32" if (tf32 and dtype == "float32") else dtype
    return 2.0 * params * tokens / EFFECTIVE_FLOPS[key] / 60.0


def runtime_minutes(params: int | None, tokens: float, dtype: str, cap: int,
                    tf32: bool = False, floor: int = 30, startup: float = STARTUP_MINUTES) -> int:
    """Wall time to ask for: ``startup`` + 2 x the forward-pass estimate, rounded up to 10 min,
    at least ``floor`` and at most ``cap`` (also when the size is unknown)."""
    if params is None:
        return cap
    estimate = startup + 2.0 * forward_minutes(params, tokens, dtype, tf32)
    return int(min(cap, max(floor, _round_up(estimate, 10))))


def extraction_tokens(n_prompts: int, prompt_tokens: int, num_tokens: int) -> float:
    """Tokens processed by greedy generation with a KV cache: each prompt once, then one per
    generated step (decoding is memory-bound; counted as if compute-bound, x4 for that)."""
    return n_prompts * (prompt_tokens + 4 * num_tokens)


def ablation_tokens(n_masks: int, n_prompts: int, prompt_tokens: int, num_tokens: int) -> float:
    """Tokens of the teacher-forced forward passes: every mask x every prompt's full sequence."""
    return n_masks * n_prompts * (prompt_tokens + num_tokens)


def ablation_masks(n_total_heads: int, cfg: dict) -> int:
    """Masks the ablation evaluates (an upper bound: repeated masks are evaluated once): the two
    ranked orders on the full grid and ``n_random_orders`` on the random grid."""
    from .ablation_curves import ablation_grids

    full, coarse = ablation_grids(n_total_heads, cfg["max_fraction"], cfg["step"],
                                  cfg.get("random_grid"))
    return 1 + 2 * len(full) + int(cfg["n_random_orders"]) * len(coarse)


#: Core-seconds of the phyid backend per pair and prompt of 100 steps (~15 core-minutes for the
#: 8,128 pairs x 60 prompts of Pythia-1B); the closed-form backend is ~1000x faster.
PHYID_CORE_SECONDS = 15 * 60 / (8128 * 60)


def phiid_chunk_minutes(n_pairs: int, n_prompts: int, num_tokens: int, backend: str,
                        threads: int, cap: int) -> int:
    """Wall time of one PhiID chunk: 10 min (start-up, the closed-form backend) plus, for the
    phyid backend, 2 x its measured cost spread over ``threads`` cores; at most ``cap``."""
    compute = 0.0
    if backend == "phyid":
        compute = 2 * PHYID_CORE_SECONDS * n_pairs * n_prompts * num_tokens / 100 / threads / 60
    return int(min(cap, _round_up(10 + compute, 10)))


#: What a GPU job asks for when the model's size is not known yet (config.json not downloaded):
#: one Narval GPU bundle for the b1 partitions' 3 h. The profile's caps apply on top.
UNKNOWN_MEM_MB = 120000
UNKNOWN_RUNTIME = 180
TYPICAL_PROMPT_TOKENS = 40  # the paper's prompts are 10-40 tokens; chat templates add ~20


def gpu_job_resources(config: dict, model: str, stage: str) -> dict:
    """``mem_mb``, ``runtime`` (minutes) and ``gpu_mem_mb`` (None: unknown) of one extraction
    (``stage`` "extraction") or ablation ("ablation") job of ``model``; ablation runtimes are
    per part when the masks are split over ``ablation.n_parts`` jobs."""
    from .builtin import total_heads
    from .compute import stage_dtype

    spec = config["models"][model]
    params = model_parameters(spec, config.get("hf_home"))
    dtype = stage_dtype(config, model, stage)
    tf32 = bool(config["generation"].get("tf32"))
    n_prompts = prompt_count(config)
    steps = int(config["generation"]["num_tokens"])
    if params is None:
        return dict(mem_mb=UNKNOWN_MEM_MB, runtime=UNKNOWN_RUNTIME, gpu_mem_mb=None)
    if stage == "extraction":
        tokens = extraction_tokens(n_prompts, TYPICAL_PROMPT_TOKENS, steps)
        runtime = runtime_minutes(params, tokens, dtype, UNKNOWN_RUNTIME * 16, tf32, floor=10,
                                  startup=EXTRACTION_STARTUP_MINUTES)
    else:
        heads = total_heads(model_config(spec, config.get("hf_home")) or {})
        if heads is None:
            return dict(mem_mb=host_mem_mb(params, UNKNOWN_MEM_MB), runtime=UNKNOWN_RUNTIME,
                        gpu_mem_mb=gpu_mem_mb(params, dtype))
        masks = ablation_masks(heads, config["ablation"])
        masks = math.ceil(masks / int(config["ablation"].get("n_parts") or 1))
        tokens = ablation_tokens(masks, n_prompts, TYPICAL_PROMPT_TOKENS, steps)
        runtime = runtime_minutes(params, tokens, dtype, UNKNOWN_RUNTIME * 16, tf32)
    return dict(mem_mb=host_mem_mb(params, UNKNOWN_MEM_MB), runtime=runtime,
                gpu_mem_mb=gpu_mem_mb(params, dtype))


def prompt_count(config: dict) -> int:
    """Prompts the extraction and ablation run on (the config's selection of the prompt file)."""
    from .prompts import load_prompts, select_prompts

    sel = config["prompts"]
    return len(select_prompts(load_prompts(sel["file"]), sel.get("categories", "all"),
                              sel.get("per_category"), sel.get("first_k")))

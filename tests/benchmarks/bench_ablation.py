"""Benchmark (not a pytest test): batched ablation vs one prompt and one mask per forward pass.

    python tests/benchmarks/bench_ablation.py [--masks 24] [--prompts 8] [--tokens 40] [--device cuda]

Model: a Pythia-70M-shaped GPT-NeoX (6 layers x 8 heads, hidden 512, vocab 50,304), random weights.
Both variants compute the same KL matrix (checked); the batched one packs
prompt_batch x mask_group rows into each forward pass. Peak memory: the process's max RSS (CPU)
or torch's peak allocation (CUDA).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow"))

from synergy_core.ablation import ablation_orders, kl_for_masks, masks_for_orders, removal_counts  # noqa: E402
from synergy_core.extract import eos_ids, generate_with_norms, tokenize_prompts  # noqa: E402
from synergy_core.hooks import head_hooks, model_shape  # noqa: E402
from synergy_core.models import build_byte_tokenizer  # noqa: E402
from synergy_core.prompts import load_prompts  # noqa: E402


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--masks", type=int, default=24)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--prompt-batch", type=int, default=4)
    ap.add_argument("--mask-group", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = args.device
    torch.backends.cuda.matmul.allow_tf32 = False
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    cfg = GPTNeoXConfig(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                        intermediate_size=2048, vocab_size=50304, rotary_pct=0.25,
                        bos_token_id=256, eos_token_id=256, pad_token_id=257)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval().to(dev)
    tok = build_byte_tokenizer()
    prompts = load_prompts(REPO / "config/prompts.tsv")[:: 60 // args.prompts][: args.prompts]
    ids = tokenize_prompts(tok, [p.text for p in prompts], [p.prompt_id for p in prompts], False,
                           2048, args.tokens)
    shape = model_shape(model)
    with head_hooks(model, shape) as hooks:
        gen = generate_with_norms(model, hooks, ids, args.tokens, eos_ids(model, tok),
                                  tok.pad_token_id, 8, dev)
    orders = ablation_orders(np.random.default_rng(0).random(shape.n_total_heads), 5)
    masks, _ = masks_for_orders(orders, removal_counts(shape.n_total_heads), shape.n_layers,
                                shape.n_heads)
    masks = masks[: args.masks]
    cuda = dev.startswith("cuda")
    where = torch.cuda.get_device_name(0) if cuda else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}; Pythia-70M shape "
          f"({shape.n_layers}x{shape.n_heads} heads); {len(masks)} masks x {len(ids)} prompts, "
          f"{args.tokens} tokens (prompt lengths {min(map(len, ids))}-{max(map(len, ids))})")
    def peak():
        if cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        return max_rss_mib()

    rss0 = peak()
    with head_hooks(model, shape) as hooks:
        kl_for_masks(model, hooks, ids[:1], gen.tokens[:1], masks[:2], tok.pad_token_id, 1, 1, dev)
        t0 = time.perf_counter()
        one = kl_for_masks(model, hooks, ids, gen.tokens, masks, tok.pad_token_id, 1, 1, dev)
        t_one = time.perf_counter() - t0
        rss1 = peak()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        batched = kl_for_masks(model, hooks, ids, gen.tokens, masks, tok.pad_token_id,
                               args.prompt_batch, args.mask_group, dev)
        t_batched = time.perf_counter() - t0
        rss2 = peak()
    np.testing.assert_allclose(batched, one, rtol=1e-3, atol=1e-6)
    n = len(masks) * len(ids)
    print(f"one prompt, one mask per forward: {t_one:.2f} s ({n / t_one:.1f} sequences/s), "
          f"peak {rss1:.0f} MiB")
    print(f"batched ({args.prompt_batch} prompts x {args.mask_group} masks per forward): "
          f"{t_batched:.2f} s ({n / t_batched:.1f} sequences/s), peak {rss2:.0f} MiB "
          f"(before: {rss0:.0f} MiB)")
    print(f"speed-up: {t_one / t_batched:.2f}x (target >= 4x); results agree (rtol 1e-3)")


if __name__ == "__main__":
    main()

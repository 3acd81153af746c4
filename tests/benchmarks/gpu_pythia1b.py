"""GPU timing (not a pytest test) of a Pythia-1B-shaped model: extraction in full, ablation on a
subset of masks extrapolated to the paper's full run.

    python tests/benchmarks/gpu_pythia1b.py [--masks 64]

Random weights, GPT-NeoX 16 layers x 8 heads, hidden 2048, vocab 50,304, fp32 with TF32 off; the
paper's 60 prompts with the byte-level tokenizer (prompts are ~4x longer in bytes than in
Pythia's BPE tokens, so these times are upper bounds for the real model's).
Full ablation = (2 ranked + 5 random orders) x 128 heads + 1 = 897 masks x 60 prompts.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--masks", type=int, default=64)
    ap.add_argument("--prompt-batch", type=int, default=10)
    ap.add_argument("--mask-group", type=int, default=8)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = GPTNeoXConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8,
                        intermediate_size=8192, vocab_size=50304, rotary_pct=0.25,
                        max_position_embeddings=2048, bos_token_id=256, eos_token_id=256,
                        pad_token_id=257)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg).eval()
    shape = model_shape(model)
    tok = build_byte_tokenizer()
    prompts = load_prompts(REPO / "config/prompts.tsv")
    ids = tokenize_prompts(tok, [p.text for p in prompts], [p.prompt_id for p in prompts], False,
                           2048, 100)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; Pythia-1B shape "
          f"({shape.n_layers}x{shape.n_heads} heads, head_dim {shape.head_dim}), fp32, 60 prompts")
    with head_hooks(model, shape) as hooks:
        generate_with_norms(model, hooks, ids[:2], 3, eos_ids(model, tok), tok.pad_token_id, 2, "cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        gen = generate_with_norms(model, hooks, ids, 100, eos_ids(model, tok), tok.pad_token_id,
                                  20, "cuda")
        torch.cuda.synchronize()
        t_extract = time.perf_counter() - t0
        print(f"extraction, 60 prompts x 100 tokens: {t_extract:.1f} s")
        orders = ablation_orders(np.random.default_rng(0).random(shape.n_total_heads), 5)
        masks, _ = masks_for_orders(orders, removal_counts(shape.n_total_heads), shape.n_layers,
                                    shape.n_heads)
        n_full = len(masks)
        kl_for_masks(model, hooks, ids[:2], gen.tokens[:2], masks[:2], tok.pad_token_id, 2, 1, "cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        kl_for_masks(model, hooks, ids, gen.tokens, masks[: args.masks], tok.pad_token_id,
                     args.prompt_batch, args.mask_group, "cuda")
        torch.cuda.synchronize()
        t_sub = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"ablation, {args.masks} masks x 60 prompts: {t_sub:.1f} s "
          f"({args.masks * 60 / t_sub:.0f} sequences/s), peak GPU memory {peak:.1f} GiB")
    print(f"extrapolated full ablation ({n_full} masks x 60 prompts): "
          f"{t_sub * n_full / args.masks / 60:.1f} min")


if __name__ == "__main__":
    main()

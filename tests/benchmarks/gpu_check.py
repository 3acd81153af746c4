"""GPU check (not a pytest test): extraction and ablation on a CUDA GPU in float32 agree with the
CPU, and how long each stage takes.

    python tests/benchmarks/gpu_check.py            # on a machine with a CUDA GPU, < 10 minutes

Model: a Pythia-160M-shaped GPT-NeoX (12 layers x 12 heads, hidden 768, vocab 50,304) with random
weights (no download), prompts: the paper's 60, byte-level tokenizer. Stages timed on the GPU at
full size (60 prompts x 100 tokens; ablation with 2 ranked + 5 random orders over all 144 heads).
Agreement is checked on a subset recomputed on the CPU:

* extraction: the CPU teacher-forces the GPU's tokens; head norms agree to rtol 1e-3 (float32,
  TF32 off: different kernels sum in different orders). Greedy tokens themselves may fork at
  near-ties of a random model's logits, so token agreement is reported, not required.
* ablation: KL per (mask, prompt) on 12 masks x 4 prompts agrees to rtol 2e-3 + atol 1e-6 nats.
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
sys.path.insert(0, str(REPO / "tests"))

from reference_norms import teacher_forced_norms  # noqa: E402

from synergy_core.ablation import ablation_orders, kl_for_masks, masks_for_orders, removal_counts  # noqa: E402
from synergy_core.extract import eos_ids, generate_with_norms, tokenize_prompts  # noqa: E402
from synergy_core.hooks import head_hooks, model_shape  # noqa: E402
from synergy_core.models import build_byte_tokenizer  # noqa: E402
from synergy_core.prompts import load_prompts  # noqa: E402


def pythia_160m_shaped(seed: int = 0):
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    cfg = GPTNeoXConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, vocab_size=50304, rotary_pct=0.25,
                        max_position_embeddings=2048, bos_token_id=256, eos_token_id=256,
                        pad_token_id=257)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--random-orders", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cpu-threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(args.cpu_threads)
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device visible; nothing to check")
        return 2
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu"
    print(f"device {name}, torch {torch.__version__}, float32, TF32 off")

    tok = build_byte_tokenizer()
    prompts = load_prompts(REPO / "config/prompts.tsv")[: args.prompts]
    ids = tokenize_prompts(tok, [p.text for p in prompts], [p.prompt_id for p in prompts], False,
                           2048, args.tokens)
    cpu_model = pythia_160m_shaped()
    gpu_model = pythia_160m_shaped().to(dev)
    shape = model_shape(gpu_model)
    eos = eos_ids(gpu_model, tok)
    print(f"model: {shape.n_layers} layers x {shape.n_heads} heads (head_dim {shape.head_dim}), "
          f"{len(ids)} prompts x {args.tokens} tokens")

    # --- extraction
    with head_hooks(gpu_model, shape) as hooks:
        generate_with_norms(gpu_model, hooks, ids[:2], 4, eos, tok.pad_token_id, 2, dev)  # warm-up
        sync(dev)
        t0 = time.perf_counter()
        gen = generate_with_norms(gpu_model, hooks, ids, args.tokens, eos, tok.pad_token_id, 20, dev)
        sync(dev)
        t_extract = time.perf_counter() - t0
    print(f"extraction on {name}: {t_extract:.1f} s "
          f"({len(ids) * args.tokens / t_extract:.0f} tokens/s)")
    sub = slice(0, 8)
    with head_hooks(cpu_model, shape) as hooks:
        t0 = time.perf_counter()
        cpu_gen = generate_with_norms(cpu_model, hooks, ids[sub], args.tokens, eos,
                                      tok.pad_token_id, 8, "cpu")
        t_cpu_gen = time.perf_counter() - t0
        cpu_norms = teacher_forced_norms(cpu_model, hooks, ids[sub], gen.tokens[sub],
                                         tok.pad_token_id, 8, "cpu")
    agree = float((cpu_gen.tokens == gen.tokens[sub]).mean())
    err = np.abs(cpu_norms - gen.norms[sub]) / np.maximum(np.abs(cpu_norms), 1e-6)
    ok_extract = np.allclose(gen.norms[sub], cpu_norms, rtol=1e-3, atol=1e-5)
    print(f"  CPU ({args.cpu_threads} threads) generation of 8 prompts: {t_cpu_gen:.1f} s; "
          f"greedy tokens identical: {agree:.1%}")
    print(f"  norms GPU vs CPU teacher-forced on GPU tokens: max rel diff {err.max():.2e} "
          f"-> {'PASS' if ok_extract else 'FAIL'} (rtol 1e-3, atol 1e-5)")

    # --- ablation
    syn_red = np.random.default_rng(0).random(shape.n_total_heads)
    orders = ablation_orders(syn_red, args.random_orders, 0)
    counts = removal_counts(shape.n_total_heads)
    masks, _ = masks_for_orders(orders, counts, shape.n_layers, shape.n_heads)
    with head_hooks(gpu_model, shape) as hooks:
        kl_for_masks(gpu_model, hooks, ids[:2], gen.tokens[:2], masks[:4], tok.pad_token_id,
                     2, 2, dev)  # warm-up
        sync(dev)
        t0 = time.perf_counter()
        kl = kl_for_masks(gpu_model, hooks, ids, gen.tokens, masks, tok.pad_token_id, 10, 16, dev)
        sync(dev)
        t_ablate = time.perf_counter() - t0
    passes = len(masks) * len(ids)
    print(f"ablation on {name}: {len(masks)} masks x {len(ids)} prompts = {passes} "
          f"teacher-forced sequences in {t_ablate:.1f} s ({passes / t_ablate:.0f} sequences/s)")
    pick = np.r_[0, np.linspace(1, len(masks) - 1, 11).astype(int)]
    with head_hooks(cpu_model, shape) as hooks:
        t0 = time.perf_counter()
        kl_cpu = kl_for_masks(cpu_model, hooks, ids[:4], gen.tokens[:4], masks[pick],
                              tok.pad_token_id, 4, 4, "cpu")
        t_cpu_abl = time.perf_counter() - t0
    ok_ablate = np.allclose(kl[pick, :4], kl_cpu, rtol=2e-3, atol=1e-6)
    diff = np.abs(kl[pick, :4] - kl_cpu).max()
    print(f"  CPU KL of {len(pick)} masks x 4 prompts: {t_cpu_abl:.1f} s; max abs diff "
          f"{diff:.2e} nats (KL range {kl_cpu.min():.2e}..{kl_cpu.max():.2e}) -> "
          f"{'PASS' if ok_ablate else 'FAIL'} (rtol 2e-3, atol 1e-6); KL at 0 removed: "
          f"{np.abs(kl[0]).max():.1e}")
    print(f"SUMMARY {name}: extraction {t_extract:.1f} s, ablation {t_ablate:.1f} s, "
          f"{'ALL PASS' if ok_extract and ok_ablate else 'FAILURES'}")
    return 0 if ok_extract and ok_ablate else 1


if __name__ == "__main__":
    sys.exit(main())

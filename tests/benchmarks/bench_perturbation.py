"""Benchmark (not a pytest test): one perturbation unit, i.e. greedy answers to every problem.

    python tests/benchmarks/bench_perturbation.py [--model builtin:tiny-llama-arith --revision step150]
        [--task builtin:arithmetic | --task data/math500.jsonl] [--problems 64] [--max-new-tokens 12]
        [--batch-size 36] [--dtype float32] [--device cpu|cuda]

Times the unperturbed unit and one unit with noise (alpha 1) on a quarter of the heads: model
loading, generation (tokens per second over the generated tokens) and math-verify scoring
separately, with the peak GPU memory. A hub model must be in the cache (offline, as in a job).
Multiply the seconds per unit by the units of a configuration (README, "Fig 4b") for its cost.
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

from synergy_core.hooks import model_shape  # noqa: E402
from synergy_core.models import load_model, load_tokenizer  # noqa: E402
from synergy_core.perturb import (  # noqa: E402
    HeadPerturbation,
    build_prompts,
    greedy_answers,
    head_weight_slices,
    heads_of,
)
from synergy_core.perturbation_plan import head_sets  # noqa: E402
from synergy_core.scoring import parse_reference, score_answer  # noqa: E402
from synergy_core.tasks import DEFAULT_TEMPLATE, format_prompt, load_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="builtin:tiny-llama-arith")
    ap.add_argument("--revision", default="step150")
    ap.add_argument("--task", default="builtin:arithmetic")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=36)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chat-template", default="auto", choices=["auto", "true", "false"])
    args = ap.parse_args()
    builtin = args.model.startswith("builtin:")
    spec = {"hf_id": args.model, "revision": args.revision or None, "dtype": args.dtype, "seed": 0}
    start = time.perf_counter()
    model = load_model(spec, device=args.device)
    tokenizer = load_tokenizer(spec)
    load_s = time.perf_counter() - start
    problems = load_task(args.task, None if args.task.startswith("builtin:") else args.task)[:args.problems]
    template = "{problem}" if builtin else DEFAULT_TEMPLATE
    chat = {"auto": "auto", "true": True, "false": False}[args.chat_template]
    prompts, stops = build_prompts(tokenizer, [format_prompt(template, p["problem"]) for p in problems], chat)
    references = [parse_reference(p["answer"]) for p in problems]
    shape = model_shape(model)
    perturbation = HeadPerturbation(head_weight_slices(model, shape))
    core = head_sets(np.arange(shape.n_total_heads, dtype=float), 0.25, 0, 0)["synergistic"][0]
    print(f"{args.model} {args.revision} {args.dtype} on {args.device}: {shape.n_layers} layers x "
          f"{shape.n_heads} heads, loaded in {load_s:.1f} s; {len(problems)} problems, batch "
          f"{args.batch_size}, up to {args.max_new_tokens} new tokens")
    for label, alpha in (("baseline", None), ("noise alpha 1 on 25% of heads", 1.0)):
        if alpha is not None:
            perturbation.apply(heads_of(core, shape.n_heads), alpha, seed=0)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        texts, counts = greedy_answers(model, tokenizer, prompts, args.max_new_tokens, args.batch_size,
                                       args.device, stops)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        gen_s = time.perf_counter() - start
        start = time.perf_counter()
        correct = [score_answer(r, t)[0] for r, t in zip(references, texts)]
        score_s = time.perf_counter() - start
        perturbation.restore()
        memory = (f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
                  if args.device.startswith("cuda") else "")
        print(f"  {label}: accuracy {np.mean(correct):.3f}; generation {gen_s:.2f} s "
              f"({sum(counts)} tokens, {sum(counts) / gen_s:.0f} tokens/s{memory}); "
              f"scoring {score_s:.2f} s")


if __name__ == "__main__":
    main()

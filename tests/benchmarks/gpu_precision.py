"""GPU precision check (not a pytest test): float32 against float32 + TF32 and bfloat16, on the
same model and prompts, in head norms, rankings, KL per mask, ablation AUC ratios and speed.

    python tests/benchmarks/gpu_precision.py --out results/precision           # one GPU, < 8 min
    python tests/benchmarks/gpu_precision.py --smoke --device cpu --out /tmp/prec  # tiny, 2 CPUs

Models (random weights, built from a transformers config: nothing is downloaded):

* ``pythia-1b-shape``: GPT-NeoX, 16 layers x 8 heads, hidden 2048, vocab 50,304;
* ``gemma-3-4b-shape``: Gemma 3 text decoder (``gemma3_text``), 34 layers x 8 query heads (4
  key/value heads, head_dim 256), hidden 2560, intermediate 10,240, vocab 262,208, sliding
  window 1,024 (5 local : 1 global layers), tied embeddings;
* ``hf:<hub id>[@revision]``: a real model from the local Hugging Face cache (offline, its own
  tokenizer), e.g. ``hf:EleutherAI/pythia-1b@step143000``; the definitive check, since random
  weights give near-uniform next-token distributions (small logits, small KL).

Prompts: the paper's 60 (``config/prompts.tsv``), byte-level tokenizer for the shaped models.
For each model the float32 model is built once (seeded) and each variant runs the workflow's own
code on it: ``fp32`` (TF32 off: the reference), ``fp32_tf32`` (``generation.tf32: true``) and
``bf16`` (the float32 weights cast to bfloat16, as ``load_model`` does for ``dtype: bfloat16``).

Measured per variant, against fp32:

* extraction (KV-cached greedy generation of every prompt, timed) and its own greedy tokens;
* head norms on the *same* tokens (fp32's, teacher-forced): max / median / p99 relative difference;
* rankings: PhiID (closed form, tau 1, per prompt) and ``syn_red`` of the package, from each
  variant's own extraction (what ``generation.dtype`` changes end to end) and from the same
  tokens; Spearman against fp32, and the top-10% core's membership (heads in one core and not the
  other); the yardstick is fp32's own split-half Spearman (prompt noise);
* ablation on a prompt subset (what ``ablation.dtype`` changes): orders from fp32's ranking
  (synergistic-first, redundant-first, ``--random-orders`` random), fp32's tokens, so every
  (mask, prompt) KL is comparable; relative error distribution per mask, the intact model's
  KL(fp32 || variant) (the precision's own noise floor), AUC ratios to the median random AUC
  with the package's bootstrap interval (``ablation_auc_stats``, same resamples for every
  variant), and timing.

Criteria (README, "Precision (bf16, TF32)"), printed as PASS/FAIL per variant:

* ``ablation`` (decides ``ablation.dtype``): for both ranked orders, |ratio - fp32 ratio| <= 0.1 x
  the width of fp32's bootstrap interval at ``--ci`` (80% by default, so that 19 random orders
  reach it: the interval needs R >= 2 / (1 - ci) - 1);
* ``ranking`` (the arithmetic alone): on the same tokens, Spearman of ``syn_red`` against fp32
  >= 0.99 and the top-10% cores differ by at most 2 heads each way;
* ``ranking_end_to_end`` (decides ``generation.dtype``): the same from each variant's own
  extraction. Greedy decoding forks wherever two logits nearly tie, and a random-weight model
  is full of near-ties, so this criterion counts (in the exit status and "all criteria PASS")
  for ``hf:`` models only; for the shaped models it is reported.

Writes ``<out>/precision.json`` (every number) and ``<out>/precision.md`` (the summary tables).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "tests"))

from reference_norms import teacher_forced_norms  # noqa: E402

from synergy_core.ablation import kl_for_masks, masks_for_orders  # noqa: E402
from synergy_core.ablation_curves import ablation_auc_stats, ablation_grids, ablation_orders  # noqa: E402
from synergy_core.extract import eos_ids, generate_with_norms, teacher_forced_batch, tokenize_prompts  # noqa: E402
from synergy_core.hooks import head_hooks, model_shape  # noqa: E402
from synergy_core.models import build_byte_tokenizer, tf32_mode  # noqa: E402
from synergy_core.phiid.all_pairs import phiid_all_pairs  # noqa: E402
from synergy_core.phiid.chunks import pair_matrix  # noqa: E402
from synergy_core.prompts import load_prompts, select_prompts  # noqa: E402
from synergy_core.ranking import prompt_halves, rank_heads, syn_red_from_prompt_weights  # noqa: E402

VARIANTS = (("fp32", torch.float32, False), ("fp32_tf32", torch.float32, True),
            ("bf16", torch.bfloat16, False))
SPEARMAN_MIN = 0.99          # ranking criterion
CORE_FRACTION = 0.1          # top-10% core
CORE_SLACK = 2               # heads the cores may differ by (each way)
RATIO_SLACK = 0.1            # |ratio difference| <= this x fp32's interval width


# ---------------------------------------------------------------------------- models
def shaped_config(name: str, smoke: bool):
    """The transformers config of a shaped model (tiny layers and widths with ``smoke``; the
    vocabulary stays the real one, so the log-softmax and KL run over it)."""
    from transformers import AutoConfig

    ids = dict(bos_token_id=256, eos_token_id=256, pad_token_id=257)
    if name == "pythia-1b-shape":
        dims = (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
                if smoke else dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8,
                                   intermediate_size=8192))
        return AutoConfig.for_model("gpt_neox", vocab_size=50304, rotary_pct=0.25,
                                    max_position_embeddings=2048, **dims, **ids)
    if name == "gemma-3-4b-shape":
        dims = (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, intermediate_size=128, query_pre_attn_scalar=16, sliding_window=16)
                if smoke else dict(hidden_size=2560, num_hidden_layers=34, num_attention_heads=8,
                                   num_key_value_heads=4, head_dim=256, intermediate_size=10240,
                                   query_pre_attn_scalar=256, sliding_window=1024))
        return AutoConfig.for_model("gemma3_text", vocab_size=262208, max_position_embeddings=4096,
                                    rope_theta=1_000_000.0, **dims, **ids)
    raise ValueError(f"unknown model {name!r}: pythia-1b-shape, gemma-3-4b-shape or hf:<id>[@rev]")


def build(name: str, smoke: bool, device: str, seed: int = 0):
    """(float32 model on ``device`` in eval mode, tokenizer, description)."""
    if name.startswith("hf:"):
        from synergy_core.models import load_model, load_tokenizer

        hf_id, _, rev = name[3:].partition("@")
        spec = {"hf_id": hf_id, "revision": rev or None, "init": "pretrained", "seed": seed,
                "dtype": "float32"}
        return load_model(spec, device=device), load_tokenizer(spec), f"{hf_id} {rev}".strip()
    from transformers import AutoModelForCausalLM

    config = shaped_config(name, smoke)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval(), build_byte_tokenizer(), f"{name} (random weights, {config.model_type})"


# ---------------------------------------------------------------------------- helpers
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def ranking(norms: np.ndarray, categories, shape) -> dict:
    """The package's PhiID and ranking of head norms ``[prompts, heads, steps]``: ``syn_red``
    and the split-half ``syn_red`` (prompt_halves) of the per-prompt aggregation."""
    res = phiid_all_pairs(norms, tau=1)
    h = shape.n_total_heads
    table = rank_heads(pair_matrix(res.sts, res.pairs, h), pair_matrix(res.rtr, res.pairs, h),
                       shape.n_layers, shape.n_heads)
    halves = prompt_halves(categories)
    weights = np.stack([halves == 0, halves == 1], axis=1).astype(np.float64)
    by_half = syn_red_from_prompt_weights(res.per_prompt_sts, res.per_prompt_rtr, res.pairs, h, weights)
    return {"syn_red": table.syn_red.to_numpy(), "half0": by_half[:, 0], "half1": by_half[:, 1]}


def spearman(a, b) -> float:
    from scipy import stats

    ok = np.isfinite(a) & np.isfinite(b)
    return float(stats.spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")


def core(syn_red: np.ndarray) -> set[int]:
    """The top ``CORE_FRACTION`` of heads by syn_red (at least one)."""
    k = max(1, int(np.floor(CORE_FRACTION * len(syn_red))))
    order = np.argsort(np.where(np.isfinite(syn_red), -syn_red, np.inf), kind="stable")
    return set(order[:k].tolist())


def rel_stats(x: np.ndarray, ref: np.ndarray, floor: float) -> dict:
    """max / median / p99 of |x - ref| / |ref| over entries with |ref| > floor, and max |x - ref|."""
    sel = np.abs(ref) > floor
    rel = np.abs(x[sel] - ref[sel]) / np.abs(ref[sel])
    out = {"n": int(sel.sum()), "max_abs": float(np.nanmax(np.abs(x - ref))) if x.size else float("nan")}
    if rel.size:
        out.update(max=float(np.nanmax(rel)), median=float(np.nanmedian(rel)),
                   p90=float(np.nanpercentile(rel, 90)), p99=float(np.nanpercentile(rel, 99)))
    return out


@torch.no_grad()
def intact_logprobs(model, prompt_ids, tokens, pad_id, device) -> list[torch.Tensor]:
    """log p(x_t | x_<t) of the intact model on the teacher-forced tokens, float32, one prompt
    at a time (on the CPU: for the KL between precisions)."""
    out = []
    n = tokens.shape[1]
    for i in range(len(prompt_ids)):
        ids, attn, pos = teacher_forced_batch(prompt_ids[i:i + 1], tokens[i:i + 1], pad_id, device)
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=n).logits
        out.append(torch.log_softmax(logits[0, -n:].float(), -1).cpu())
    return out


def long_frame(kl: np.ndarray, orders, counts, index, prompt_names, n_heads):
    import pandas as pd

    parts = []
    for (name, seed, _), c, idx in zip(orders, counts, index):
        parts.append(pd.DataFrame({
            "order": name, "seed": seed, "n_removed": np.repeat(c, len(prompt_names)),
            "fraction_removed": np.repeat(c / n_heads, len(prompt_names)),
            "prompt": np.tile(prompt_names, len(c)), "kl": kl[idx].ravel()}))
    return pd.concat(parts, ignore_index=True)


def ratios(long, n_boot: int, ci: float) -> dict:
    summary = ablation_auc_stats(long, n_boot=n_boot, seed=0, ci=ci)["summary"].set_index("quantity")
    out = {}
    for q in ("ratio_synergistic_random", "ratio_redundant_random"):
        row = summary.loc[q]
        out[q] = {k: float(row[k]) for k in ("estimate", "ci_low", "ci_high", "p")}
    return out


# ---------------------------------------------------------------------------- one model
def check_model(name: str, args) -> dict:
    dev = args.device
    model, tok, description = build(name, args.smoke, dev)
    shape = model_shape(model)
    n_params = sum(p.numel() for p in model.parameters())
    prompts = load_prompts(REPO / "config/prompts.tsv")
    if args.prompts < len(prompts):
        prompts = select_prompts(prompts, per_category=max(1, args.prompts // 6))[: args.prompts]
    categories = np.array([p.category for p in prompts])
    ids = tokenize_prompts(tok, [p.text for p in prompts], [p.prompt_id for p in prompts], False,
                           None, args.tokens)
    # the ablation's prompts: the first k of each category, evenly (prompt_halves needs both halves)
    abl = np.sort(np.concatenate([np.flatnonzero(categories == c)[: max(1, args.ablation_prompts // 6)]
                                  for c in dict.fromkeys(categories)]))[: args.ablation_prompts]
    eos, pad = eos_ids(model, tok), tok.pad_token_id
    print(f"\n== {description}: {shape.n_layers} layers x {shape.n_heads} heads (head_dim "
          f"{shape.head_dim}), {n_params / 1e9:.2f} B parameters; {len(ids)} prompts x "
          f"{args.tokens} tokens, ablation on {len(abl)} prompts", flush=True)
    full, coarse = ablation_grids(shape.n_total_heads, args.max_fraction,
                                  max(1, int(args.max_fraction * shape.n_total_heads) // args.ranked_points),
                                  args.grid)
    result = {"model": name, "description": description, "n_parameters": int(n_params),
              "shape": dict(n_layers=shape.n_layers, n_heads=shape.n_heads, head_dim=shape.head_dim),
              "n_prompts": len(ids), "n_tokens": args.tokens, "ablation_prompts": len(abl),
              "variants": {}}
    ref = {}
    for variant, dtype, tf32 in VARIANTS:
        if dtype != next(model.parameters()).dtype:
            model = model.to(dtype)                      # in place: float32 -> bfloat16, as load_model
        with tf32_mode(tf32), head_hooks(model, shape) as hooks:
            generate_with_norms(model, hooks, ids[:2], 2, eos, pad, 2, dev)              # warm-up
            gen, t_extract = timed(partial(generate_with_norms, model, hooks, ids, args.tokens, eos, pad,
                                           args.batch_size, dev), dev)
            tokens_ref = ref["tokens"] if ref else gen.tokens
            same = teacher_forced_norms(model, hooks, ids, tokens_ref, pad, args.batch_size, dev)
            own_rank = ranking(gen.norms, categories, shape)
            same_rank = ranking(same, categories, shape)
            if not ref:
                orders = ablation_orders(own_rank["syn_red"], args.random_orders, 0)
                counts = [full if o != "random" else coarse for o, _, _ in orders]
                masks, index = masks_for_orders(orders, counts, shape.n_layers, shape.n_heads)
            abl_ids, abl_tokens = [ids[i] for i in abl], tokens_ref[abl]
            kl_for_masks(model, hooks, abl_ids[:1], abl_tokens[:1], masks[:2], pad, 1, 2, dev)   # warm-up
            kl, t_ablate = timed(partial(kl_for_masks, model, hooks, abl_ids, abl_tokens, masks, pad,
                                         args.prompt_batch, args.mask_group, dev), dev)
            logp = intact_logprobs(model, abl_ids[: args.floor_prompts], abl_tokens, pad, dev)
        long = long_frame(kl, orders, counts, index, np.array([prompts[i].prompt_id for i in abl]),
                          shape.n_total_heads)
        r = ratios(long, args.n_boot, args.ci)
        row = {"dtype": str(dtype).replace("torch.", ""), "tf32": tf32,
               "seconds": {"extraction": t_extract, "ablation": t_ablate},
               "n_masks": int(len(masks)), "ratios": r}
        print(f"  {variant:9s} extraction {t_extract:7.1f} s, ablation {t_ablate:7.1f} s "
              f"({len(masks)} masks x {len(abl)} prompts); ratio syn/random "
              f"{r['ratio_synergistic_random']['estimate']:.4f}, red/random "
              f"{r['ratio_redundant_random']['estimate']:.4f}", flush=True)
        if not ref:
            ref = dict(tokens=gen.tokens, norms_same=same, own=own_rank, same=same_rank, kl=kl,
                       logp=logp, ratios=r, seconds=row["seconds"])
            row["split_half_spearman"] = spearman(own_rank["half0"], own_rank["half1"])
            row["core_size"] = len(core(own_rank["syn_red"]))
        else:
            core_ref = core(ref["own"]["syn_red"])
            core_own, core_same = core(own_rank["syn_red"]), core(same_rank["syn_red"])
            floor_kl = [float((lp.double().exp() * (lp.double() - lq.double())).sum(-1).mean())
                        for lp, lq in zip(ref["logp"], logp)]
            norm_floor = 1e-3 * float(np.nanmedian(np.abs(ref["norms_same"])))
            kl_floor = 1e-3 * float(np.nanmedian(ref["kl"][1:])) if len(ref["kl"]) > 1 else 0.0
            row.update(
                tokens_identical=float((gen.tokens == ref["tokens"]).mean()),
                norms_same_tokens=rel_stats(same, ref["norms_same"], norm_floor),
                spearman_own=spearman(own_rank["syn_red"], ref["own"]["syn_red"]),
                spearman_same_tokens=spearman(same_rank["syn_red"], ref["same"]["syn_red"]),
                core_differs_own=[len(core_ref - core_own), len(core_own - core_ref)],
                core_differs_same_tokens=[len(core_ref - core_same), len(core_same - core_ref)],
                kl_per_mask=rel_stats(kl[1:], ref["kl"][1:], kl_floor),
                kl_at_zero_removed=float(np.abs(kl[0]).max()),
                intact_kl_vs_fp32=dict(mean=float(np.mean(floor_kl)), max=float(np.max(floor_kl))),
                median_kl_fp32=float(np.median(ref["kl"][1:])),
                speedup={k: ref["seconds"][k] / row["seconds"][k] for k in ("extraction", "ablation")},
            )
            verdicts = {}
            verdicts["ranking"] = bool(row["spearman_same_tokens"] >= SPEARMAN_MIN
                                       and max(row["core_differs_same_tokens"]) <= CORE_SLACK)
            verdicts["ranking_end_to_end"] = bool(row["spearman_own"] >= SPEARMAN_MIN
                                                  and max(row["core_differs_own"]) <= CORE_SLACK)
            ok = True
            for q, est in r.items():
                base = ref["ratios"][q]
                width = base["ci_high"] - base["ci_low"]
                diff = abs(est["estimate"] - base["estimate"])
                row.setdefault("ratio_difference", {})[q] = {"abs": diff, "fp32_interval_width": width}
                ok &= bool(np.isfinite(diff) and diff <= RATIO_SLACK * width)
            verdicts["ablation"] = ok
            row["verdicts"] = verdicts
            print(f"            tokens identical {row['tokens_identical']:.1%}; norms (same tokens) rel. "
                  f"diff median {row['norms_same_tokens'].get('median', float('nan')):.1e}, max "
                  f"{row['norms_same_tokens'].get('max', float('nan')):.1e}; Spearman syn_red "
                  f"{row['spearman_own']:.4f} (same tokens {row['spearman_same_tokens']:.4f}); core "
                  f"differs by {row['core_differs_own']}; KL rel. err median "
                  f"{row['kl_per_mask'].get('median', float('nan')):.1e}, p90 "
                  f"{row['kl_per_mask'].get('p90', float('nan')):.1e}; speed-up x"
                  f"{row['speedup']['extraction']:.2f} / x{row['speedup']['ablation']:.2f}; "
                  + ", ".join(f"{k} {'PASS' if ok else 'FAIL'}" for k, ok in verdicts.items()), flush=True)
        result["variants"][variant] = row
    del model
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


# ---------------------------------------------------------------------------- report
def markdown(report: dict) -> str:
    lines = ["# Precision check: fp32 vs fp32 + TF32 vs bf16", "",
             f"{report['device']}, torch {report['torch']}, transformers {report['transformers']}"
             f"{' (SMOKE: tiny sizes, not a validation)' if report['smoke'] else ''}.", "",
             f"Criteria: ablation = |AUC ratio - fp32's| <= {RATIO_SLACK} x fp32's {report['ci']:.0%} "
             f"bootstrap interval width, both ranked orders (decides `ablation.dtype`); ranking = "
             f"Spearman(syn_red) >= {SPEARMAN_MIN} and top-{CORE_FRACTION:.0%} cores differ by <= "
             f"{CORE_SLACK} heads each way, on the same tokens; ranking end to end = the same from each "
             f"variant's own greedy extraction (decides `generation.dtype`; counts for hf: models only: "
             f"random weights fork greedy decoding at near-ties).", ""]
    for m in report["models"]:
        v = m["variants"]
        lines += [f"## {m['description']}", "",
                  f"{m['shape']['n_layers']} x {m['shape']['n_heads']} heads, "
                  f"{m['n_parameters'] / 1e9:.2f} B parameters; {m['n_prompts']} prompts x "
                  f"{m['n_tokens']} tokens; ablation {v['fp32']['n_masks']} masks x "
                  f"{m['ablation_prompts']} prompts. fp32 split-half Spearman of syn_red (prompt "
                  f"noise): {v['fp32']['split_half_spearman']:.3f}; core size {v['fp32']['core_size']}.", "",
                  "| | fp32 | fp32 + TF32 | bf16 |", "|---|---|---|---|"]

        def cell(key, fmt, default="-", v=v):
            return [default if key(v[k]) is None else fmt.format(key(v[k])) for k in ("fp32", "fp32_tf32", "bf16")]

        def get(*path):
            def f(row):
                for p in path:
                    if not isinstance(row, dict) or p not in row:
                        return None
                    row = row[p]
                return row
            return f

        rows = [
            ("extraction (s)", get("seconds", "extraction"), "{:.1f}"),
            ("ablation (s)", get("seconds", "ablation"), "{:.1f}"),
            ("speed-up extraction / ablation", lambda r: (f"x{r['speedup']['extraction']:.2f} / "
                                                          f"x{r['speedup']['ablation']:.2f}") if "speedup" in r else None, "{}"),  # noqa: E501
            ("greedy tokens identical to fp32", get("tokens_identical"), "{:.1%}"),
            ("head norms, same tokens: rel. diff median / max",
             lambda r: (f"{r['norms_same_tokens'].get('median', float('nan')):.1e} / "
                        f"{r['norms_same_tokens'].get('max', float('nan')):.1e}") if "norms_same_tokens" in r else None, "{}"),  # noqa: E501
            ("Spearman syn_red vs fp32 (own extraction)", get("spearman_own"), "{:.4f}"),
            ("Spearman syn_red vs fp32 (same tokens)", get("spearman_same_tokens"), "{:.4f}"),
            ("top-10% core vs fp32, heads out / in (own extraction)", get("core_differs_own"), "{}"),
            ("top-10% core vs fp32, heads out / in (same tokens)", get("core_differs_same_tokens"), "{}"),
            ("KL per mask: rel. err. median / p90 / max",
             lambda r: (f"{r['kl_per_mask'].get('median', float('nan')):.1e} / "
                        f"{r['kl_per_mask'].get('p90', float('nan')):.1e} / "
                        f"{r['kl_per_mask'].get('max', float('nan')):.1e}") if "kl_per_mask" in r else None, "{}"),
            ("intact model KL(fp32 || variant), mean (nats)", get("intact_kl_vs_fp32", "mean"), "{:.2e}"),
            ("median KL of fp32 masks (nats)", get("median_kl_fp32"), "{:.2e}"),
            ("ratio synergistic / random [interval]",
             lambda r: (f"{r['ratios']['ratio_synergistic_random']['estimate']:.4f} "
                        f"[{r['ratios']['ratio_synergistic_random']['ci_low']:.3f}, "
                        f"{r['ratios']['ratio_synergistic_random']['ci_high']:.3f}]"), "{}"),
            ("ratio redundant / random [interval]",
             lambda r: (f"{r['ratios']['ratio_redundant_random']['estimate']:.4f} "
                        f"[{r['ratios']['ratio_redundant_random']['ci_low']:.3f}, "
                        f"{r['ratios']['ratio_redundant_random']['ci_high']:.3f}]"), "{}"),
            ("verdict: ablation / ranking / ranking end to end",
             lambda r: " / ".join("PASS" if r["verdicts"][k] else "FAIL"
                                  for k in ("ablation", "ranking", "ranking_end_to_end")) if "verdicts" in r else None, "{}"),  # noqa: E501
        ]
        for label, key, fmt in rows:
            lines.append(f"| {label} | " + " | ".join(cell(key, fmt)) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="directory for precision.json and precision.md")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny models and sizes (2 CPU cores: about 2 minutes; checks the script, not bf16)")
    ap.add_argument("--models", default="pythia-1b-shape,gemma-3-4b-shape",
                    help="comma-separated: pythia-1b-shape, gemma-3-4b-shape, hf:<hub id>[@revision]")
    ap.add_argument("--prompts", type=int, default=60, help="prompts of the extraction and ranking")
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=20, help="prompts per extraction pass")
    ap.add_argument("--ablation-prompts", type=int, default=12)
    ap.add_argument("--random-orders", type=int, default=19)
    ap.add_argument("--max-fraction", type=float, default=0.4)
    ap.add_argument("--ranked-points", type=int, default=20, help="about this many removal counts per ranked order")
    ap.add_argument("--grid", type=int, default=11, help="removal counts of each random order")
    ap.add_argument("--prompt-batch", type=int, default=6)
    ap.add_argument("--mask-group", type=int, default=8)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--ci", type=float, default=0.8)
    ap.add_argument("--floor-prompts", type=int, default=4, help="prompts of the intact-model KL between precisions")
    args = ap.parse_args(argv)
    if args.smoke:
        args.prompts, args.tokens, args.batch_size = min(args.prompts, 12), min(args.tokens, 12), 6
        args.ablation_prompts, args.random_orders, args.ranked_points = min(args.ablation_prompts, 4), 9, 4
        args.grid, args.prompt_batch, args.mask_group, args.n_boot = 4, 2, 4, 50
        args.floor_prompts = 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device visible; use --smoke --device cpu to check the script")
        return 2
    if args.device == "cpu":
        torch.manual_seed(0)
    import transformers

    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
                   f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    report = {"device": device_name, "torch": torch.__version__, "transformers": transformers.__version__,
              "smoke": args.smoke, "ci": args.ci, "args": {k: str(v) for k, v in vars(args).items()},
              "criteria": {"spearman_min": SPEARMAN_MIN, "core_fraction": CORE_FRACTION,
                           "core_slack": CORE_SLACK, "ratio_slack": RATIO_SLACK},
              "models": []}
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name in args.models.split(","):
        report["models"].append(check_model(name.strip(), args))
        report["seconds"] = time.perf_counter() - start
        (args.out / "precision.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
        (args.out / "precision.md").write_text(markdown(report))
    failed = [f"{m['model']}:{v}:{k}" for m in report["models"] for v, row in m["variants"].items()
              for k, ok in row.get("verdicts", {}).items()
              if not ok and (k != "ranking_end_to_end" or m["model"].startswith("hf:"))]
    report["failed"] = failed
    (args.out / "precision.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"\n{time.perf_counter() - start:.0f} s in all; wrote {args.out / 'precision.json'} and "
          f"{args.out / 'precision.md'}; {'all criteria PASS' if not failed else 'FAIL: ' + ', '.join(failed)}"
          + (" (smoke: tiny sizes, the criteria mean nothing; exit status 0)" if args.smoke else ""))
    return 1 if failed and not args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())

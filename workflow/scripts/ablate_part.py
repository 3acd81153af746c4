"""Rule ablate_part: one contiguous share of a model's groups of ablation masks, KL on its tokens."""
from synergy_core.runtime import start_rule
from synergy_core.stages.ablate_parts import run_ablation_part

start_rule(snakemake, uses_torch=True)
p = snakemake.params
run_ablation_part(snakemake.input.acts, snakemake.input.heads, snakemake.output[0], p.spec, p.ablation,
                  int(snakemake.wildcards.part), p.n_parts, p.device, p.code, p.compute)

"""Rule ablate_heads: iterative head ablation of one model, KL on its own tokens."""
from synergy_core.runtime import start_rule
from synergy_core.stages.ablate import run_ablation

start_rule(snakemake, uses_torch=True)
out = snakemake.output
run_ablation(snakemake.input.acts, snakemake.input.heads, out.long, out.summary, out.auc,
             snakemake.params.spec, snakemake.params.ablation, snakemake.params.device,
             snakemake.params.compute)

"""Rule rank_heads: per-head synergy/redundancy ranking and layer profile of one model."""
from synergy_core.pipeline import rank_model
from synergy_core.runtime import start_rule

start_rule(snakemake)
out = snakemake.output
rank_model(snakemake.input[0], out.heads, out.profile, out.diagnostics)

"""Rule rank_heads: per-head synergy/redundancy ranking and layer profile of one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.rank import rank_model

start_rule(snakemake)
out = snakemake.output
rank_model(snakemake.input.phiid, snakemake.input.acts, out.heads, out.profile, out.diagnostics)

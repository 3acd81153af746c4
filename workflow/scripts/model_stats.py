"""Rule model_stats: bootstrap CIs, split halves, surrogate null, graphs, categories of one model."""
from synergy_core.pipeline import model_statistics
from synergy_core.runtime import start_rule

start_rule(snakemake)
model_statistics(snakemake.input.phiid, snakemake.input.acts, dict(snakemake.output.items()),
                 snakemake.params.stats, snakemake.params.tau)

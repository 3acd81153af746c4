"""Rule model_stats: bootstrap CIs, split halves, surrogate null, graphs, categories of one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.stats import model_statistics

start_rule(snakemake)
model_statistics(snakemake.input.phiid, snakemake.input.acts, dict(snakemake.output.items()),
                 snakemake.params.stats, snakemake.params.tau)

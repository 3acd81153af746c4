"""Rule plot_model_stats: Fig 3b-c (graphs) and per-category profiles of one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_model_stats

start_rule(snakemake)
plot_model_stats(snakemake.input.phiid, snakemake.input.categories, snakemake.params.fraction,
                 dict(snakemake.output.items()), snakemake.wildcards.model)

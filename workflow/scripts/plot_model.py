"""Rule plot_model: Fig 2a, Fig 2b and the diagnostics of one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_model

start_rule(snakemake)
plot_model(snakemake.input.phiid, snakemake.input.heads, snakemake.input.diagnostics,
           dict(snakemake.output.items()), snakemake.wildcards.model)

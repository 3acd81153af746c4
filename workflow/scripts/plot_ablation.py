"""Rule plot_ablation: Fig 4a, ablation curves of one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_ablation

start_rule(snakemake)
plot_ablation(snakemake.input.summary, snakemake.input.auc, dict(snakemake.output.items()),
              snakemake.wildcards.model)

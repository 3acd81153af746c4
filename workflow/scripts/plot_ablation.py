"""Rule plot_ablation: Fig 4a, ablation curves of one model."""
from synergy_core.pipeline import plot_ablation
from synergy_core.runtime import start_rule

start_rule(snakemake)
plot_ablation(snakemake.input.summary, snakemake.input.auc, snakemake.output.png,
              snakemake.output.pdf, snakemake.wildcards.model)

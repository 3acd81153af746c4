"""Rule ablation_stats: bootstrap CIs of the ablation AUC ratios of one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.ablation_stats import ablation_statistics

start_rule(snakemake)
ablation_statistics(snakemake.input[0], snakemake.output.tsv, snakemake.output.json,
                    snakemake.params.stats)

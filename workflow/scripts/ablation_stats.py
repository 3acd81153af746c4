"""Rule ablation_stats: bootstrap CIs of the ablation AUC ratios of one model."""
from synergy_core.pipeline import ablation_statistics
from synergy_core.runtime import start_rule

start_rule(snakemake)
ablation_statistics(snakemake.input[0], snakemake.output.tsv, snakemake.output.json,
                    snakemake.params.stats)

"""Rule prepare_finetune_data: the GRPO problems, SFT solutions and evaluation problems, read once."""
from synergy_core.runtime import start_rule
from synergy_core.stages.finetune_stats import run_prepare_data

start_rule(snakemake)
run_prepare_data(snakemake.params.finetune, snakemake.params.sources, snakemake.output[0])

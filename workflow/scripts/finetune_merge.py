"""Rule finetune_merge: gather and score a model's evaluation parts, refusing missing or stale
ones and runs whose frozen weights moved."""
from synergy_core.runtime import start_rule
from synergy_core.stages.finetune_stats import merge

start_rule(snakemake)
merge(list(snakemake.input.evals), list(snakemake.input.trains), snakemake.input.data, dict(snakemake.output.items()),
      snakemake.params.finetune, snakemake.params.spec, eval_code=snakemake.params.code[1],
      train_code=snakemake.params.code[2])

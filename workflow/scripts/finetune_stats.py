"""Rule finetune_stats: best- and final-checkpoint accuracy per run and the two-sample tests."""
from synergy_core.runtime import start_rule
from synergy_core.stages.finetune_stats import run_stats

start_rule(snakemake)
run_stats(snakemake.input[0], dict(snakemake.output.items()), dict(eval_from=snakemake.params.eval_from),
          dict(ci=snakemake.params.ci))

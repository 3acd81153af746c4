"""Rule prepare_task: the problems of the perturbation stage, read once and checked."""
from synergy_core.runtime import start_rule
from synergy_core.stages.perturb import run_prepare_task

start_rule(snakemake)
run_prepare_task(snakemake.params.task, snakemake.input[0] if snakemake.input else None,
                 snakemake.params.n_problems, snakemake.output[0])

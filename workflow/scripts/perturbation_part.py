"""Rule perturbation_part: one model's share of the perturbation units, greedy answers scored."""
from synergy_core.runtime import start_rule
from synergy_core.stages.perturb import run_part

start_rule(snakemake, uses_torch=True)
run_part(snakemake.input.task, snakemake.input.heads, snakemake.output[0], snakemake.params.spec,
         snakemake.params.perturbation, int(snakemake.wildcards.part), snakemake.params.n_parts,
         snakemake.params.device, snakemake.params.code)

"""Rule perturbation_merge: gather and score a model's perturbation parts, refusing missing or
stale ones."""
from synergy_core.runtime import start_rule
from synergy_core.stages.perturbation_stats import merge_parts

start_rule(snakemake)
merge_parts(list(snakemake.input.parts), snakemake.input.task, snakemake.input.heads,
            snakemake.output.problems, snakemake.output.sets, snakemake.params.perturbation,
            snakemake.params.spec, part_code=snakemake.params.code[1],
            scoring_out=snakemake.output.scoring)

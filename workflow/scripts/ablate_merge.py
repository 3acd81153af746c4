"""Rule ablate_merge: gather a model's ablation parts into the single job's tables, refusing
missing, repeated, foreign or stale parts."""
from synergy_core.runtime import start_rule
from synergy_core.stages.ablate_parts import merge_ablation_parts

start_rule(snakemake)
out, p = snakemake.output, snakemake.params
merge_ablation_parts(list(snakemake.input.parts), snakemake.input.acts, snakemake.input.heads, out.long,
                     out.summary, out.auc, p.spec, p.ablation, part_code=p.code[1], compute=p.compute)

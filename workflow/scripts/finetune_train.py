"""Rule finetune_train: one model's share of the fine-tuning runs, each resumed from its last
checkpoint; writes every run's trainable elements at the evaluation steps."""
from synergy_core.runtime import start_rule
from synergy_core.stages.finetune import run_train_part

start_rule(snakemake, uses_torch=True)
p = snakemake.params
run_train_part(snakemake.input.data, snakemake.input.heads, snakemake.output[0], p.spec, p.finetune,
               int(snakemake.wildcards.part), p.n_parts, p.scratch, p.device, p.checkpoint_every, p.code)

"""Rule plot_finetune: Fig 5, accuracy after fine-tuning only the synergistic, redundant or a
random region of heads, per method (per-run points with medians) and against the training step."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_finetune

start_rule(snakemake)
models = snakemake.params.models
plot_finetune(dict(zip(models, snakemake.input.accuracy)), dict(zip(models, snakemake.input.runs)),
              dict(zip(models, snakemake.input.tests)), snakemake.params.selection,
              dict(snakemake.output.items()))

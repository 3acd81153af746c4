"""Rule plot_perturbation: Fig 4b, task accuracy with Gaussian noise on the synergistic core, the
redundant core and random head sets, one row per perturbed model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_perturbation

start_rule(snakemake)
models = snakemake.params.models
plot_perturbation(dict(zip(models, snakemake.input.accuracy)), dict(zip(models, snakemake.input.sets)),
                  dict(zip(models, snakemake.input.tests)), snakemake.params.verdict_alpha,
                  dict(snakemake.output.items()), ci=snakemake.params.ci, task=snakemake.params.task)

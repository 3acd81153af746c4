"""Rule plot_profiles: Fig 2c, the layer profiles of every model with their bootstrap intervals,
one panel per family, trained models against their random-init twins."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_profiles

start_rule(snakemake)
plot_profiles(dict(zip(snakemake.params.models, snakemake.input.layer_ci)),
              dict(snakemake.output.items()), snakemake.params.specs, snakemake.params.ci)

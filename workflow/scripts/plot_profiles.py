"""Rule plot_profiles: Fig 2c, layer profiles of every model overlaid."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_profiles

start_rule(snakemake)
plot_profiles(dict(zip(snakemake.params.models, snakemake.input.profiles)),
              dict(snakemake.output.items()))

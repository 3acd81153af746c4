"""Rule plot_profiles: Fig 2c, layer profiles of every model overlaid."""
from synergy_core.pipeline import plot_profiles
from synergy_core.runtime import start_rule

start_rule(snakemake)
plot_profiles(dict(zip(snakemake.params.models, snakemake.input.profiles)), snakemake.output.png,
              snakemake.output.pdf)

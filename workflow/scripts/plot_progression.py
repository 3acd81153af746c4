"""Rule plot_progression: Fig 3a and the inverted-U score over training, for one family."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_progression

start_rule(snakemake)
models = snakemake.params.models
plot_progression(dict(zip(models, snakemake.input.profiles)), dict(zip(models, snakemake.input.scores)),
                 snakemake.params.revisions, snakemake.wildcards.family, dict(snakemake.output.items()))

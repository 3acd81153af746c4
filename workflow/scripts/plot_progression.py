"""Rule plot_progression: Fig 3a and the inverted-U score over training, for one family."""
from synergy_core.pipeline import plot_progression
from synergy_core.runtime import start_rule

start_rule(snakemake)
models = snakemake.params.models
plot_progression(dict(zip(models, snakemake.input.profiles)), dict(zip(models, snakemake.input.scores)),
                 snakemake.params.revisions, snakemake.wildcards.family, dict(snakemake.output.items()))

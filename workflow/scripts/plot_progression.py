"""Rule plot_progression: Fig 3a and the inverted-U score over training, for one family, each
against the family's random-init twin when there is one."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_progression

start_rule(snakemake)
models = snakemake.params.models
twin = snakemake.params.twin
plot_progression(dict(zip(models, snakemake.input.layer_ci)), dict(zip(models, snakemake.input.scores)),
                 snakemake.params.revisions, snakemake.wildcards.family, dict(snakemake.output.items()),
                 twin=twin, twin_profile=snakemake.input.twin_layer_ci[0] if twin else None,
                 twin_scores=snakemake.input.twin_scores[0] if twin else None, ci=snakemake.params.ci)

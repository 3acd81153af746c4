"""Rule plot_scaling: each verdict (inverted U, ablation) against model size, trained models and
their random-init twins, from the summary table (scaling.models)."""
from synergy_core.runtime import start_rule
from synergy_core.stages.plots import plot_scaling

start_rule(snakemake)
plot_scaling(snakemake.input.summary, snakemake.params.models, dict(snakemake.output.items()),
             ci=snakemake.params.ci)

"""Rule compare_models: a model's inverted-U scores minus another's, paired by prompt."""
from synergy_core.runtime import start_rule
from synergy_core.stages.compare import compare_models

start_rule(snakemake)
compare_models(snakemake.input.a, snakemake.input.b, snakemake.output[0], snakemake.params.compare)

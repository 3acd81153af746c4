"""Rule summary: the verdict table, one row per model."""
from synergy_core.pipeline import build_summary
from synergy_core.runtime import start_rule

start_rule(snakemake)
models = {}
for key, path in snakemake.input.items():
    model, what = key.split("__")
    models.setdefault(model, {"spec": snakemake.params.specs[model]})[what] = path
build_summary(models, snakemake.output[0])

"""Rule summary: the verdict table, one row per model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.summary import build_summary

start_rule(snakemake)
inp, params = snakemake.input, snakemake.params
models = {m: dict(spec=params.specs[m], diagnostics=d, scores=s, stats=j, graphs=g)
          for m, d, s, j, g in zip(params.models, inp.diagnostics, inp.scores, inp.stats, inp.graphs)}
for m, tsv, js in zip(params.ablated, inp.ablation, inp.ablation_json):
    models[m].update(ablation=tsv, ablation_json=js)
for (m, other, kind), tsv in zip(params.comparisons, inp.comparisons):
    models[m].setdefault("comparisons", {})[kind] = dict(other=other, path=tsv)
build_summary(models, snakemake.output[0])

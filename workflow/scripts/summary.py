"""Rule summary: the verdict table, one row per model (TSV, JSON, HTML), and the HTML renderings
of each model's key tables for the report."""
from synergy_core.runtime import start_rule
from synergy_core.stages.summary import build_summary, write_model_tables

start_rule(snakemake)
inp, out, params = snakemake.input, snakemake.output, snakemake.params
models = {m: dict(spec=params.specs[m], diagnostics=d, scores=s, stats=j, graphs=g)
          for m, d, s, j, g in zip(params.models, inp.diagnostics, inp.scores, inp.stats, inp.graphs)}
for m, tsv, js in zip(params.ablated, inp.ablation, inp.ablation_json):
    models[m].update(ablation=tsv, ablation_json=js)
for m, acc, tests in zip(params.perturbed, inp.perturbation_accuracy, inp.perturbation_tests):
    models[m].update(perturbation_accuracy=acc, perturbation_tests=tests,
                     perturbation_alpha=params.perturbation_alpha)
for m, acc, groups, tests, inter in zip(params.finetuned, inp.finetune_accuracy, inp.finetune_groups,
                                       inp.finetune_tests, inp.finetune_interaction):
    models[m].update(finetune=dict(accuracy=acc, groups=groups, tests=tests, interaction=inter),
                     finetune_selection=params.finetune_selection, finetune_tests=tests)
for (m, other, kind), tsv in zip(params.comparisons, inp.comparisons):
    models[m].setdefault("comparisons", {})[kind] = dict(other=other, path=tsv)
build_summary(models, out.tsv, out.json, out.html)
tables = {m: dict(profile_scores=s, graphs=g) for m, s, g in zip(params.models, out.scores_html, out.graphs_html)}
for m, html in zip(params.ablated, out.ablation_html):
    tables[m]["auc_ci"] = html
for m, acc_html, tests_html in zip(params.perturbed, out.perturbation_accuracy_html,
                                   out.perturbation_tests_html):
    tables[m].update(perturbation_accuracy=acc_html, perturbation_tests=tests_html)
for m, html in zip(params.finetuned, out.finetune_tests_html):
    tables[m]["finetune_tests"] = html
write_model_tables(models, tables)

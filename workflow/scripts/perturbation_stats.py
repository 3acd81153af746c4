"""Rule perturbation_stats: accuracy per condition with intervals, and the set and repeat tests."""
from synergy_core.runtime import start_rule
from synergy_core.stages.perturbation_stats import run_stats

start_rule(snakemake)
out = snakemake.output
run_stats(snakemake.input[0], out.accuracy, out.sets, out.tests, snakemake.params.stats)

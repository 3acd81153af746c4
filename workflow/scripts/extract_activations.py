"""Rule extract_activations: greedy generation + per-head norms for one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.extract import run_extraction

start_rule(snakemake, uses_torch=True)
p = snakemake.params
run_extraction(snakemake.input.prompts, snakemake.output[0], p.spec, p.selection, p.generation,
               p.compute)

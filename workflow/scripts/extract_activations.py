"""Rule extract_activations: greedy generation + per-head norms for one model."""
from synergy_core.extract import extract_activations
from synergy_core.io import save_arrays, stable_hash
from synergy_core.prompts import load_prompts, select_prompts
from synergy_core.runtime import start_rule

log = start_rule(snakemake, uses_torch=True)
spec, sel, gen = snakemake.params.spec, snakemake.params.prompts, snakemake.params.generation
prompts = select_prompts(load_prompts(snakemake.input.prompts), sel["categories"],
                         sel["per_category"], sel["first_k"])
arrays, provenance = extract_activations(spec, prompts, gen["num_tokens"], gen["batch_size"],
                                         sel["chat_template"], gen["device"])
provenance["config_hash"] = stable_hash([spec, sel, gen])
save_arrays(snakemake.output[0], provenance, **arrays)
log.info("wrote %s: acts %s", snakemake.output[0], arrays["acts"].shape)

"""Rule phiid_chunk: PhiID for chunk k of n of the upper-triangle pair list of one model."""
from synergy_core.runtime import start_rule
from synergy_core.stages.phiid import compute_phiid_chunk

start_rule(snakemake)
# Execution layout, read from the config rather than params: n_chunks is in the chunk's path,
# block_pairs bounds memory and changes no number.
layout = snakemake.config["phiid"]
compute_phiid_chunk(snakemake.input.acts, snakemake.output[0], int(snakemake.wildcards.chunk),
                    dict(snakemake.params.phiid, n_chunks=layout["n_chunks"]), snakemake.threads,
                    layout["block_pairs"])

"""Rule phiid_chunk: PhiID for chunk k of n of the upper-triangle pair list of one model."""
from synergy_core.pipeline import compute_phiid_chunk
from synergy_core.runtime import start_rule

start_rule(snakemake)
compute_phiid_chunk(snakemake.input.acts, snakemake.output[0], int(snakemake.wildcards.chunk),
                    snakemake.params.phiid, snakemake.threads)

"""Rule phiid_merge: gather a model's chunks into head x head atom matrices."""
from synergy_core.pipeline import merge_phiid_chunks
from synergy_core.runtime import start_rule

start_rule(snakemake)
merge_phiid_chunks(snakemake.input.acts, list(snakemake.input.chunks), snakemake.output[0],
                   snakemake.params.phiid)

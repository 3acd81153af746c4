"""Rule phiid_merge: gather a model's chunks into head x head atom matrices."""
from synergy_core.runtime import start_rule
from synergy_core.stages.phiid import merge_phiid_chunks

start_rule(snakemake)
merge_phiid_chunks(snakemake.input.acts, list(snakemake.input.chunks), snakemake.output[0],
                   snakemake.params.phiid)

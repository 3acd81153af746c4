# All-pairs PhiID, sharded: chunk k of n_chunks takes a contiguous range of the upper-triangle
# pair list (a CPU job); the merge gathers every chunk and checks each pair is covered once.
# The merged numbers are bitwise the same for every n_chunks and block_pairs, so the chunks are
# temp() files (deleted once merged) and the merge's params hold the chunk code too.


rule phiid_chunk:
    input:
        acts=f"{RESULTS}/{{model}}/activations.npz",
    output:
        temp(CHUNK),
    log:
        f"{RESULTS}/logs/phiid_chunk/{{model}}/chunk_{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phiid_chunk/{{model}}/chunk_{{chunk}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=phiid_chunk_runtime,
    params:
        phiid=PHIID_NUMERIC,
        code=code_of("phiid_chunk"),
    script:
        "../scripts/phiid_chunk.py"


rule phiid_merge:
    input:
        acts=f"{RESULTS}/{{model}}/activations.npz",
        chunks=phiid_chunks,
    output:
        f"{RESULTS}/{{model}}/phiid/phiid.npz",
    log:
        f"{RESULTS}/logs/phiid_merge/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        phiid=PHIID_NUMERIC,
        # the chunks' code too: after a change of n_chunks, chunk jobs that never ran have no
        # record of their code to compare with
        code=[code_of("phiid_merge"), code_of("phiid_chunk")],
    script:
        "../scripts/phiid_merge.py"

# All-pairs PhiID, sharded: chunk k of n_chunks takes a contiguous range of the upper-triangle
# pair list (a CPU job); the merge gathers every chunk and checks each pair is covered once.


rule phiid_chunk:
    input:
        acts=f"{RESULTS}/{{model}}/activations.npz",
    output:
        f"{RESULTS}/{{model}}/phiid/chunks/chunk_{{chunk}}.npz",
    params:
        phiid=config["phiid"],
        code=code_hash("phiid"),
    threads: 2
    resources:
        mem_mb=4000,
    log:
        f"{RESULTS}/logs/phiid_chunk/{{model}}/chunk_{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/phiid_chunk/{{model}}/chunk_{{chunk}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/phiid_chunk.py"


rule phiid_merge:
    input:
        acts=f"{RESULTS}/{{model}}/activations.npz",
        chunks=phiid_chunks,
    output:
        f"{RESULTS}/{{model}}/phiid/phiid.npz",
    params:
        phiid=config["phiid"],
        code=code_hash("phiid"),
    threads: 1
    resources:
        mem_mb=4000,
    log:
        f"{RESULTS}/logs/phiid_merge/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/phiid_merge.py"

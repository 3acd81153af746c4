# Greedy generation and per-head attention-output norms (a GPU rule on the cluster).


rule extract_activations:
    input:
        prompts=config["prompts"]["file"],
    output:
        f"{RESULTS}/{{model}}/activations.npz",
    log:
        f"{RESULTS}/logs/extract_activations/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_activations/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    # 1 locally: two GPU-rule jobs share 2 cores side by side (the demo); a SLURM profile gives
    # the job its GPU bundle's cores (set-threads)
    threads: 1
    resources:
        gpu=1,
        gres=gpu_gres,
        mem_mb=gpu_job_resource("extraction", "mem_mb"),
        runtime=gpu_job_resource("extraction", "runtime"),
        gpu_mem_mb=gpu_job_resource("extraction", "gpu_mem_mb"),
    params:
        spec=spec_of,
        selection=pick("prompts", "file", "categories", "per_category", "first_k", "chat_template"),
        generation=GENERATION,
        compute=compute_of("extraction"),
        code=code_of("extract_activations"),
    script:
        "../scripts/extract_activations.py"

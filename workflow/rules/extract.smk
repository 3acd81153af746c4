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
    threads: 2
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

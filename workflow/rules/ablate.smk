# Iterative head ablation, KL on the unablated model's tokens (a GPU rule on the cluster): one job
# per model (ablate_heads), or with ablation.n_parts > 1 that many GPU jobs (ablate_part) and a
# merge (ablate_merge, a local rule) writing the same files, byte for byte.


if N_ABLATION_PARTS > 1:

    ruleorder: ablate_merge > ablate_heads

else:

    ruleorder: ablate_heads > ablate_merge


rule ablate_heads:
    input:
        acts=f"{RESULTS}/{{model}}/activations.npz",
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
    output:
        long=f"{RESULTS}/{{model}}/ablation/kl_long.tsv",
        summary=report(
            f"{RESULTS}/{{model}}/ablation/summary.tsv",
            caption="../report/ablation_summary.rst",
            category="3. Ablation",
            subcategory="{model}",
        ),
        auc=report(
            f"{RESULTS}/{{model}}/ablation/auc.tsv",
            caption="../report/ablation_auc.rst",
            category="3. Ablation",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/ablate_heads/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablate_heads/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    # 1 locally: two GPU-rule jobs share 2 cores side by side (the demo); a SLURM profile gives
    # the job its GPU bundle's cores (set-threads)
    threads: 1
    resources:
        gpu=1,
        gres=gpu_gres,
        mem_mb=gpu_job_resource("ablation", "mem_mb"),
        runtime=gpu_job_resource("ablation", "runtime"),
        gpu_mem_mb=gpu_job_resource("ablation", "gpu_mem_mb"),
    params:
        spec=spec_of,
        ablation=ABLATION,
        device=config["generation"]["device"],
        compute=compute_of("ablation"),
        code=code_of("ablate_heads"),
    script:
        "../scripts/ablate_heads.py"


rule ablate_part:
    input:
        acts=f"{RESULTS}/{{model}}/activations.npz",
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
    output:
        temp(ABLATION_PART),
    log:
        f"{RESULTS}/logs/ablate_part/{{model}}/part_{{part}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablate_part/{{model}}/part_{{part}}.tsv"
    conda:
        "../../envs/torch.yaml"
    # 1 locally: two GPU-rule jobs share 2 cores side by side (the demo); a SLURM profile gives
    # the job its GPU bundle's cores (set-threads)
    threads: 1
    resources:
        gpu=1,
        gres=gpu_gres,
        mem_mb=gpu_job_resource("ablation", "mem_mb"),
        runtime=gpu_job_resource("ablation", "runtime"),
        gpu_mem_mb=gpu_job_resource("ablation", "gpu_mem_mb"),
    params:
        spec=spec_of,
        ablation=ABLATION,
        n_parts=N_ABLATION_PARTS,
        device=config["generation"]["device"],
        compute=compute_of("ablation"),
        code=code_of("ablate_part"),
    script:
        "../scripts/ablate_part.py"


rule ablate_merge:
    input:
        acts=f"{RESULTS}/{{model}}/activations.npz",
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
        parts=ablation_parts,
    output:
        long=f"{RESULTS}/{{model}}/ablation/kl_long.tsv",
        summary=report(
            f"{RESULTS}/{{model}}/ablation/summary.tsv",
            caption="../report/ablation_summary.rst",
            category="3. Ablation",
            subcategory="{model}",
        ),
        auc=report(
            f"{RESULTS}/{{model}}/ablation/auc.tsv",
            caption="../report/ablation_auc.rst",
            category="3. Ablation",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/ablate_merge/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        spec=spec_of,
        ablation=ABLATION,
        compute=compute_of("ablation"),
        # the parts' code too: after a change of n_parts, parts that never ran have no record of
        # their code to compare with
        code=[code_of("ablate_merge"), code_of("ablate_part")],
    script:
        "../scripts/ablate_merge.py"

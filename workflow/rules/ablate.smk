# Iterative head ablation, KL on the unablated model's tokens (a GPU rule on the cluster).


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
    params:
        spec=spec_of,
        ablation=config["ablation"],
        device=config["generation"]["device"],
        code=code_hash("ablation", "extract", "hooks", "models"),
    resources:
        gpu=1,
    threads: 2
    log:
        f"{RESULTS}/logs/ablate_heads/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablate_heads/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/ablate_heads.py"

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
    log:
        f"{RESULTS}/logs/ablate_heads/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablate_heads/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        spec=spec_of,
        ablation=pick(
            "ablation",
            "n_random_orders",
            "seed",
            "max_fraction",
            "step",
            "random_grid",
            "cross_validate",
            "prompt_batch",
            "mask_group",
        ),
        device=config["generation"]["device"],
        code=code_of("ablate_heads"),
    script:
        "../scripts/ablate_heads.py"

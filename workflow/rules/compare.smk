# Differences between models tested as differences, paired by prompt: every trained model minus
# its random-init twin (same hf_id, init: random), and a family's final checkpoint minus its first.


rule compare_models:
    input:
        a=f"{RESULTS}/{{model}}/phiid/phiid.npz",
        b=f"{RESULTS}/{{other}}/phiid/phiid.npz",
    output:
        report(
            f"{RESULTS}/{{model}}/comparisons/vs_{{other}}.tsv",
            caption="../report/comparison.rst",
            category="5. Statistics",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/compare_models/{{model}}/vs_{{other}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        compare=dict(
            n_permutations=config["comparisons"]["n_permutations"],
            seed=config["stats"]["seed"],
            ci=config["stats"]["ci"],
        ),
        code=code_of("compare_models"),
    script:
        "../scripts/compare_models.py"

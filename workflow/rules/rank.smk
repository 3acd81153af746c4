# Per-head synergy and redundancy, rank difference and layer profile (light, CPU).


rule rank_heads:
    input:
        phiid=f"{RESULTS}/{{model}}/phiid/phiid.npz",
        acts=f"{RESULTS}/{{model}}/activations.npz",
    output:
        heads=report(
            f"{RESULTS}/{{model}}/ranking/heads.tsv",
            caption="../report/heads.rst",
            category="2. Ranking",
            subcategory="{model}",
        ),
        profile=report(
            f"{RESULTS}/{{model}}/ranking/layer_profile.tsv",
            caption="../report/layer_profile.rst",
            category="2. Ranking",
            subcategory="{model}",
        ),
        diagnostics=f"{RESULTS}/{{model}}/ranking/diagnostics.json",
    log:
        f"{RESULTS}/logs/rank_heads/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        code=code_of("rank_heads"),
    script:
        "../scripts/rank_heads.py"

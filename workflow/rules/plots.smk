# Figures (PNG for the report, PDF for papers). Light CPU jobs.


rule plot_model:
    input:
        phiid=f"{RESULTS}/{{model}}/phiid/phiid.npz",
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
        diagnostics=f"{RESULTS}/{{model}}/ranking/diagnostics.json",
    output:
        fig2a=report(
            f"{RESULTS}/{{model}}/figures/fig2a_pairwise.png",
            caption="../report/fig2a.rst",
            category="1. PhiID",
            subcategory="{model}",
        ),
        fig2b=report(
            f"{RESULTS}/{{model}}/figures/fig2b_syn_red.png",
            caption="../report/fig2b.rst",
            category="2. Ranking",
            subcategory="{model}",
        ),
        scatter=report(
            f"{RESULTS}/{{model}}/figures/synergy_vs_redundancy.png",
            caption="../report/scatter.rst",
            category="4. Diagnostics",
            subcategory="{model}",
        ),
        nan=report(
            f"{RESULTS}/{{model}}/figures/nan_counts.png",
            caption="../report/nan_counts.rst",
            category="4. Diagnostics",
            subcategory="{model}",
        ),
        pdfs=multiext(
            f"{RESULTS}/{{model}}/figures/",
            "fig2a_pairwise.pdf",
            "fig2b_syn_red.pdf",
            "synergy_vs_redundancy.pdf",
            "nan_counts.pdf",
        ),
    params:
        code=code_hash("plots"),
    log:
        f"{RESULTS}/logs/plot_model/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_model.py"


rule plot_ablation:
    input:
        summary=f"{RESULTS}/{{model}}/ablation/summary.tsv",
        auc=f"{RESULTS}/{{model}}/ablation/auc.tsv",
    output:
        png=report(
            f"{RESULTS}/{{model}}/figures/fig4a_ablation.png",
            caption="../report/fig4a.rst",
            category="3. Ablation",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/{{model}}/figures/fig4a_ablation.pdf",
    params:
        code=code_hash("plots"),
    log:
        f"{RESULTS}/logs/plot_ablation/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_ablation.py"


rule plot_profiles:
    input:
        profiles=expand(f"{RESULTS}/{{model}}/ranking/layer_profile.tsv", model=MODELS),
    output:
        png=report(
            f"{RESULTS}/figures/fig2c_layer_profiles.png",
            caption="../report/fig2c.rst",
            category="2. Ranking",
            subcategory="all models",
        ),
        pdf=f"{RESULTS}/figures/fig2c_layer_profiles.pdf",
    params:
        models=MODELS,
        code=code_hash("plots"),
    log:
        f"{RESULTS}/logs/plot_profiles.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_profiles.py"

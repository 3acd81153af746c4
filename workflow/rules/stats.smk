# Statistics beyond the paper (bootstrap CIs, split halves, surrogate null, graphs, categories),
# training progression, and the one-row-per-model verdict table.


rule model_stats:
    input:
        phiid=f"{RESULTS}/{{model}}/phiid/phiid.npz",
        acts=f"{RESULTS}/{{model}}/activations.npz",
    output:
        scores=report(
            f"{RESULTS}/{{model}}/stats/profile_scores.tsv",
            caption="../report/profile_scores.rst",
            category="5. Statistics",
            subcategory="{model}",
        ),
        layers=f"{RESULTS}/{{model}}/stats/layer_ci.tsv",
        categories=f"{RESULTS}/{{model}}/stats/category_profiles.tsv",
        graphs=report(
            f"{RESULTS}/{{model}}/stats/graphs.tsv",
            caption="../report/graphs_table.rst",
            category="5. Statistics",
            subcategory="{model}",
        ),
        json=f"{RESULTS}/{{model}}/stats/stats.json",
    params:
        stats=config["stats"],
        tau=config["phiid"]["tau"],
        code=code_hash("stats", "graphs", "phiid"),
    threads: 2
    log:
        f"{RESULTS}/logs/model_stats/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/model_stats/{{model}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/model_stats.py"


rule ablation_stats:
    input:
        f"{RESULTS}/{{model}}/ablation/kl_long.tsv",
    output:
        tsv=report(
            f"{RESULTS}/{{model}}/ablation/auc_ci.tsv",
            caption="../report/ablation_ci.rst",
            category="3. Ablation",
            subcategory="{model}",
        ),
        json=f"{RESULTS}/{{model}}/ablation/auc_ci.json",
    params:
        stats=config["stats"],
        code=code_hash("stats"),
    log:
        f"{RESULTS}/logs/ablation_stats/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/ablation_stats.py"


rule plot_model_stats:
    input:
        phiid=f"{RESULTS}/{{model}}/phiid/phiid.npz",
        categories=f"{RESULTS}/{{model}}/stats/category_profiles.tsv",
    output:
        graphs=report(
            f"{RESULTS}/{{model}}/figures/fig3bc_graphs.png",
            caption="../report/fig3bc.rst",
            category="5. Statistics",
            subcategory="{model}",
        ),
        categories=report(
            f"{RESULTS}/{{model}}/figures/category_profiles.png",
            caption="../report/categories.rst",
            category="5. Statistics",
            subcategory="{model}",
        ),
        pdfs=multiext(
            f"{RESULTS}/{{model}}/figures/", "fig3bc_graphs.pdf", "category_profiles.pdf"
        ),
    params:
        fraction=config["stats"]["graph_fraction"],
        code=code_hash("plots", "graphs"),
    log:
        f"{RESULTS}/logs/plot_model_stats/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_model_stats.py"


rule plot_progression:
    input:
        profiles=lambda wc: expand(
            f"{RESULTS}/{{model}}/ranking/layer_profile.tsv", model=FAMILIES[wc.family]
        ),
        scores=lambda wc: expand(
            f"{RESULTS}/{{model}}/stats/profile_scores.tsv", model=FAMILIES[wc.family]
        ),
    output:
        profiles=report(
            f"{RESULTS}/figures/fig3a_progression_{{family}}.png",
            caption="../report/fig3a.rst",
            category="6. Training progression",
            subcategory="{family}",
        ),
        score=report(
            f"{RESULTS}/figures/inverted_u_vs_step_{{family}}.png",
            caption="../report/score_vs_step.rst",
            category="6. Training progression",
            subcategory="{family}",
        ),
        pdfs=multiext(
            f"{RESULTS}/figures/",
            "fig3a_progression_{family}.pdf",
            "inverted_u_vs_step_{family}.pdf",
        ),
    params:
        models=lambda wc: FAMILIES[wc.family],
        revisions=lambda wc: {m: config["models"][m]["revision"] for m in FAMILIES[wc.family]},
        code=code_hash("plots"),
    log:
        f"{RESULTS}/logs/plot_progression/{{family}}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_progression.py"


rule summary:
    input:
        unpack(summary_inputs),
    output:
        report(
            f"{RESULTS}/summary.tsv",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
    params:
        specs={m: model_spec(config, m) for m in MODELS},
        ablated=ablated_models(config),
        code=code_hash("stats"),
    log:
        f"{RESULTS}/logs/summary.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/summary.py"

# Figures (PNG for the report, PDF for papers), each figure key with its <key>_pdf. Light jobs.
# Layer profiles (Fig 2c, Fig 3a) come with their bootstrap intervals (stats/layer_ci.tsv) and
# are drawn against the random-init twins of config.paired_comparisons.

# The random-init twin of each model that has one; of each progression family ([] if none).
TWIN = {m: o for m, o, kind in COMPARISONS if kind == "random"}
FAMILY_TWIN = {
    f: [t for t in dict.fromkeys(TWIN.get(m) for m in members) if t][:1]
    for f, members in FAMILIES.items()
}
# What Fig 2c needs to group and style each model.
PROFILE_SPECS = {
    m: {
        "init": spec.get("init", "pretrained"),
        "family": spec.get("family", m),
        "revision": spec.get("revision"),
        "twin": TWIN.get(m),
    }
    for m, spec in config["models"].items()
}


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
        fig2a_pdf=f"{RESULTS}/{{model}}/figures/fig2a_pairwise.pdf",
        fig2b=report(
            f"{RESULTS}/{{model}}/figures/fig2b_syn_red.png",
            caption="../report/fig2b.rst",
            category="2. Ranking",
            subcategory="{model}",
        ),
        fig2b_pdf=f"{RESULTS}/{{model}}/figures/fig2b_syn_red.pdf",
        scatter=report(
            f"{RESULTS}/{{model}}/figures/synergy_vs_redundancy.png",
            caption="../report/scatter.rst",
            category="4. Diagnostics",
            subcategory="{model}",
        ),
        scatter_pdf=f"{RESULTS}/{{model}}/figures/synergy_vs_redundancy.pdf",
        nan=report(
            f"{RESULTS}/{{model}}/figures/nan_counts.png",
            caption="../report/nan_counts.rst",
            category="4. Diagnostics",
            subcategory="{model}",
        ),
        nan_pdf=f"{RESULTS}/{{model}}/figures/nan_counts.pdf",
    log:
        f"{RESULTS}/logs/plot_model/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        code=code_of("plot_model"),
    script:
        "../scripts/plot_model.py"


rule plot_ablation:
    input:
        summary=f"{RESULTS}/{{model}}/ablation/summary.tsv",
        auc=f"{RESULTS}/{{model}}/ablation/auc.tsv",
    output:
        fig4a=report(
            f"{RESULTS}/{{model}}/figures/fig4a_ablation.png",
            caption="../report/fig4a.rst",
            category="3. Ablation",
            subcategory="{model}",
        ),
        fig4a_pdf=f"{RESULTS}/{{model}}/figures/fig4a_ablation.pdf",
    log:
        f"{RESULTS}/logs/plot_ablation/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        code=code_of("plot_ablation"),
    script:
        "../scripts/plot_ablation.py"


rule plot_profiles:
    input:
        layer_ci=expand(f"{RESULTS}/{{model}}/stats/layer_ci.tsv", model=MODELS),
    output:
        fig2c=report(
            f"{RESULTS}/figures/fig2c_layer_profiles.png",
            caption="../report/fig2c.rst",
            category="2. Ranking",
            subcategory="all models",
        ),
        fig2c_pdf=f"{RESULTS}/figures/fig2c_layer_profiles.pdf",
    log:
        f"{RESULTS}/logs/plot_profiles.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=MODELS,
        specs=PROFILE_SPECS,
        ci=config["stats"]["ci"],
        code=code_of("plot_profiles"),
    script:
        "../scripts/plot_profiles.py"


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
        graphs_pdf=f"{RESULTS}/{{model}}/figures/fig3bc_graphs.pdf",
        categories=report(
            f"{RESULTS}/{{model}}/figures/category_profiles.png",
            caption="../report/categories.rst",
            category="5. Statistics",
            subcategory="{model}",
        ),
        categories_pdf=f"{RESULTS}/{{model}}/figures/category_profiles.pdf",
    log:
        f"{RESULTS}/logs/plot_model_stats/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        fraction=config["stats"]["graph_fraction"],
        code=code_of("plot_model_stats"),
    script:
        "../scripts/plot_model_stats.py"


rule plot_progression:
    input:
        layer_ci=lambda wc: expand(
            f"{RESULTS}/{{model}}/stats/layer_ci.tsv", model=FAMILIES[wc.family]
        ),
        scores=lambda wc: expand(
            f"{RESULTS}/{{model}}/stats/profile_scores.tsv", model=FAMILIES[wc.family]
        ),
        twin_layer_ci=lambda wc: expand(
            f"{RESULTS}/{{model}}/stats/layer_ci.tsv", model=FAMILY_TWIN[wc.family]
        ),
        twin_scores=lambda wc: expand(
            f"{RESULTS}/{{model}}/stats/profile_scores.tsv", model=FAMILY_TWIN[wc.family]
        ),
    output:
        profiles=report(
            f"{RESULTS}/figures/fig3a_progression_{{family}}.png",
            caption="../report/fig3a.rst",
            category="6. Training progression",
            subcategory="{family}",
        ),
        profiles_pdf=f"{RESULTS}/figures/fig3a_progression_{{family}}.pdf",
        score=report(
            f"{RESULTS}/figures/inverted_u_vs_step_{{family}}.png",
            caption="../report/score_vs_step.rst",
            category="6. Training progression",
            subcategory="{family}",
        ),
        score_pdf=f"{RESULTS}/figures/inverted_u_vs_step_{{family}}.pdf",
    log:
        f"{RESULTS}/logs/plot_progression/{{family}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=lambda wc: FAMILIES[wc.family],
        revisions=lambda wc: {m: config["models"][m]["revision"] for m in FAMILIES[wc.family]},
        twin=lambda wc: (FAMILY_TWIN[wc.family] or [None])[0],
        ci=config["stats"]["ci"],
        code=code_of("plot_progression"),
    script:
        "../scripts/plot_progression.py"


# Each verdict against model size (scaling.models; config/pythia-scaling.yaml): drawn from the
# summary table, so it computes nothing and needs nothing else.
rule plot_scaling:
    input:
        summary=f"{RESULTS}/summary.tsv",
    output:
        scaling=report(
            f"{RESULTS}/figures/scaling.png",
            caption="../report/scaling.rst",
            category="9. Scaling",
        ),
        scaling_pdf=f"{RESULTS}/figures/scaling.pdf",
    log:
        f"{RESULTS}/logs/plot_scaling.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=SCALED,
        ci=config["stats"]["ci"],
        code=code_of("plot_scaling"),
    script:
        "../scripts/plot_scaling.py"

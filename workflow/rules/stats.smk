# Statistics beyond the paper (bootstrap CIs, split halves, surrogate null, graphs, categories)
# and the one-row-per-model verdict table (TSV, JSON, and HTML pages of it and of each model's key
# tables for the report). Their figures are in plots.smk.


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
    log:
        f"{RESULTS}/logs/model_stats/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/model_stats/{{model}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    params:
        stats=dict(sorted(config["stats"].items())),
        tau=config["phiid"]["tau"],
        code=code_of("model_stats"),
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
    log:
        f"{RESULTS}/logs/ablation_stats/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        stats=pick("stats", "n_boot", "seed", "ci"),
        code=code_of("ablation_stats"),
    script:
        "../scripts/ablation_stats.py"


rule summary:
    input:
        diagnostics=expand(f"{RESULTS}/{{model}}/ranking/diagnostics.json", model=MODELS),
        scores=expand(f"{RESULTS}/{{model}}/stats/profile_scores.tsv", model=MODELS),
        stats=expand(f"{RESULTS}/{{model}}/stats/stats.json", model=MODELS),
        graphs=expand(f"{RESULTS}/{{model}}/stats/graphs.tsv", model=MODELS),
        ablation=expand(f"{RESULTS}/{{model}}/ablation/auc_ci.tsv", model=ABLATED),
        ablation_json=expand(f"{RESULTS}/{{model}}/ablation/auc_ci.json", model=ABLATED),
        comparisons=[f"{RESULTS}/{m}/comparisons/vs_{o}.tsv" for m, o, _ in COMPARISONS],
        perturbation_accuracy=expand(
            f"{RESULTS}/{{model}}/perturbation/accuracy.tsv", model=PERTURBED
        ),
        perturbation_tests=expand(f"{RESULTS}/{{model}}/perturbation/tests.tsv", model=PERTURBED),
        finetune_accuracy=expand(f"{RESULTS}/{{model}}/finetune/accuracy.tsv", model=FINETUNED),
        finetune_groups=expand(f"{RESULTS}/{{model}}/finetune/groups.tsv", model=FINETUNED),
        finetune_tests=expand(f"{RESULTS}/{{model}}/finetune/tests.tsv", model=FINETUNED),
        finetune_interaction=expand(
            f"{RESULTS}/{{model}}/finetune/interaction.tsv", model=FINETUNED
        ),
    output:
        # the TSV and JSON for analysis; the HTML pages show the tables inside the report (which
        # offers a TSV only as a download), each model's next to its TSV
        tsv=report(
            f"{RESULTS}/summary.tsv",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
        json=report(
            f"{RESULTS}/summary.json",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
        html=report(
            f"{RESULTS}/summary.html",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
        scores_html=[
            report(
                f"{RESULTS}/{m}/stats/profile_scores.html",
                caption="../report/profile_scores.rst",
                category="5. Statistics",
                subcategory=m,
            )
            for m in MODELS
        ],
        graphs_html=[
            report(
                f"{RESULTS}/{m}/stats/graphs.html",
                caption="../report/graphs_table.rst",
                category="5. Statistics",
                subcategory=m,
            )
            for m in MODELS
        ],
        ablation_html=[
            report(
                f"{RESULTS}/{m}/ablation/auc_ci.html",
                caption="../report/ablation_ci.rst",
                category="3. Ablation",
                subcategory=m,
            )
            for m in ABLATED
        ],
        perturbation_accuracy_html=[
            report(
                f"{RESULTS}/{m}/perturbation/accuracy.html",
                caption="../report/perturbation_accuracy.rst",
                category="7. Perturbation",
                subcategory=m,
            )
            for m in PERTURBED
        ],
        perturbation_tests_html=[
            report(
                f"{RESULTS}/{m}/perturbation/tests.html",
                caption="../report/perturbation_tests.rst",
                category="7. Perturbation",
                subcategory=m,
            )
            for m in PERTURBED
        ],
        finetune_tests_html=[
            report(
                f"{RESULTS}/{m}/finetune/tests.html",
                caption="../report/finetune_tests.rst",
                category="8. Fine-tuning",
                subcategory=m,
            )
            for m in FINETUNED
        ],
    log:
        f"{RESULTS}/logs/summary.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=MODELS,
        ablated=ABLATED,
        comparisons=COMPARISONS,
        perturbed=PERTURBED,
        perturbation_alpha=config["perturbation"]["verdict_alpha"],
        finetuned=FINETUNED,
        finetune_selection=config["finetune"]["verdict_selection"],
        specs={m: dict(weights_of(m), family=config["models"][m]["family"]) for m in MODELS},
        code=code_of("summary"),
    script:
        "../scripts/summary.py"

# The paper's Fig 4b: task accuracy with Gaussian noise on the synergistic core, the redundant
# core and random head sets (workflow/synergy_core/perturb.py). download_datasets runs where
# Snakemake runs (the login node, which has the network); the parts are GPU jobs, each a
# round-robin share of one model's units of work; the merge and statistics are light.


# The merge scores every answer with math-verify (minutes of CPU for the paper configuration),
# so it is a job, not a local rule.
localrules:
    download_datasets,
    prepare_task,
    perturbation_stats,
    plot_perturbation,


if DOWNLOADS:

    rule download_datasets:
        output:
            [path for _, path in DOWNLOADS],
        log:
            f"{RESULTS}/logs/download_datasets.log",
        conda:
            "../../envs/torch.yaml"
        params:
            tasks=[task for task, _ in DOWNLOADS],
        script:
            "../scripts/download_datasets.py"

else:

    rule download_datasets:
        log:
            f"{RESULTS}/logs/download_datasets.log",
        conda:
            "../../envs/analysis.yaml"
        shell:
            "echo 'synergy-core: this configuration downloads no task data' | tee {log}"


rule prepare_task:
    input:
        [TASK_SOURCE] if TASK_SOURCE else [],
    output:
        TASK_JSON,
    log:
        f"{RESULTS}/logs/prepare_task.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        task=config["perturbation"]["task"],
        n_problems=config["perturbation"]["n_problems"],
        code=code_of("prepare_task"),
    script:
        "../scripts/prepare_task.py"


rule perturbation_part:
    input:
        task=TASK_JSON,
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
    output:
        PERTURBATION_PART,
    log:
        f"{RESULTS}/logs/perturbation_part/{{model}}/part_{{part}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/perturbation_part/{{model}}/part_{{part}}.tsv"
    conda:
        "../../envs/torch.yaml"
    # 1 locally: two GPU-rule jobs share 2 cores side by side (the demo); a SLURM profile gives
    # the job its GPU bundle's cores (set-threads)
    threads: 1
    resources:
        gpu=1,
    params:
        spec=spec_of,
        perturbation=perturbation_settings,
        n_parts=N_PARTS,
        device=config["generation"]["device"],
        code=code_of("perturbation_part"),
    script:
        "../scripts/perturbation_part.py"


rule perturbation_merge:
    input:
        parts=perturbation_parts,
        task=TASK_JSON,
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
    output:
        problems=f"{RESULTS}/{{model}}/perturbation/problems.tsv",
        sets=f"{RESULTS}/{{model}}/perturbation/head_sets.json",
        scoring=f"{RESULTS}/{{model}}/perturbation/scoring.json",
    log:
        f"{RESULTS}/logs/perturbation_merge/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        perturbation=perturbation_settings,
        spec=spec_of,
        # the parts' code too: after a change of n_parts, parts that never ran have no record
        # of their code to compare with
        code=[code_of("perturbation_merge"), code_of("perturbation_part")],
    script:
        "../scripts/perturbation_merge.py"


rule perturbation_stats:
    input:
        f"{RESULTS}/{{model}}/perturbation/problems.tsv",
    output:
        accuracy=report(
            f"{RESULTS}/{{model}}/perturbation/accuracy.tsv",
            caption="../report/perturbation_accuracy.rst",
            category="7. Perturbation",
            subcategory="{model}",
        ),
        sets=f"{RESULTS}/{{model}}/perturbation/sets.tsv",
        tests=report(
            f"{RESULTS}/{{model}}/perturbation/tests.tsv",
            caption="../report/perturbation_tests.rst",
            category="7. Perturbation",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/perturbation_stats/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        stats=pick("stats", "n_boot", "seed", "ci"),
        code=code_of("perturbation_stats"),
    script:
        "../scripts/perturbation_stats.py"


rule plot_perturbation:
    input:
        accuracy=expand(f"{RESULTS}/{{model}}/perturbation/accuracy.tsv", model=PERTURBED),
        sets=expand(f"{RESULTS}/{{model}}/perturbation/sets.tsv", model=PERTURBED),
        tests=expand(f"{RESULTS}/{{model}}/perturbation/tests.tsv", model=PERTURBED),
    output:
        fig4b=report(
            f"{RESULTS}/figures/fig4b_perturbation.png",
            caption="../report/fig4b.rst",
            category="7. Perturbation",
        ),
        fig4b_pdf=f"{RESULTS}/figures/fig4b_perturbation.pdf",
    log:
        f"{RESULTS}/logs/plot_perturbation.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=PERTURBED,
        verdict_alpha=config["perturbation"]["verdict_alpha"],
        ci=config["stats"]["ci"],
        task=config["perturbation"]["task"],
        code=code_of("plot_perturbation"),
    script:
        "../scripts/plot_perturbation.py"

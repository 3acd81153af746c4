# The paper's Fig 5: fine-tuning only the synergistic, redundant or a random region of the
# heads with GRPO and SFT (workflow/synergy_core/finetune.py, finetune_train.py). The training
# parts and the evaluation parts are GPU jobs; a training part resumes each of its runs from the
# last checkpoint in its scratch directory, so a job killed at its wall time loses at most
# finetune.checkpoint_every steps when it is run again.


localrules:
    prepare_finetune_data,
    finetune_stats,
    plot_finetune,


rule prepare_finetune_data:
    input:
        [path for path in FINETUNE_SOURCES.values() if path],
    output:
        FINETUNE_DATA,
    log:
        f"{RESULTS}/logs/prepare_finetune_data.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        finetune=FINETUNE,
        sources=FINETUNE_SOURCES,
        code=code_of("prepare_finetune_data"),
    script:
        "../scripts/prepare_finetune_data.py"


rule finetune_train:
    input:
        data=FINETUNE_DATA,
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
    output:
        directory(FINETUNE_TRAIN_PART),
    log:
        f"{RESULTS}/logs/finetune_train/{{model}}/part_{{part}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune_train/{{model}}/part_{{part}}.tsv"
    conda:
        "../../envs/torch.yaml"
    # one thread: a run of the demo's tiny model gains nothing from a second, and the CPU demo
    # then runs it beside another job (the Narval profile gives GPU jobs 12)
    threads: 1
    resources:
        gpu=1,
    params:
        spec=spec_of,
        finetune=FINETUNE_TRAINING,
        n_parts=N_TRAIN_PARTS,
        scratch=finetune_scratch,
        checkpoint_every=config["finetune"]["checkpoint_every"],
        device=config["generation"]["device"],
        code=code_of("finetune_train"),
    script:
        "../scripts/finetune_train.py"


rule finetune_eval:
    input:
        unpack(finetune_train_dirs),
        data=FINETUNE_DATA,
        heads=f"{RESULTS}/{{model}}/ranking/heads.tsv",
    output:
        FINETUNE_EVAL_PART,
    log:
        f"{RESULTS}/logs/finetune_eval/{{model}}/part_{{part}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune_eval/{{model}}/part_{{part}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        spec=spec_of,
        finetune=FINETUNE,
        n_parts=N_EVAL_PARTS,
        n_train_parts=N_TRAIN_PARTS,
        device=config["generation"]["device"],
        code=code_of("finetune_eval"),
    script:
        "../scripts/finetune_eval.py"


# The merge scores every answer with math-verify, so it is a job, not a local rule.
rule finetune_merge:
    input:
        evals=finetune_eval_parts,
        trains=finetune_train_parts,
        data=FINETUNE_DATA,
    output:
        problems=f"{RESULTS}/{{model}}/finetune/problems.tsv",
        accuracy=f"{RESULTS}/{{model}}/finetune/accuracy.tsv",
        training=f"{RESULTS}/{{model}}/finetune/training.tsv",
        runs=f"{RESULTS}/{{model}}/finetune/runs.json",
    log:
        f"{RESULTS}/logs/finetune_merge/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        finetune=FINETUNE,
        spec=spec_of,
        code=[
            code_of("finetune_merge"),
            code_of("finetune_eval"),
            code_of("finetune_train"),
        ],
    script:
        "../scripts/finetune_merge.py"


rule finetune_stats:
    input:
        f"{RESULTS}/{{model}}/finetune/accuracy.tsv",
    output:
        runs=f"{RESULTS}/{{model}}/finetune/run_accuracy.tsv",
        groups=f"{RESULTS}/{{model}}/finetune/groups.tsv",
        tests=report(
            f"{RESULTS}/{{model}}/finetune/tests.tsv",
            caption="../report/finetune_tests.rst",
            category="8. Fine-tuning",
            subcategory="{model}",
        ),
        interaction=f"{RESULTS}/{{model}}/finetune/interaction.tsv",
    log:
        f"{RESULTS}/logs/finetune_stats/{{model}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        eval_from=config["finetune"]["eval_from"],
        ci=config["stats"]["ci"],
        code=code_of("finetune_stats"),
    script:
        "../scripts/finetune_stats.py"


rule plot_finetune:
    input:
        accuracy=expand(f"{RESULTS}/{{model}}/finetune/accuracy.tsv", model=FINETUNED),
        runs=expand(f"{RESULTS}/{{model}}/finetune/run_accuracy.tsv", model=FINETUNED),
        tests=expand(f"{RESULTS}/{{model}}/finetune/tests.tsv", model=FINETUNED),
    output:
        fig5=report(
            f"{RESULTS}/figures/fig5_finetune.png",
            caption="../report/fig5.rst",
            category="8. Fine-tuning",
        ),
        fig5_pdf=f"{RESULTS}/figures/fig5_finetune.pdf",
    log:
        f"{RESULTS}/logs/plot_finetune.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=FINETUNED,
        selection=config["finetune"]["verdict_selection"],
        code=code_of("plot_finetune"),
    script:
        "../scripts/plot_finetune.py"

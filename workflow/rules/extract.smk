# Greedy generation and per-head attention-output norms (a GPU rule on the cluster).


rule extract_activations:
    input:
        prompts=config["prompts"]["file"],
    output:
        f"{RESULTS}/{{model}}/activations.npz",
    params:
        spec=spec_of,
        prompts=config["prompts"],
        generation=config["generation"],
        code=code_hash("extract", "hooks", "models", "prompts"),
    resources:
        gpu=1,
    threads: 2
    log:
        f"{RESULTS}/logs/extract_activations/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_activations/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/extract_activations.py"

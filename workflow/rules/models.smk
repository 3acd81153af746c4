# Pre-download every configured hub model where the network is (compute nodes have none).


localrules:
    download_models,


rule download_models:
    output:
        touch(f"{RESULTS}/models/downloaded.flag"),
    log:
        f"{RESULTS}/logs/download_models.log",
    conda:
        "../../envs/torch.yaml"
    params:
        specs=[weights_of(m) for m in MODELS],
        # what the preflight found missing: a model missing from the cache (cleaned, or another
        # hf_home) reruns this rule although its flag file exists
        missing=sorted(MISSING_MODELS),
    script:
        "../scripts/download_models.py"

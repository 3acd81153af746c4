"""Rule download_models: fetch every configured hub model into the cache (needs the network)."""
from synergy_core.models import download, load_model, load_tokenizer
from synergy_core.runtime import start_rule

log = start_rule(snakemake, offline=False)
for spec in snakemake.params.specs:
    log.info("downloading %s revision %s", spec["hf_id"], spec.get("revision") or "main")
    download(spec)
    load_tokenizer(spec)  # proves the cached copy loads offline
    load_model(spec)
    log.info("ok: %s", spec["name"])

"""Rule download_models: fetch every configured hub model into the cache (needs the network)."""
from synergy_core.models import download
from synergy_core.runtime import start_rule

log = start_rule(snakemake, offline=False)
for spec in snakemake.params.specs:
    log.info("downloading %s revision %s (%s)", spec["hf_id"], spec.get("revision") or "main",
             "config and tokenizer" if spec.get("init") == "random" else "weights too")
    download(spec)
    log.info("ok: %s loads offline", spec["name"])

"""Rule download_datasets: store the configured task's data locally (needs the network)."""
from synergy_core.runtime import start_rule
from synergy_core.stages.perturb import run_download

start_rule(snakemake, offline=False)
for task, path in zip(snakemake.params.tasks, snakemake.output):
    run_download(task, path)

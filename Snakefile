# synergy-core: PhiID synergy/redundancy between attention heads, ranking, ablation.
# The rules live in workflow/rules/, one file per stage; the logic in the synergy_core package.
from snakemake.utils import min_version

min_version("8.20")


report: "workflow/report/workflow.rst"


# The paper configuration, unless --configfile names another. (Snakemake would otherwise merge the
# two, so the demo would also inherit the paper's models.) It is read strictly first, so that a
# YAML error names the file and line (Snakemake's own message names neither; for a --configfile,
# `python -m synergy_core.config FILE` does, see config/README.md).
if not workflow.overwrite_configfiles:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
    from synergy_core.config import load_yaml_strict

    if Path("config/config.yaml").is_file():  # else Snakemake says it is missing
        load_yaml_strict("config/config.yaml")

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/phiid.smk"
include: "workflow/rules/rank.smk"
include: "workflow/rules/ablate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/perturb.smk"
include: "workflow/rules/finetune.smk"


save_disk_cache()  # of the code hashes' parse results (workflow/synergy_core/codehash.py)


onstart:
    if not workflow.touch:  # --touch loads no model
        stop_if_models_missing(workflow.dag.needrun_jobs())


onsuccess:
    if any(job.rule.name == "summary" for job in workflow.dag.jobs):  # not download_models etc.
        print(
            f"\nsynergy-core: done. The verdict table: {RESULTS}/summary.tsv (the same with every "
            f"column's meaning: summary.json, summary.html); figures: {RESULTS}/figures/ and "
            f"{RESULTS}/<model>/figures/.\n"
            f"The HTML report with every figure and table: {report_command()}"
        )


onerror:
    print(
        f"\nsynergy-core: a job failed. Its cause is the last lines of its log under "
        f"{RESULTS}/logs/<rule>/ ('synergy-core: rule ... failed: ...', above the traceback), "
        "also printed above for a local job. Fix the cause and run the same command again: "
        "finished outputs are kept."
    )


rule all:
    default_target: True
    input:
        all_outputs(),

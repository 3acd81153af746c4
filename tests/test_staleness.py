"""The staleness matrix: what Snakemake reruns after a change, on a finished run.

One complete run of a two-model configuration (module fixture) is copied for every case (copies
keep mtimes and the .snakemake metadata, and are up to date: the first test checks it); each case
changes one thing and asserts the exact jobs `snakemake -n` plans. Where a change must rerun a
rule and its dependants, the expected jobs are derived from the DAG (`snakemake --dag`), so the
cases follow the workflow as it grows.

* ablation.n_random_orders -> ablate_heads and downstream
* generation.dtype equal to the models' own dtype -> nothing; ablation.dtype -> ablate_heads and
  downstream only (the compute settings reach each stage as its effective dtype)
* a model added to ablation.models -> only that model's ablation and its downstream
* hf_home moved -> nothing
* the scaling figure switched on (scaling.models) -> plot_scaling only, drawn from the summary
* the same config with its keys in another order -> nothing
* a model added -> its own chain and the rules that gather all models
* a comment edited in the plotting module or in a rule script -> nothing; code edited in the
  plotting module -> the plot rules only
* without the workflow profile (--workflow-profile none) -> a warning that says what will rerun
* the ranking module edited -> ranking, statistics and what depends on them
* the PhiID kernel edited -> the chunks and everything downstream
* phiid.n_chunks -> nothing (the chunk files change, the merged bytes do not: forcing the merge
  under the new layout gives the same bytes); phiid.block_pairs -> nothing
* prompt selection -> everything from extract_activations on
* the chunks are temp(): a finished run keeps only the merged files
* a run interrupted (SIGINT) right after its first PhiID chunk -> `--rerun-incomplete` runs the
  missing chunks and downstream only, and the outputs equal an uninterrupted run's bit for bit.
"""
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from worktree import copy_worktree

from synergy_core.io import load_arrays

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH"),
]

# Two built-in models (the second is not ablated), 6 prompts x 20 tokens, 3 PhiID chunks each:
# 26 jobs, ~40 s on 2 cores.
CONFIG = {
    "prompts": {"per_category": 1},
    "generation": {"num_tokens": 20, "device": "cpu"},
    "models": {"tiny-neox": {"hf_id": "builtin:tiny-gpt-neox", "seed": 0},
               "tiny-llama": {"hf_id": "builtin:tiny-llama", "seed": 0}},
    "phiid": {"n_chunks": 3},
    "ablation": {"models": ["tiny-neox"], "n_random_orders": 2},
    "stats": {"n_boot": 20, "n_splits": 5, "n_surrogates": 5, "n_boot_graph": 5},
}
CONFIG_FILE = "config/staleness.yaml"
SMK = ["snakemake", "--configfile", CONFIG_FILE]


def copy_repo(dst: Path) -> Path:
    return copy_worktree(REPO, dst)


def smk(work, *args, check=True, timeout=300):
    proc = subprocess.run([*SMK, *args], cwd=work, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-5000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def write_config(work, **changes):
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    for key, value in changes.items():
        if "__" in key:
            section, name = key.split("__")
            config[section][name] = value
        else:
            config[key] = value
    (work / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))


def pending(work, *args):
    """{rule: number of jobs} that `snakemake -n` would run ({} = nothing to do)."""
    out = smk(work, "-n", *args)
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def dag_of(work):
    """(node -> (rule, label), node -> set of nodes that use its outputs) of the whole DAG."""
    dot = smk(work, "--dag")
    nodes = {int(n): (label.split("\\n")[0], label)
             for n, label in re.findall(r'^\s*(\d+)\[label = "([^"]*)"', dot, re.M)}
    children = {n: set() for n in nodes}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M):
        children[int(a)].add(int(b))
    return nodes, children


def downstream(dag, seed):
    """{rule: jobs} of the jobs `seed(rule, label)` selects and every job downstream of them."""
    nodes, children = dag
    todo = [n for n, (rule, label) in nodes.items() if seed(rule, label)]
    assert todo, "no job selected"
    seen = set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(children[n])
    counts = {}
    for n in seen:
        counts[nodes[n][0]] = counts.get(nodes[n][0], 0) + 1
    return counts


def results_identical(a: Path, b: Path):
    """Every array of every .npz and every TSV/JSON table under results/ identical (bitwise)."""
    files = sorted(p.relative_to(a) for p in (a / "results").rglob("*")
                   if p.suffix in (".npz", ".tsv", ".json")
                   and not {"logs", "benchmarks"} & set(p.relative_to(a).parts))
    assert len(files) >= 10, files
    for rel in files:
        assert (b / rel).exists(), f"{rel} missing"
        if rel.suffix == ".npz":
            with np.load(a / rel) as x, np.load(b / rel) as y:
                assert sorted(x.files) == sorted(y.files), rel
                for key in x.files:
                    assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape
                    assert x[key].tobytes() == y[key].tobytes(), f"{rel}:{key} differs"
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete run of CONFIG (never modified; tests work on copies)."""
    work = copy_repo(tmp_path_factory.mktemp("finished") / "repo")
    write_config(work)
    smk(work, "--cores", "2")
    return work


@pytest.fixture(scope="module")
def dag(finished):
    return dag_of(finished)


@pytest.fixture
def work(finished, tmp_path):
    """A copy of the finished run: same mtimes, same .snakemake metadata."""
    return Path(shutil.copytree(finished, tmp_path / "repo", symlinks=True))


def test_finished_run_has_nothing_to_do(work):
    assert pending(work) == {}


def test_ablation_parameter_reruns_ablation_only(work, dag):
    write_config(work, ablation__n_random_orders=3)
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule == "ablate_heads")
    assert set(jobs) <= {"ablate_heads", "ablation_stats", "plot_ablation", "summary", "all"}


def test_compute_settings_rerun_what_they_change_only(work, dag):
    write_config(work, generation__dtype="float32")          # every model's own dtype
    assert pending(work) == {}
    write_config(work, ablation__dtype="bfloat16")
    assert pending(work) == downstream(dag, lambda rule, _: rule == "ablate_heads")


def test_model_added_to_ablation_reruns_only_its_ablation(work, dag):
    write_config(work, ablation__models=["tiny-neox", "tiny-llama"])
    assert pending(work) == {"ablate_heads": 1, "ablation_stats": 1, "plot_ablation": 1,
                             "summary": 1, "all": 1}
    out = smk(work, "-n")
    assert "output: results/tiny-llama/ablation/kl_long.tsv" in out
    assert "results/tiny-neox/ablation/kl_long.tsv," not in out.split("Job stats:")[0]


def test_reordered_config_keys_rerun_nothing(work):
    """Sections and the keys inside them in another order (the order of the models themselves
    is the order of the summary's rows and the figures' legends, so it stays)."""
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    reordered = {section: (dict(reversed(list(value.items())))
                           if isinstance(value, dict) and section != "models" else value)
                 for section, value in reversed(list(config.items()))}
    for spec in reordered["models"].values():
        spec_items = list(spec.items())
        spec.clear()
        spec.update(reversed(spec_items))
    (work / CONFIG_FILE).write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert pending(work) == {}


def test_added_model_runs_its_own_chain_and_the_gathering_rules(work):
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    config["models"]["tiny-gpt2"] = {"hf_id": "builtin:tiny-gpt2", "seed": 0}
    (work / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    jobs = pending(work)
    expected = downstream(dag_of(work), lambda rule, label: rule == "extract_activations"
                          and "model: tiny-gpt2" in label)
    assert jobs == expected
    assert jobs["extract_activations"] == 1 and jobs["plot_profiles"] == 1 and jobs["summary"] == 1


def test_moving_hf_home_reruns_nothing(work, tmp_path):
    write_config(work, hf_home=str(tmp_path / "elsewhere"))
    assert pending(work) == {}


def test_scaling_figure_switched_on_runs_its_plot_only_from_the_finished_summary(work):
    """scaling.models on a finished run: one light job, plot_scaling, and nothing reruns (the
    figure reads summary.tsv, whose n_parameters the extraction recorded: the loaded model's
    parameter count, carried by the PhiID and the ranking's diagnostics). Both models are drawn
    in the inverted-U panel, the ablated one only in the ablation panel, and the log says why."""
    from synergy_core.io import read_table
    from synergy_core.models import load_model

    write_config(work, scaling={"models": ["tiny-neox", "tiny-llama"]})
    assert pending(work) == {"plot_scaling": 1, "all": 1}
    smk(work, "--cores", "1")
    summary = read_table(work / "results" / "summary.tsv").set_index("model")
    for name, spec in CONFIG["models"].items():
        assert summary.loc[name, "n_parameters"] == sum(p.numel() for p in load_model(spec).parameters())
    assert (work / "results/figures/scaling.png").stat().st_size > 10000
    assert (work / "results/figures/scaling.pdf").stat().st_size > 1000
    log = (work / "results/logs/plot_scaling.log").read_text()
    assert "scaling figure (inverted_u): 2 of 2 models drawn" in log
    assert "scaling figure (ablation): 1 of 2 models drawn" in log
    assert "scaling figure (ablation): not drawn, not run (ablation.models): tiny-llama" in log
    assert pending(work) == {}


PLOT_RULES = {"plot_model", "plot_ablation", "plot_profiles", "plot_model_stats", "all"}


def edit_module(work, module, text):
    with open(work / "workflow" / "synergy_core" / module, "a") as fh:
        fh.write(text)


def test_comment_in_plotting_module_reruns_nothing(work):
    edit_module(work, "plots.py", "\n# a comment, and a blank line\n\n")
    assert pending(work) == {}


def test_comment_in_a_rule_script_reruns_nothing(work):
    """Snakemake's own `code` trigger would rerun a script rule whenever the script file is newer
    than its outputs; profiles/default leaves it out, the code hash in params decides."""
    with open(work / "workflow" / "scripts" / "plot_model.py", "a") as fh:
        fh.write("# a comment\n")
    assert pending(work) == {}


def test_without_the_workflow_profile_a_warning_says_what_reruns_needlessly(work):
    write_config(work, phiid__n_chunks=2)
    out = smk(work, "-n", "--workflow-profile", "none")
    assert "the rerun triggers include `input` or `code`" in out
    assert "phiid_merge" in out


def test_code_in_plotting_module_reruns_figures_only(work, dag):
    edit_module(work, "plots.py", "\n_EDITED = True\n")
    jobs = pending(work)
    assert set(jobs) == PLOT_RULES
    assert jobs == {r: n for r, n in downstream(dag, lambda rule, _: rule in PLOT_RULES).items()}


def test_ranking_module_reruns_ranking_statistics_and_dependants(work, dag):
    edit_module(work, "ranking.py", "\n_EDITED = True\n")
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule in ("rank_heads", "model_stats"))
    assert {"rank_heads", "model_stats", "ablate_heads", "summary"} <= set(jobs)
    assert not {"extract_activations", "phiid_chunk", "phiid_merge"} & set(jobs)


def test_phiid_kernel_reruns_chunks_and_everything_downstream(work, dag):
    edit_module(work, "phiid/kernel.py", "\n_EDITED = True\n")
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule == "phiid_chunk")
    assert jobs["phiid_chunk"] == 6 and "extract_activations" not in jobs


def test_tau_reruns_phiid_and_everything_downstream_not_extraction(work, dag):
    write_config(work, phiid__tau=2)
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule == "phiid_chunk")
    assert "extract_activations" not in jobs and jobs["rank_heads"] == 2


def test_n_chunks_reruns_nothing(work):
    """Other chunk files, the same merged bytes: with the workflow profile's rerun triggers
    (profiles/default) nothing is planned. Forcing the PhiID under the new layout reproduces
    the merged files bit for bit, and then nothing downstream is stale."""
    write_config(work, phiid__n_chunks=2)
    assert pending(work) == {}
    before = {m: (work / f"results/{m}/phiid/phiid.npz").read_bytes() for m in CONFIG["models"]}
    smk(work, "--cores", "2", "--forcerun", "phiid_merge", "--until", "phiid_merge")
    after = {m: (work / f"results/{m}/phiid/phiid.npz").read_bytes() for m in CONFIG["models"]}
    assert after == before
    # Newer but byte-identical inputs: Snakemake compares checksums of inputs up to 1 MB
    # (--max-checksum-file-size), so nothing downstream is stale. (Pythia-1B's merged file is
    # larger: a forced merge there reruns what follows it; changing n_chunks alone does not.)
    assert pending(work) == {}


def test_block_pairs_reruns_nothing(work):
    write_config(work, phiid__block_pairs=7)
    assert pending(work) == {}


def test_prompt_selection_reruns_everything(work, dag):
    write_config(work, prompts__first_k=4)
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule == "extract_activations")
    assert jobs == downstream(dag, lambda rule, _: True)  # that is, every job


def test_chunks_are_deleted_once_merged(finished):
    """Chunks are temp(): a finished run keeps only the merged files (and plans nothing)."""
    assert not list((finished / "results").glob("*/phiid/chunks/*/*.npz"))
    assert len(list((finished / "results").glob("*/phiid/phiid.npz"))) == 2


def test_interrupted_run_resumes_missing_chunks_only(work, dag, finished):
    """A first run that has extracted activations is killed outright (SIGKILL to Snakemake and
    its jobs, as a crashed login node or `kill -9` would) right after its first PhiID chunk
    finished. The same command then stops at Snakemake's lock (a killed Snakemake cannot remove
    it); `snakemake --unlock` and the same command again (the workflow profile sets
    rerun-incomplete) run only the chunks still missing and everything downstream, and the
    outputs equal the uninterrupted run's."""
    for f in (work / "results").rglob("*"):
        if f.is_file() and f.name not in ("activations.npz", "README.md"):
            f.unlink()
    log_path = work / "interrupted.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*SMK, "--cores", "1"], cwd=work, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if re.search(r"Finished jobid: \d+ \(Rule: phiid_chunk\)", log_path.read_text()):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log_path.read_text()
    assert proc.returncode != 0, text[-3000:]  # it was interrupted, not finished
    assert re.search(r"Finished jobid: \d+ \(Rule: phiid_chunk\)", text), text[-3000:]
    # The chunks on disk are the finished ones: outputs are written atomically, so a chunk
    # killed mid-write leaves no file. (Mapping the log's job ids to outputs proved fragile.)
    done = {str(p.relative_to(work)) for p in (work / "results").glob("*/phiid/chunks/n3/*.npz")}
    all_chunks = {f"results/{m}/phiid/chunks/n3/chunk_{k}.npz" for m in CONFIG["models"]
                  for k in range(CONFIG["phiid"]["n_chunks"])}
    assert done and done < all_chunks, (done, text[-3000:])
    for c in done:
        load_arrays(work / c, ("atoms",))  # complete and readable

    # only the missing chunks and what depends on them (not the extraction, not done chunks)
    jobs = pending(work)
    # Every model's merge and what follows were deleted, so everything downstream of the
    # chunks runs; of the chunks, only the missing ones. (The --dag labels do not always name
    # the model of a chunk, so chunks are counted rather than matched.)
    expected = downstream(dag, lambda rule, _: rule == "phiid_chunk")
    expected["phiid_chunk"] = len(all_chunks - done)
    assert jobs == expected
    assert jobs["phiid_chunk"] == len(all_chunks - done) and "extract_activations" not in jobs

    locked = smk(work, "--cores", "2", check=False)
    assert "LockException" in locked or "cannot be locked" in locked, locked[-3000:]
    smk(work, "--unlock")
    out = smk(work, "--cores", "2")   # the same command as the first run
    # the finished chunks were merged as they were, not recomputed (then deleted, being temp)
    assert len(re.findall(r"\(Rule: phiid_chunk\)", out)) == len(all_chunks - done)
    assert pending(work) == {}
    results_identical(finished, work)  # phiid.npz atoms, rankings, ablation, statistics

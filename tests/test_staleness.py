"""What Snakemake reruns after a change, on a finished run of a small configuration.

One complete run (module fixture) is copied for every case (copies keep mtimes and the
.snakemake metadata, and are up to date: the first test checks it); each case changes one
thing and reads the jobs of `snakemake -n`. The expected jobs are the changed rule's jobs and
everything downstream of them in the DAG (`snakemake --dag`), so the cases follow the workflow
as it grows; each case also names the rules that must NOT rerun.

* ablation.n_random_orders -> ablate_heads and downstream (ablation_stats, plot_ablation, summary)
* phiid.n_chunks -> phiid_chunk, phiid_merge and downstream, not extraction (the chunk
  boundaries change; the merged numbers do not, test_pipeline.py checks that)
* prompt selection -> everything from extract_activations on
* a modified chunk file -> phiid_merge and downstream; a merely touched one (newer mtime, same
  content) only when it is larger than --max-checksum-file-size (1 MB; these are ~26 kB)
* an edited package module (code hash in the rule's params) -> the rules using it and downstream
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

from synergy_core.io import load_arrays

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH"),
]

# One built-in model, 6 prompts x 20 tokens, 3 PhiID chunks: 15 jobs, ~30 s on 2 cores.
CONFIG = {
    "prompts": {"per_category": 1},
    "generation": {"num_tokens": 20, "device": "cpu"},
    "models": {"tiny-neox": {"hf_id": "builtin:tiny-gpt-neox", "seed": 0}},
    "phiid": {"n_chunks": 3},
    "ablation": {"n_random_orders": 2},
    "stats": {"n_boot": 20, "n_splits": 5, "n_surrogates": 5, "n_boot_graph": 5},
}
CONFIG_FILE = "config/staleness.yaml"
SMK = ["snakemake", "--configfile", CONFIG_FILE]
CHUNKS = "results/tiny-neox/phiid/chunks"


def copy_repo(dst: Path) -> Path:
    """The working tree (tracked and untracked-but-not-ignored files) without results."""
    listing = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout
    for name in filter(None, listing.decode().split("\0")):
        if (REPO / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dst / name)
    return dst


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
        section, name = key.split("__")
        config[section][name] = value
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


def test_n_chunks_reruns_phiid_and_downstream_not_extraction(work):
    write_config(work, phiid__n_chunks=2)
    jobs = pending(work)
    assert jobs == downstream(dag_of(work), lambda rule, _: rule == "phiid_chunk")
    assert jobs["phiid_chunk"] == 2 and jobs["phiid_merge"] == 1
    assert "extract_activations" not in jobs


def test_prompt_selection_reruns_everything(work, dag):
    write_config(work, prompts__first_k=4)
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule == "extract_activations")
    assert jobs == downstream(dag, lambda rule, _: True)  # that is, every job


def test_newer_chunk_reruns_merge_and_downstream_unless_its_checksum_is_unchanged(work, dag):
    """mtime counts (default rerun triggers), but Snakemake >= 8 also records the checksum of
    every input file up to --max-checksum-file-size (1 MB) and ignores a newer mtime when the
    content is unchanged. The demo's chunks are ~26 kB: touching one alone reruns nothing;
    Pythia-1B's are larger (~2 MB with 4 chunks), which the option set to 0 stands in for."""
    chunk = work / CHUNKS / "chunk_1.npz"
    later = chunk.stat().st_mtime + 60
    os.utime(chunk, (later, later))
    assert chunk.stat().st_size < 1_000_000
    assert pending(work) == {}
    jobs = pending(work, "--max-checksum-file-size", "0")
    assert jobs == downstream(dag, lambda rule, _: rule == "phiid_merge")
    assert "phiid_chunk" not in jobs and "extract_activations" not in jobs


def test_modified_chunk_reruns_merge_and_downstream(work, dag):
    chunk = work / CHUNKS / "chunk_1.npz"
    with np.load(chunk) as arrays:
        content = dict(arrays)
    with open(chunk, "wb") as fh:  # new content, newer mtime (only a dry run reads it)
        np.savez(fh, edited=np.array(1), **content)
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule == "phiid_merge")
    assert "phiid_chunk" not in jobs and "extract_activations" not in jobs


def test_edited_module_makes_its_rules_stale(work, dag):
    with open(work / "workflow" / "synergy_core" / "ranking.py", "a") as fh:
        fh.write("\n# an edit\n")
    jobs = pending(work)
    assert jobs == downstream(dag, lambda rule, _: rule == "rank_heads")
    assert not {"extract_activations", "phiid_chunk", "phiid_merge", "model_stats"} & set(jobs)


def test_interrupted_run_resumes_missing_chunks_only(work, dag, finished):
    """A first run that has extracted activations is interrupted (SIGINT to its process group)
    right after its first PhiID chunk finished; --rerun-incomplete then runs only the chunks
    still missing and everything downstream, and the outputs equal the uninterrupted run's."""
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
                os.killpg(proc.pid, signal.SIGINT)
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
    done = {str(p.relative_to(work)) for p in (work / CHUNKS).glob("*.npz")}
    all_chunks = {f"{CHUNKS}/chunk_{k}.npz" for k in range(CONFIG["phiid"]["n_chunks"])}
    assert done and done < all_chunks, (done, text[-3000:])
    for c in done:
        load_arrays(work / c, ("atoms",))  # complete and readable
    mtimes = {c: (work / c).stat().st_mtime_ns for c in done}

    # only the missing chunks and what depends on them (not the extraction, not done chunks)
    jobs = pending(work, "--rerun-incomplete")
    done_idx = {re.search(r"chunk_(\d+)\.npz$", c)[1] for c in done}
    expected = downstream(dag, lambda rule, label: rule == "phiid_chunk"
                          and re.search(r"chunk: (\d+)", label)[1] not in done_idx)
    assert jobs == expected
    assert jobs["phiid_chunk"] == len(all_chunks - done) and "extract_activations" not in jobs

    smk(work, "--cores", "2", "--rerun-incomplete")
    assert {c: (work / c).stat().st_mtime_ns for c in done} == mtimes  # not recomputed
    assert pending(work) == {}
    results_identical(finished, work)  # phiid.npz atoms, rankings, ablation, statistics

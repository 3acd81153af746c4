"""The SLURM profiles.

* Without a cluster: profiles/narval dry-runs the paper, demo, Fig 4b and Fig 5 configurations
  with the same jobs as a plain dry run, grouped as the README says (extractions in one GPU job,
  each model's PhiID chunks in one CPU job, the model statistics in one), each job within the
  profile's ceilings; the sbatch command lines it produces (captured by a stand-in `sbatch`)
  request the GPU as --gres=gpu:1 with memory and time sized by the model, and one job for a
  model's chunks.
* With a real throw-away single-node cluster (tests/slurm/start_cluster.sh; needs root and the
  packages of tests/slurm/install_deps.sh; marked `slurm`): a small configuration of the whole
  workflow runs through profiles/slurm-test, sacct shows every (group) job COMPLETED with the
  routed resources, and every output equals a local run's bit for bit; a second run has a job
  cancelled (retried) and its Snakemake killed, and `python -m synergy_core.resume` finishes it
  without duplicate jobs, with outputs equal to a local run's.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from worktree import copy_worktree

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH")

GPU_RULES = ("extract_activations", "ablate_heads", "perturbation_part", "finetune_train", "finetune_eval")

# The whole workflow on one built-in model, small enough for a few minutes through SLURM (the
# demo's 55 jobs would take ~8 min there: every SLURM job costs ~10 s of start-up on this node).
# Written into the copy of the repo that runs it.
SMALL_CONFIG = """\
prompts:
  per_category: 1           # 6 prompts
generation:
  num_tokens: 20
  device: cpu
models:
  tiny-neox:
    hf_id: builtin:tiny-gpt-neox
    seed: 0
phiid:
  n_chunks: 2
ablation:
  n_random_orders: 2
stats:
  n_boot: 20
  n_splits: 5
  n_surrogates: 5
  n_boot_graph: 5
"""

# What the paper configuration submits on Narval (README, "Cluster"): 1 GPU job for the 13
# extractions, 13 CPU jobs of PhiID chunks, 1 CPU job of model statistics, the GPU ablation.
PAPER_SUBMITTED_JOBS = 16

# The SLURM jobs SMALL_CONFIG submits through profiles/slurm-test (sacct comment -> time limit):
# one group job per group (wall time: the sum of its jobs' sized times, 10 min per extraction
# and PhiID chunk of a built-in model) and the ablation (30 min, the sizing's floor).
SMALL_CONFIG_JOBS = {
    "rule_gpu_extraction_extract_activations": "00:10:00",
    "rule_phiid_tiny-neox_phiid_chunk": "00:20:00",
    "rule_model_statistics_model_stats": "00:10:00",
    "rule_ablate_heads_wildcards_tiny-neox": "00:30:00",
}


# ------------------------------------------------------------------------------------- helpers
def copy_repo(dst: Path, src: Path = REPO) -> Path:
    """Copy the working tree into dst: no results, no .snakemake, no venv. The workflow writes
    results/ relative to the directory it runs in."""
    return copy_worktree(src, dst)


def run(cmd, cwd, env=None, timeout=300, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def load_profile(name):
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def job_blocks(dry_run_output):
    """(rule, {resource: value}) for every job block of a dry run's output (group members are
    indented)."""
    blocks = []
    for block in re.split(r"\n(?=\s*\[[^\n]*\]\n\s*(?:local)?rule )", dry_run_output):
        rule = re.search(r"^\s*(?:local)?rule (\w+):", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule:
            pairs = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
            blocks.append((rule.group(1), pairs))
    return blocks


def local_rules():
    """The workflow's localrules (run where Snakemake runs) and the target rule `all`."""
    names = {"all"}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.findall(r"^localrules:\n((?:    \w+,?\n)+)", smk.read_text(), re.M):
            names |= set(re.findall(r"\w+", block))
    return names


def submitted_jobs(dry_run_output):
    """What a SLURM run of this dry run submits: ``{group id: [member rules]}`` for the group
    jobs and ``[rule, ...]`` for the jobs submitted alone (local rules and `all` excluded)."""
    groups, parts = {}, re.split(r"^\[[^\n]*\] Group job (\S+) \(jobs in lexicogr. order\):$",
                                 dry_run_output, flags=re.M)
    for group, body in zip(parts[1::2], parts[2::2]):
        members = body.split("\n\n[", 1)[0] if "\n\n[" in body else body
        groups[group] = re.findall(r"^    rule (\w+):", members, re.M)
    grouped = sum(len(m) for m in groups.values())
    alone = [rule for rule, _ in job_blocks(dry_run_output)]
    alone = [r for r in alone if r not in local_rules()]
    # the members of the groups are in job_blocks too: drop one occurrence per member
    for members in groups.values():
        for rule in members:
            alone.remove(rule)
    assert grouped == sum(len(m) for m in groups.values())
    return groups, alone


def job_counts(dry_run_output):
    table = dry_run_output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def narval_env(tmp_path):
    return dict(os.environ, SLURM_ACCOUNT="def-dummy", SCRATCH=str(tmp_path / "scratch"))


# ------------------------------------------------------------------ Narval profile, no cluster
@pytest.mark.parametrize("config", [[], ["--configfile", "config/demo.yaml"],
                                    ["--configfile", "config/fig4b.yaml"],
                                    ["--configfile", "config/fig5.yaml"],
                                    ["--configfile", "config/pythia-scaling.yaml"]],
                         ids=["paper", "demo", "fig4b", "fig5", "pythia-scaling"])
def test_narval_profile_dry_run(tmp_path, config):
    """The profile changes resources only: the same jobs as a plain dry run, each with the
    account from $SLURM_ACCOUNT; GPU rules with gres gpu:1 and a GPU bundle, PhiID chunks with
    their CPUs = threads; no rule with `tasks`."""
    profile = load_profile("narval")
    plain = run(["snakemake", "-n", "--forceall", *config], cwd=REPO).stdout
    out = run(["snakemake", "-n", "--forceall", "--profile", "profiles/narval", *config],
              cwd=REPO, env=narval_env(tmp_path)).stdout
    counts = job_counts(out)
    assert counts == job_counts(plain)
    config_file = yaml.safe_load((REPO / (config[1] if config else "config/config.yaml")).read_text())
    expected = ["extract_activations", "phiid_chunk", "phiid_merge", "rank_heads", "plot_model", "plot_profiles"]
    if config_file.get("ablation", {}).get("enabled", True):
        expected += ["ablate_heads", "plot_ablation"]
    if config_file.get("perturbation", {}).get("models"):
        expected += ["perturbation_part", "perturbation_merge", "perturbation_stats", "plot_perturbation"]
        assert counts["perturbation_part"] == (len(config_file["perturbation"]["models"])
                                               * config_file["perturbation"]["n_parts"])
    finetune = config_file.get("finetune", {})
    if finetune.get("models"):
        expected += ["finetune_train", "finetune_eval", "finetune_merge", "finetune_stats", "plot_finetune"]
        n_runs = len(finetune.get("methods", ["grpo", "sft"])) * 3 * finetune["n_seeds"]
        assert counts["finetune_train"] == len(finetune["models"]) * (finetune.get("n_train_parts") or n_runs)
        assert counts["finetune_eval"] == len(finetune["models"]) * finetune["n_eval_parts"]
    if config_file.get("scaling", {}).get("models"):
        expected += ["plot_scaling"]
        assert counts["plot_scaling"] == 1
    else:
        assert "plot_scaling" not in counts, counts
    for rule in expected:
        assert counts.get(rule, 0) >= 1, (rule, counts)
    from synergy_core.config import load_schema

    n_chunks = config_file.get("phiid", {}).get(
        "n_chunks", load_schema()["properties"]["phiid"]["properties"]["n_chunks"]["default"])
    assert counts["phiid_chunk"] == counts["phiid_merge"] * n_chunks
    blocks = job_blocks(out)
    assert {rule for rule, _ in blocks} == set(counts)
    set_res, set_threads = profile["set-resources"], profile["set-threads"]
    caps = profile["resources"]
    for rule, res in blocks:
        assert res["slurm_account"] == "def-dummy", (rule, res)  # $SLURM_ACCOUNT was expanded
        assert "tasks" not in res and 10 <= int(res["runtime"]) <= caps["runtime"], (rule, res)
        assert int(res["mem_mb"]) <= caps["mem_mb"], (rule, res)  # within one GPU bundle
        if rule in GPU_RULES:
            assert res["gres"] == "gpu:1" and res["gpu"] == "0", (rule, res)
            assert res["cpus_per_task"] == "12" == str(set_threads[rule]), (rule, res)
        else:
            assert "gres" not in res and res.get("gpu", "0") == "0", (rule, res)
        if rule == "phiid_chunk":
            assert res["cpus_per_task"] == str(set_res[rule]["cpus_per_task"]), res
            assert set_res[rule]["cpus_per_task"] == set_threads[rule]
    # grouped: every extraction in one GPU job, each model's PhiID chunks in one CPU job, the
    # model statistics in one CPU job; everything else alone
    groups, alone = submitted_jobs(out)
    assert groups.pop("gpu_extraction") == ["extract_activations"] * counts["extract_activations"]
    assert groups.pop("model_statistics") == ["model_stats"] * counts["model_stats"]
    assert len(groups) == counts["phiid_merge"], groups
    assert all(members == ["phiid_chunk"] * n_chunks for members in groups.values()), groups
    assert not {"extract_activations", "phiid_chunk", "model_stats"} & set(alone), alone
    if not config:  # the paper configuration: the README's numbers
        assert len(alone) == 1 and alone == ["ablate_heads"], alone
        assert len(groups) + 2 + len(alone) == PAPER_SUBMITTED_JOBS


@pytest.mark.parametrize("name", ["narval", "slurm-test"])
def test_profile_keys_are_snakemake_options(name):
    """Snakemake silently ignores a profile key that is no option (e.g. `resource-scopes` for
    `set-resource-scopes`): every key must be one, and the ceilings must be scoped per job."""
    from snakemake.cli import get_argument_parser

    options = {opt for action in get_argument_parser()._actions for opt in action.option_strings}
    profile = load_profile(name)
    assert [key for key in profile if f"--{key}" not in options] == []
    scopes = profile["set-resource-scopes"]
    assert {k for k in profile["resources"] if k != "mem_mb"} <= {k for k, v in scopes.items()
                                                                  if v == "local"}


FAKE_SLURM = {
    # records each submission, then refuses it (nothing runs)
    "sbatch": 'printf "%s\\n" "$*" >> "$FAKE_SBATCH_LOG"; echo "sbatch: error: fake" >&2; exit 1',
    "sacctmgr": 'echo "def-dummy"',                                           # the account check
    "sinfo": 'printf "PARTITION\\ncpubase_bycore_b1\\ngpubase_bygpu_b1\\n"',  # no default (*)
    "scontrol": "exit 1", "sacct": "exit 1", "squeue": "exit 1", "sshare": "exit 1",
}


def test_narval_profile_sbatch_options(tmp_path):
    """The sbatch lines profiles/narval produces, captured by a stand-in sbatch (no cluster):
    GPU rule -> --gres=gpu:1, 12 CPUs, memory and time sized by the model, no --gpus, no
    --ntasks; a model's PhiID chunks -> one group job with one chunk's CPUs, the chunks' summed
    time and one task; both charged to $SLURM_ACCOUNT, without a partition, logs under $SCRATCH."""
    profile = load_profile("narval")
    work = copy_repo(tmp_path / "repo")
    (work / "config" / "small.yaml").write_text(SMALL_CONFIG)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name, body in FAKE_SLURM.items():
        (fake_bin / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake_bin / name).chmod(0o755)
    log = tmp_path / "sbatch.log"
    env = dict(narval_env(tmp_path), PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
               FAKE_SBATCH_LOG=str(log))
    env.pop("SLURM_JOB_ID", None)
    small = ["--configfile", "config/small.yaml"]
    # Every output present and up to date (empty files, touched in DAG order); then force one
    # submission at a time: the GPU ablation, and both PhiID chunks (one group job).
    summary = run(["snakemake", "--summary", *small], cwd=work, env=env).stdout
    for line in summary.splitlines()[1:]:
        out = work / line.split("\t")[0]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    run(["snakemake", "--touch", "--cores", "1", *small], cwd=work, env=env)
    for targets in (["results/tiny-neox/ablation/auc.tsv"],
                    ["results/tiny-neox/phiid/chunks/n2/chunk_0.npz",
                     "results/tiny-neox/phiid/chunks/n2/chunk_1.npz"]):
        proc = run(["snakemake", "--profile", "profiles/narval", *small, "--force", *targets,
                    "--retries", "0", "--slurm-init-seconds-before-status-checks", "1"],
                   cwd=work, env=env, check=False, timeout=120)
        assert proc.returncode != 0  # the stand-in refuses every submission
    calls = log.read_text().splitlines() if log.exists() else []
    by_job = {}
    for call in calls:
        by_job[re.search(r"--comment '?rule_(\S+?)(?:_wildcards_\S*)?'?(?: |$)", call).group(1)] = call
    chunks = "phiid_tiny-neox_phiid_chunk"  # the group job of the model's two chunks
    assert set(by_job) == {"ablate_heads", chunks}, (calls, proc.stdout[-3000:])
    set_res = profile["set-resources"]
    # sized by the rules (a built-in model: 5 GB; ablation 30 min, the floor; a closed-form
    # chunk 10 min, two in the group job: one after the other on the 8 CPUs of one)
    expected = {"ablate_heads": dict(mem="5000", time="30", cpus=12),
                chunks: dict(mem=str(set_res["phiid_chunk"]["mem_mb"]), time="20", cpus=8)}
    for job, call in by_job.items():
        opts = call.split(" --wrap=")[0].split()  # sbatch's own options (before the job command)
        value = lambda opt, opts=opts: opts[opts.index(opt) + 1]  # noqa: E731
        assert value("-A") == "def-dummy", call
        assert "-p" not in opts, call  # Narval routes jobs to partitions itself
        assert value("--mem") == expected[job]["mem"], call
        assert value("-t") == expected[job]["time"], call
        assert f"--cpus-per-task={expected[job]['cpus']}" in opts, call
        assert not any(o.startswith(("--gpus", "--ntasks-per-gpu", "--cpus-per-gpu")) for o in opts)
        assert "--no-requeue" in opts, call  # Snakemake's retry is the only restart
        if job == "ablate_heads":
            assert "--gres=gpu:1" in opts, call
            assert not any(o.startswith("--ntasks") for o in opts), call
        else:
            assert not any(o.startswith("--gres") for o in opts), call
            assert "--ntasks=1" in opts, call
        # the plugin's log directory was expanded from $SCRATCH
        logdir = tmp_path / "scratch" / "synergy-core" / "slurm-logs"
        assert value("--output").startswith(f"{logdir}/"), call


# ------------------------------------------------------------------- real single-node cluster
CLUSTER_BINARIES = ("sbatch", "sacct", "sacctmgr", "slurmctld", "slurmd", "slurmdbd", "munged",
                    "mariadbd")


def _missing_slurm():
    missing = [b for b in CLUSTER_BINARIES if shutil.which(b, path=SBIN_PATH) is None]
    if missing:
        return (f"SLURM test cluster needs {', '.join(missing)} "
                "(install as root with tests/slurm/install_deps.sh)")
    if os.geteuid() != 0:
        return "the SLURM test cluster's daemons must be started as root"
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node cluster; yields the environment its exports set up."""
    reason = _missing_slurm()
    if reason:
        pytest.skip(reason)
    # short path: the daemons' Unix sockets live in it (start_cluster.sh allows 60 chars)
    state = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    env = dict(os.environ)
    env.update({f"SLURM_TEST_{k}_PORT": str(_free_port()) for k in ("CTLD", "SLURMD", "DBD", "DB")})
    try:
        start = subprocess.run([str(SLURM_DIR / "start_cluster.sh"), str(state)], env=env,
                               capture_output=True, text=True, timeout=180)
        if start.returncode != 0:
            raise RuntimeError(f"start_cluster.sh failed:\n{start.stderr[-8000:]}")
        for line in start.stdout.splitlines():
            m = re.fullmatch(r"export (\w+)=(.*)", line.strip())
            if m:
                env[m.group(1)] = os.path.expandvars(m.group(2).replace("$PATH", env["PATH"]))
        assert env.get("SLURM_CONF") and env.get("SLURM_TEST_ACCOUNT"), start.stdout
        env.pop("SLURM_JOB_ID", None)
        yield env
    finally:
        # keep the daemon and job logs for a post-mortem, then remove everything
        keep = tmp_path_factory.mktemp("slurm-cluster-logs")
        for sub in ("log", "slurm-logs"):
            if (state / sub).is_dir():
                shutil.copytree(state / sub, keep / sub, dirs_exist_ok=True)
        subprocess.run([str(SLURM_DIR / "stop_cluster.sh"), str(state), "--purge"], env=env,
                       capture_output=True, timeout=120)
        if state.exists() and not (state / ".slurm-test-cluster").exists():
            shutil.rmtree(state, ignore_errors=True)  # start failed before it marked the dir


def _run_in_group(cmd, cwd, env, log, timeout):
    """Run cmd in its own process group; on timeout SIGTERM (then SIGKILL) the group."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, time.monotonic() + timeout


def _wait(proc, deadline):
    try:
        return proc.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return None


def _sacct(env, run_id):
    fields = ["JobID", "JobName", "Partition", "AllocTRES", "ReqTRES", "NCPUS", "State", "Comment",
              "Timelimit", "Submit", "End"]
    out = run(["sacct", "-X", "-P", "-n", "--clusters", "all", "--starttime", "now-1days",
               "--name", run_id, "--format", ",".join(fields)], cwd=REPO, env=env).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
    # the plugin's comment: rule_<rule>[_wildcards_<values>], or rule_<group id>_<rules> for a
    # group job
    for row in rows:
        row["tres"] = dict(kv.split("=", 1) for kv in row["AllocTRES"].split(",") if kv)
    return rows


def _assert_same_outputs(a: Path, b: Path):
    """Every array of every .npz and every TSV/JSON under results/ identical (bit for bit)."""
    files = sorted(p.relative_to(a) for p in (a / "results").rglob("*")
                   if p.suffix in (".npz", ".tsv", ".json")
                   and not {"benchmarks", "logs"} & set(p.relative_to(a).parts))
    npz = [f for f in files if f.suffix == ".npz"]
    assert len(npz) >= 2 and len(files) >= 10, files  # activations, phiid (chunks are temp), tables
    assert [f for f in files if not (b / f).is_file()] == [], "missing in the local run"
    for rel in files:
        if rel.suffix != ".npz":
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"
            continue
        with np.load(a / rel) as x, np.load(b / rel) as y:
            assert sorted(x.files) == sorted(y.files), rel
            for key in x.files:
                assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, (rel, key)
                assert x[key].tobytes() == y[key].tobytes(), f"{rel}:{key} differs"


def _small_config_with_local_reference(tmp_path, env, profile):
    """One snapshot of the working tree with SMALL_CONFIG, copied for a SLURM run and a local
    reference run; the local run is started here and returned with the two directories.

    The local reference gives each rule the threads the profile gives it (torch and BLAS
    results may depend on the thread count). It runs at low priority alongside: the SLURM run,
    a chain of jobs with polling gaps, is the one that sets the test's duration."""
    src = copy_repo(tmp_path / "src")
    (src / "config" / "small.yaml").write_text(SMALL_CONFIG)
    on_slurm = copy_repo(tmp_path / "slurm", src)
    local = copy_repo(tmp_path / "local", src)
    threads = [f"{rule}={n}" for rule, n in profile["set-threads"].items()]
    local_run = _run_in_group(["nice", "-n", "15", "snakemake", "--cores", "2", "--configfile",
                               "config/small.yaml", "--set-threads", *threads],
                              local, env, tmp_path / "local.log", timeout=400)
    return on_slurm, local, local_run


@pytest.mark.slurm
def test_workflow_on_slurm_routes_resources_and_matches_local_run(slurm_cluster, tmp_path):
    env = slurm_cluster
    profile = load_profile("slurm-test")
    on_slurm, local, local_run = _small_config_with_local_reference(tmp_path, env, profile)
    small = ["--configfile", "config/small.yaml"]
    slurm_run = _run_in_group(["snakemake", "--profile", "profiles/slurm-test", *small],
                              on_slurm, env, tmp_path / "slurm.log", timeout=420)
    rc_slurm, rc_local = _wait(*slurm_run), _wait(*local_run)
    slurm_log = (tmp_path / "slurm.log").read_text()
    assert rc_slurm == 0, f"SLURM run failed or timed out ({rc_slurm}):\n{slurm_log[-8000:]}"
    assert rc_local == 0, (tmp_path / "local.log").read_text()[-8000:]

    # every job of the DAG but the local ones went through SLURM, in as few jobs as the profile's
    # groups make: each model's extractions in one GPU job, its PhiID chunks in one CPU job, the
    # model statistics in one CPU job; the ablation alone
    counts = job_counts(slurm_log)
    local_rules = set(re.findall(r"^localrule (\w+):", slurm_log, re.M))
    assert local_rules.isdisjoint({*GPU_RULES, "phiid_chunk", "model_stats"}), local_rules
    assert counts["extract_activations"] == counts["ablate_heads"] == 1, counts
    assert counts["phiid_chunk"] == 2, counts
    run_id = re.search(r"SLURM run ID: (\S+)", slurm_log).group(1)
    jobs = {job["Comment"]: job for job in _sacct(env, run_id)}
    assert set(jobs) == set(SMALL_CONFIG_JOBS), jobs
    assert {job["State"] for job in jobs.values()} == {"COMPLETED"}, jobs
    caps, set_res = profile["resources"], profile["set-resources"]
    for comment, job in jobs.items():
        tres = job["tres"]
        gpu = comment in ("rule_gpu_extraction_extract_activations",
                          "rule_ablate_heads_wildcards_tiny-neox")
        if gpu:  # gres from the rule (generation.gpus), memory from the model, capped
            assert job["Partition"] == "gpu" and tres.get("gres/gpu") == "1", job
            assert tres["mem"] == f"{caps['mem_mb']}M", job  # the rule asked for 5000
        else:
            assert job["Partition"] == "cpu" and "gres/gpu" not in tres, job
        assert int(job["NCPUS"]) == caps["cpus_per_task"], job
        assert job["Timelimit"] == SMALL_CONFIG_JOBS[comment], job
    assert jobs["rule_phiid_tiny-neox_phiid_chunk"]["tres"]["mem"] == (
        f"{set_res['phiid_chunk']['mem_mb']}M")
    # the rule's own thread count (2) was overridden: the job ran with what it was given
    chunk_log = (on_slurm / "results/logs/phiid_chunk/tiny-neox/chunk_0.log").read_text()
    assert f"threads {profile['set-threads']['phiid_chunk']}" in chunk_log

    _assert_same_outputs(on_slurm, local)


def _squeue_jobs(env, run_id):
    out = run(["squeue", "--noheader", "--name", run_id, "--format", "%i|%T|%k"], cwd=REPO,
              env=env).stdout
    return [dict(zip(("id", "state", "comment"), line.split("|", 2)))
            for line in out.splitlines() if line.strip()]


def _wait_for_running(env, log, comment_prefix, deadline):
    """The SLURM id of the first RUNNING job whose comment starts with comment_prefix."""
    while time.monotonic() < deadline:
        m = re.search(r"SLURM run ID: (\S+)", log.read_text()) if log.exists() else None
        if m:
            for job in _squeue_jobs(env, m.group(1)):
                if job["state"] == "RUNNING" and job["comment"].startswith(comment_prefix):
                    return m.group(1), job["id"]
        time.sleep(0.5)
    raise AssertionError(f"no running {comment_prefix} job:\n{log.read_text()[-4000:]}")


@pytest.mark.slurm
def test_cancelled_job_is_retried_and_resume_submits_no_duplicates(slurm_cluster, tmp_path):
    """scancel of a running job: the run retries it (retries: 1, as on Narval) and completes;
    then Snakemake is killed while the ablation runs: `python -m synergy_core.resume` waits for
    that job, unlocks and finishes, submitting no job while another for the same outputs is
    queued or running. The outputs equal an undisturbed local run's, bit for bit."""
    env = dict(slurm_cluster, PYTHONPATH=str(REPO / "workflow"))
    profile = load_profile("slurm-test")
    assert profile["retries"] >= 1
    on_slurm, local, local_run = _small_config_with_local_reference(tmp_path, env, profile)
    small = ["--configfile", "config/small.yaml"]
    log = tmp_path / "slurm.log"
    first = _run_in_group(["snakemake", "--profile", "profiles/slurm-test", *small], on_slurm,
                          env, log, timeout=420)
    deadline = time.monotonic() + 300
    # 1. cancel the extraction while it runs (sacct then says "CANCELLED by 0")
    run_id, cancelled = _wait_for_running(env, log, "rule_gpu_extraction", deadline)
    time.sleep(1)
    run(["scancel", cancelled], cwd=REPO, env=env)
    # 2. kill Snakemake (SIGKILL: no clean-up) while the ablation job runs; the job runs on
    _, orphan = _wait_for_running(env, log, "rule_ablate_heads", deadline)
    os.killpg(first[0].pid, signal.SIGKILL)
    first[0].wait()
    assert run_id  # the killed run's jobs are still in SLURM
    assert any(j["id"] == orphan for j in _squeue_jobs(env, run_id))
    # 3. resume: waits for the orphan, unlocks, reruns what is missing
    resumed = _run_in_group([sys.executable, "-m", "synergy_core.resume", "--poll", "2", "--",
                             "--profile", "profiles/slurm-test", *small],
                            on_slurm, env, tmp_path / "resume.log", timeout=420)
    rc_resume, rc_local = _wait(*resumed), _wait(*local_run)
    resume_log = (tmp_path / "resume.log").read_text()
    assert rc_resume == 0, f"resume failed ({rc_resume}):\n{resume_log[-8000:]}"
    assert rc_local == 0, (tmp_path / "local.log").read_text()[-8000:]
    assert "waiting for 1 job(s) of the earlier run" in resume_log, resume_log[-3000:]

    first_log = log.read_text()
    second_id = re.search(r"SLURM run ID: (\S+)", resume_log).group(1)
    jobs = _sacct(env, run_id) + _sacct(env, second_id)
    by_id = {j["JobID"]: j for j in jobs}
    assert by_id[cancelled]["State"].startswith("CANCELLED"), by_id[cancelled]
    retried = [j for j in _sacct(env, run_id)
               if j["Comment"] == by_id[cancelled]["Comment"] and j["JobID"] != cancelled]
    assert [j["State"] for j in retried] == ["COMPLETED"], (retried, first_log[-4000:])
    assert by_id[orphan]["State"] == "COMPLETED", by_id[orphan]
    # what the orphan finished was kept: the resumed run did not submit the ablation again
    assert by_id[orphan]["Comment"] not in {j["Comment"] for j in _sacct(env, second_id)}
    # no two jobs for the same outputs (same comment) were ever queued or running together
    spans = {}
    for job in jobs:
        spans.setdefault(job["Comment"], []).append((job["Submit"], job["End"]))
    for comment, times in spans.items():
        times.sort()
        for (_, end), (start, _) in zip(times, times[1:]):
            assert end <= start, (comment, times)
    _assert_same_outputs(on_slurm, local)

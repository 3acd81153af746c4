"""The SLURM profiles.

* Without a cluster: profiles/narval dry-runs the paper and the demo configuration with the
  same jobs as a plain dry run and the intended resources, and the sbatch command lines it
  produces (captured by a stand-in `sbatch`) request the GPU as --gres=gpu:1 with a GPU bundle
  of CPUs and memory.
* With a real throw-away single-node cluster (tests/slurm/start_cluster.sh; needs root and the
  packages of tests/slurm/install_deps.sh; marked `slurm`): a small configuration of the whole
  workflow runs through profiles/slurm-test, sacct shows every job COMPLETED with the routed
  resources (GPU rules with gres/gpu=1 in the gpu partition, phiid_chunk with its configured
  CPUs), and every output equals a local run's bit for bit.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
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
    """(rule, {resource: value}) for every job block of a dry run's output."""
    blocks = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", dry_run_output):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule:
            pairs = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
            blocks.append((rule.group(1), pairs))
    return blocks


def job_counts(dry_run_output):
    table = dry_run_output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def narval_env(tmp_path):
    return dict(os.environ, SLURM_ACCOUNT="def-dummy", SCRATCH=str(tmp_path / "scratch"))


# ------------------------------------------------------------------ Narval profile, no cluster
@pytest.mark.parametrize("config", [[], ["--configfile", "config/demo.yaml"],
                                    ["--configfile", "config/fig4b.yaml"],
                                    ["--configfile", "config/fig5.yaml"]],
                         ids=["paper", "demo", "fig4b", "fig5"])
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
    for rule in expected:
        assert counts.get(rule, 0) >= 1, (rule, counts)
    from synergy_core.config import load_schema

    n_chunks = config_file.get("phiid", {}).get(
        "n_chunks", load_schema()["properties"]["phiid"]["properties"]["n_chunks"]["default"])
    assert counts["phiid_chunk"] == counts["phiid_merge"] * n_chunks
    blocks = job_blocks(out)
    assert {rule for rule, _ in blocks} == set(counts)
    set_res, set_threads = profile["set-resources"], profile["set-threads"]
    for rule, res in blocks:
        assert res["slurm_account"] == "def-dummy", (rule, res)  # $SLURM_ACCOUNT was expanded
        assert "tasks" not in res and int(res["runtime"]) >= 60, (rule, res)
        if rule in GPU_RULES:
            assert res["gres"] == "gpu:1" and res["gpu"] == "0", (rule, res)
            assert res["cpus_per_task"] == "12" == str(set_threads[rule]), (rule, res)
            assert int(res["mem_mb"]) <= 124000, (rule, res)  # within one GPU bundle
        else:
            assert "gres" not in res and res.get("gpu", "0") == "0", (rule, res)
        if rule == "phiid_chunk":
            assert res["cpus_per_task"] == str(set_res[rule]["cpus_per_task"]), res
            assert set_res[rule]["cpus_per_task"] == set_threads[rule]


FAKE_SLURM = {
    # records each submission, then refuses it (nothing runs)
    "sbatch": 'printf "%s\\n" "$*" >> "$FAKE_SBATCH_LOG"; echo "sbatch: error: fake" >&2; exit 1',
    "sacctmgr": 'echo "def-dummy"',                                           # the account check
    "sinfo": 'printf "PARTITION\\ncpubase_bycore_b1\\ngpubase_bygpu_b1\\n"',  # no default (*)
    "scontrol": "exit 1", "sacct": "exit 1", "squeue": "exit 1", "sshare": "exit 1",
}


def test_narval_profile_sbatch_options(tmp_path):
    """The sbatch lines profiles/narval produces, captured by a stand-in sbatch (no cluster):
    GPU rule -> --gres=gpu:1, 12 CPUs, 120 GB, no --gpus, no --ntasks; phiid_chunk -> its CPUs
    and one task; both charged to $SLURM_ACCOUNT, without a partition, logs under $SCRATCH."""
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
    # job at a time, the GPU ablation and a PhiID chunk.
    summary = run(["snakemake", "--summary", *small], cwd=work, env=env).stdout
    for line in summary.splitlines()[1:]:
        out = work / line.split("\t")[0]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    run(["snakemake", "--touch", "--cores", "1", *small], cwd=work, env=env)
    for target in ("results/tiny-neox/ablation/auc.tsv",
                   "results/tiny-neox/phiid/chunks/n2/chunk_1.npz"):
        proc = run(["snakemake", "--profile", "profiles/narval", *small, "--force", target,
                    "--retries", "0", "--slurm-init-seconds-before-status-checks", "1"],
                   cwd=work, env=env, check=False, timeout=120)
        assert proc.returncode != 0  # the stand-in refuses every submission
    calls = log.read_text().splitlines() if log.exists() else []
    by_rule = {}
    for call in calls:
        by_rule[re.search(r"--comment '?rule_(\w+?)_wildcards", call).group(1)] = call
    assert set(by_rule) == {"ablate_heads", "phiid_chunk"}, (calls, proc.stdout[-3000:])
    set_res = profile["set-resources"]
    for rule, call in by_rule.items():
        opts = call.split(" --wrap=")[0].split()  # sbatch's own options (before the job command)
        value = lambda opt, opts=opts: opts[opts.index(opt) + 1]  # noqa: E731
        assert value("-A") == "def-dummy", call
        assert "-p" not in opts, call  # Narval routes jobs to partitions itself
        assert value("--mem") == str(set_res[rule]["mem_mb"]), call
        assert value("-t") == str(set_res[rule]["runtime"]), call
        assert f"--cpus-per-task={set_res[rule]['cpus_per_task']}" in opts, call
        assert not any(o.startswith(("--gpus", "--ntasks-per-gpu", "--cpus-per-gpu")) for o in opts)
        if rule == "ablate_heads":
            assert "--gres=gpu:1" in opts and "--cpus-per-task=12" in opts, call
            assert not any(o.startswith("--ntasks") for o in opts), call
        else:
            assert not any(o.startswith("--gres") for o in opts), call
            assert "--ntasks=1" in opts, call
        # the plugin's log directory was expanded from $SCRATCH
        logdir = tmp_path / "scratch" / "synergy-core" / "slurm-logs" / f"rule_{rule}"
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
    fields = ["JobID", "JobName", "Partition", "AllocTRES", "ReqTRES", "NCPUS", "State", "Comment"]
    out = run(["sacct", "-X", "-P", "-n", "--clusters", "all", "--starttime", "now-1days",
               "--name", run_id, "--format", ",".join(fields)], cwd=REPO, env=env).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
    for row in rows:  # the plugin puts rule_<rule>[_wildcards_<values>] in the job's comment
        row["rule"] = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", row["Comment"]).group(1)
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


@pytest.mark.slurm
def test_workflow_on_slurm_routes_resources_and_matches_local_run(slurm_cluster, tmp_path):
    env = slurm_cluster
    profile = load_profile("slurm-test")
    src = copy_repo(tmp_path / "src")  # one snapshot of the working tree for both runs
    (src / "config" / "small.yaml").write_text(SMALL_CONFIG)
    on_slurm = copy_repo(tmp_path / "slurm", src)
    local = copy_repo(tmp_path / "local", src)
    small = ["--configfile", "config/small.yaml"]
    # The local reference gives each rule the threads the profile gives it (torch and BLAS
    # results may depend on the thread count). It runs at low priority alongside: the SLURM run,
    # a chain of jobs with polling gaps, is the one that sets the test's duration.
    threads = [f"{rule}={n}" for rule, n in profile["set-threads"].items()]
    local_run = _run_in_group(["nice", "-n", "15", "snakemake", "--cores", "2", *small,
                               "--set-threads", *threads],
                              local, env, tmp_path / "local.log", timeout=400)
    slurm_run = _run_in_group(["snakemake", "--profile", "profiles/slurm-test", *small],
                              on_slurm, env, tmp_path / "slurm.log", timeout=420)
    rc_slurm, rc_local = _wait(*slurm_run), _wait(*local_run)
    slurm_log = (tmp_path / "slurm.log").read_text()
    assert rc_slurm == 0, f"SLURM run failed or timed out ({rc_slurm}):\n{slurm_log[-8000:]}"
    assert rc_local == 0, (tmp_path / "local.log").read_text()[-8000:]

    # every job of the DAG but the local ones (rule all, and any localrules) went through SLURM
    expected = job_counts(slurm_log)
    local_rules = set(re.findall(r"^localrule (\w+):", slurm_log, re.M))
    assert local_rules.isdisjoint({*GPU_RULES, "phiid_chunk"}), local_rules
    expected = {rule: n for rule, n in expected.items() if rule not in local_rules}
    assert expected["extract_activations"] == expected["ablate_heads"] == 1, expected
    assert expected["phiid_chunk"] == 2, expected
    run_id = re.search(r"SLURM run ID: (\S+)", slurm_log).group(1)
    jobs = _sacct(env, run_id)
    counts = {}
    for job in jobs:
        counts[job["rule"]] = counts.get(job["rule"], 0) + 1
    assert counts == expected, jobs
    assert {job["State"] for job in jobs} == {"COMPLETED"}, jobs
    set_res = profile["set-resources"]
    for job in jobs:
        rule, tres = job["rule"], job["tres"]
        if rule in GPU_RULES:
            assert job["Partition"] == "gpu" and tres.get("gres/gpu") == "1", job
        else:
            assert job["Partition"] == "cpu" and "gres/gpu" not in tres, job
        if rule in set_res:  # the GPU rules and phiid_chunk: CPUs and memory as configured
            assert int(job["NCPUS"]) == set_res[rule]["cpus_per_task"], job
            assert tres["mem"] == f"{set_res[rule]['mem_mb']}M", job
    # the rule's own thread count (2) was overridden: the job ran with what it was given
    chunk_log = (on_slurm / "results/logs/phiid_chunk/tiny-neox/chunk_0.log").read_text()
    assert f"threads {profile['set-threads']['phiid_chunk']}" in chunk_log

    _assert_same_outputs(on_slurm, local)

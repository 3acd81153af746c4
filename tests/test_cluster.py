"""Cluster plumbing without a cluster: the sacct wrapper, the resume command, resource sizing.

The wrapper and the resume command run against stand-in `sacct`/`squeue`/`scancel`/`snakemake`
executables on PATH; tests/test_slurm.py proves the same on a real local SLURM cluster.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from synergy_core import resume, sizing  # noqa: E402
from synergy_core.slurm import (  # noqa: E402
    SACCT_WRAPPER_DIR,
    parse_squeue,
    path_with_sacct_wrapper,
    previous_run_jobs,
    use_sacct_wrapper,
)


def _plugin_query():
    """The arguments of the SLURM plugin's own status query (so that a change there fails here)."""
    import shlex

    from snakemake_executor_plugin_slurm.job_status_query import query_job_status_sacct

    command = shlex.split(query_job_status_sacct("synergy_1234"))
    assert command[0] == "sacct" and "--format=JobIdRaw,State" in command, command
    return command[1:]


PLUGIN_QUERY = _plugin_query()


def _stand_in(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------------------ sacct wrapper
def _wrapped_sacct(tmp_path, output, args, rc=0):
    _stand_in(tmp_path / "bin", "sacct", f"printf '{output}'\nexit {rc}")
    env = dict(os.environ, PATH=f"{SACCT_WRAPPER_DIR}:{tmp_path / 'bin'}:/usr/bin:/bin")
    return subprocess.run([str(SACCT_WRAPPER_DIR / "sacct"), *args], env=env,
                          capture_output=True, text=True)


def test_sacct_wrapper_reports_jobs_ended_from_outside_as_failure_states(tmp_path):
    states = ("101|RUNNING\\n102|CANCELLED by 0\\n103|CANCELLED by 3012345\\n104|PREEMPTED\\n"
              "105|COMPLETED\\n106|NODE_FAIL\\n107|OUT_OF_MEMORY\\n108|CANCELLED\\n109|PENDING\\n"
              "110|REVOKED\\n111|TIMEOUT\\n")
    proc = _wrapped_sacct(tmp_path, states, PLUGIN_QUERY)
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split("|") for line in proc.stdout.splitlines())
    assert got == {"101": "RUNNING", "102": "CANCELLED", "103": "CANCELLED", "104": "FAILED",
                   "105": "COMPLETED", "106": "NODE_FAIL", "107": "OUT_OF_MEMORY",
                   "108": "CANCELLED", "109": "PENDING", "110": "FAILED", "111": "TIMEOUT"}
    # every state the plugin now sees ends a job, except the live ones
    from snakemake_executor_plugin_slurm import __file__ as plugin_file

    source = Path(plugin_file).read_text()
    for state in set(got.values()) - {"RUNNING", "PENDING", "COMPLETED"}:
        assert f'"{state}"' in source, f"the plugin does not know {state}"


def test_sacct_wrapper_passes_other_calls_and_failures_through(tmp_path):
    other = _wrapped_sacct(tmp_path, "1.0|CANCELLED by 0\\n", ["-j", "1.0", "--format=Reason"])
    assert other.stdout == "1.0|CANCELLED by 0\n"            # not the status query: untouched
    failed = _wrapped_sacct(tmp_path, "", PLUGIN_QUERY, rc=3)
    assert failed.returncode == 3 and failed.stdout == ""    # the plugin retries a failed query
    empty = _wrapped_sacct(tmp_path, "", PLUGIN_QUERY)
    assert empty.returncode == 0 and empty.stdout == ""


def test_sacct_wrapper_without_a_real_sacct_fails_loudly(tmp_path):
    env = dict(os.environ, PATH=f"{SACCT_WRAPPER_DIR}:/nonexistent")
    proc = subprocess.run(["/bin/bash", str(SACCT_WRAPPER_DIR / "sacct"), *PLUGIN_QUERY], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 127 and "no real sacct" in proc.stderr


def test_wrapper_goes_first_on_path_only_where_sacct_exists(tmp_path):
    real = _stand_in(tmp_path / "bin", "sacct", "exit 0").parent
    path = path_with_sacct_wrapper({"PATH": f"{real}:/usr/bin"})
    assert path.split(os.pathsep) == [str(SACCT_WRAPPER_DIR), str(real), "/usr/bin"]
    assert path_with_sacct_wrapper({"PATH": path}) is None                 # already first
    assert path_with_sacct_wrapper({"PATH": str(tmp_path / "none")}) is None  # no SLURM here
    assert path_with_sacct_wrapper({"PATH": f"{real}", "SYNERGY_CORE_SACCT_SHIM": "0"}) is None
    # the wrapper alone on PATH is not a real sacct
    assert path_with_sacct_wrapper({"PATH": str(SACCT_WRAPPER_DIR)}) is None


def test_use_sacct_wrapper_changes_this_process_path(tmp_path, monkeypatch):
    real = _stand_in(tmp_path / "bin", "sacct", "exit 0").parent
    monkeypatch.setenv("PATH", f"{real}:/usr/bin")
    assert use_sacct_wrapper() is True
    assert os.environ["PATH"].split(os.pathsep)[0] == str(SACCT_WRAPPER_DIR)
    assert use_sacct_wrapper() is False  # once


# ------------------------------------------------------------------------------------ resume
SQUEUE = ("501|synergy_aaaa|RUNNING|{here}|rule_extract_activations_wildcards_m1\n"
          "502|synergy_aaaa|PENDING|{here}|rule_group_phiid|x\n"
          "503|synergy_bbbb|RUNNING|/elsewhere|rule_ablate_heads\n"
          "504|other_cccc|RUNNING|{here}|rule_x\n"
          "505|synergy_aaaa|COMPLETED|{here}|rule_y\n")


def test_previous_run_jobs_are_this_directory_s_live_jobs(tmp_path):
    jobs = parse_squeue(SQUEUE.format(here=tmp_path))
    assert jobs[1].comment == "rule_group_phiid|x"             # a '|' in the comment survives
    assert [j.job_id for j in previous_run_jobs(jobs, tmp_path, "synergy")] == ["501", "502"]
    with pytest.raises(ValueError, match="unexpected squeue line"):
        parse_squeue("501|synergy_aaaa|RUNNING\n")


def _resume_env(tmp_path, squeue_states):
    """Stand-ins: squeue prints the earlier run's jobs for len(squeue_states) calls (one state
    list per call), scancel and snakemake record their arguments."""
    bin_dir = tmp_path / "bin"
    calls = tmp_path / "calls"
    for i, text in enumerate(squeue_states):
        (tmp_path / f"squeue_{i}").write_text(text)
    _stand_in(bin_dir, "squeue", f'n=$(cat {tmp_path}/n 2>/dev/null || echo 0); '
              f'cat {tmp_path}/squeue_$n 2>/dev/null; echo $((n + 1)) > {tmp_path}/n')
    _stand_in(bin_dir, "scancel", f'echo "scancel $*" >> {calls}')
    _stand_in(bin_dir, "snakemake", f'echo "snakemake $*" >> {calls}')
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}"), calls


@pytest.mark.parametrize("cancel", [False, True])
def test_resume_waits_for_or_cancels_the_earlier_jobs_before_unlocking(tmp_path, cancel):
    work = tmp_path / "work"
    work.mkdir()
    here = work.resolve()
    running = SQUEUE.format(here=here)
    states = [running, running, ""] if not cancel else [running, ""]
    env, calls = _resume_env(tmp_path, states)
    args = [sys.executable, "-m", "synergy_core.resume", "--poll", "0.01"]
    args += ["--cancel"] if cancel else []
    proc = subprocess.run([*args, "--", "--profile", "profiles/narval", "--configfile", "c.yaml"],
                          cwd=work, env=dict(env, PYTHONPATH=str(REPO / "workflow")),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    log = calls.read_text().splitlines()
    expected = ["snakemake --unlock --profile profiles/narval --configfile c.yaml",
                "snakemake --profile profiles/narval --configfile c.yaml"]
    assert log == (["scancel 501 502"] if cancel else []) + expected
    # snakemake ran only after squeue showed none of the earlier run's jobs
    assert int((tmp_path / "n").read_text()) == len(states)
    assert "waiting for 2 job(s)" in proc.stdout
    # outputs finished while no Snakemake watched have no provenance record: named, unless cancelled
    assert ("without a provenance record" in proc.stdout) is not cancel


def test_resume_refuses_while_snakemake_runs_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(resume, "live_snakemake", lambda workdir: [4242])
    monkeypatch.setattr(resume, "queued_jobs", lambda *a: pytest.fail("must not query"))
    assert resume.main(["--", "--profile", "x"]) == 2


def test_live_snakemake_sees_a_snakemake_process_in_this_directory(tmp_path):
    fake = _stand_in(tmp_path / "bin", "snakemake", "sleep 30")
    proc = subprocess.Popen([str(fake)], cwd=tmp_path)
    try:
        for _ in range(50):
            if resume.live_snakemake(tmp_path.resolve()):
                break
            subprocess.run(["sleep", "0.05"])
        assert proc.pid in resume.live_snakemake(tmp_path.resolve())
        assert proc.pid not in resume.live_snakemake(REPO)
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------ sizing
PYTHIA_1B = dict(model_type="gpt_neox", hidden_size=2048, num_hidden_layers=16,
                 num_attention_heads=8, intermediate_size=8192, vocab_size=50304,
                 tie_word_embeddings=False)


def test_parameter_counts_match_the_published_sizes():
    # Pythia-1B: 1,011,781,632 parameters (its model card; norms and biases make the 0.04%)
    assert sizing.parameter_count(PYTHIA_1B) == pytest.approx(1_011_781_632, rel=1e-3)
    llama3_8b = dict(model_type="llama", hidden_size=4096, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336,
                     vocab_size=128256, tie_word_embeddings=False)
    assert sizing.parameter_count(llama3_8b) == pytest.approx(8_030_261_248, rel=1e-3)
    # Qwen2.5-1.5B ties its embeddings: 1,543,714,304
    qwen = dict(model_type="qwen2", hidden_size=1536, num_hidden_layers=28,
                num_attention_heads=12, num_key_value_heads=2, intermediate_size=8960,
                vocab_size=151936, tie_word_embeddings=True)
    assert sizing.parameter_count(qwen) == pytest.approx(1_543_714_304, rel=2e-3)


def test_model_parameters_reads_the_cached_config_or_says_unknown(tmp_path):
    local = tmp_path / "model"
    local.mkdir()
    (local / "config.json").write_text(json.dumps(PYTHIA_1B))
    assert sizing.model_parameters({"hf_id": "x/y", "local_path": str(local)}) > 1e9
    assert sizing.model_parameters({"hf_id": "x/y"}, hf_home=str(tmp_path)) is None
    (local / "config.json").write_text("{damaged")
    assert sizing.model_parameters({"hf_id": "x/y", "local_path": str(local)}) is None
    assert 1e5 < sizing.model_parameters({"hf_id": "builtin:tiny-gpt-neox"}) < 1e6


def test_resources_grow_with_the_model_and_the_work_and_stop_at_the_caps():
    p = 1_011_781_632
    tokens = sizing.ablation_tokens(1093, 60, 40, 100)
    fp32 = sizing.runtime_minutes(p, tokens, "float32", cap=2880)
    bf16 = sizing.runtime_minutes(p, tokens, "bfloat16", cap=2880)
    tf32 = sizing.runtime_minutes(p, tokens, "float32", cap=2880, tf32=True)
    assert fp32 > tf32 >= bf16 >= 30 and fp32 % 10 == 0
    # 2 x the FLOP estimate plus start-up: 2 FLOPs per parameter and token at 10 TFLOP/s
    assert fp32 == pytest.approx(15 + 2 * 2 * p * tokens / 10e12 / 60, abs=10)
    assert sizing.runtime_minutes(12 * p, tokens, "float32", cap=180) == 180
    assert sizing.runtime_minutes(None, tokens, "float32", cap=180) == 180
    assert sizing.host_mem_mb(p, 120000) == 11000 and sizing.host_mem_mb(30 * p, 120000) == 120000
    assert sizing.gpu_mem_mb(p, "bfloat16") < sizing.gpu_mem_mb(p, "float32") < 40000
    assert sizing.gpu_mem_mb(12 * p, "float32") > 40000  # a 12B model in float32: > one A100-40GB
    masks = sizing.ablation_masks(128, dict(max_fraction=0.4, step=1, random_grid=11,
                                            n_random_orders=99))
    assert masks == 1 + 2 * 52 + 99 * 11  # counts 0..51 (40% of 128) on the ranked grid
    assert sizing.phiid_chunk_minutes(2032, 60, 100, "closed_form", 8, cap=1440) == 10
    slow = sizing.phiid_chunk_minutes(8128 * 64, 60, 100, "phyid", 8, cap=1440)
    assert slow > sizing.phiid_chunk_minutes(8128 * 64, 60, 100, "phyid", 64, cap=1440) > 10


def test_live_snakemake_ignores_the_snakemake_inside_a_slurm_job(tmp_path):
    """The Snakemake a SLURM job runs (one job: --target-jobs) is not a live run; one started
    by hand inside an allocation (SLURM_JOB_ID set) is."""
    fake = _stand_in(tmp_path / "bin", "snakemake", "sleep 30")
    env = dict(os.environ, SLURM_JOB_ID="7")
    inside_job = subprocess.Popen([str(fake), "--target-jobs", "x:model=a"], cwd=tmp_path, env=env)
    by_hand = subprocess.Popen([str(fake), "--profile", "p"], cwd=tmp_path, env=env)
    try:
        for _ in range(50):
            if by_hand.pid in resume.live_snakemake(tmp_path.resolve()):
                break
            subprocess.run(["sleep", "0.05"])
        live = resume.live_snakemake(tmp_path.resolve())
        assert by_hand.pid in live and inside_job.pid not in live
    finally:
        for proc in (inside_job, by_hand):
            proc.kill()
            proc.wait()


def test_unknown_or_transitional_states_count_as_queued(tmp_path):
    lines = "".join(f"{i}|synergy_a|{state}|{tmp_path}|c\n" for i, state in enumerate(
        ["COMPLETING", "REQUEUED", "RESIZING", "SOME_NEW_STATE", "COMPLETED", "CANCELLED by 0",
         "TIMEOUT", "OUT_OF_MEMORY"]))
    live = previous_run_jobs(parse_squeue(lines), tmp_path, "synergy")
    assert [j.state for j in live] == ["COMPLETING", "REQUEUED", "RESIZING", "SOME_NEW_STATE"]


def test_resume_asks_squeue_again_when_it_fails(tmp_path, monkeypatch):
    calls = tmp_path / "n"
    _stand_in(tmp_path / "bin", "squeue",
              f'n=$(cat {calls} 2>/dev/null || echo 0); echo $((n + 1)) > {calls}; '
              '[ "$n" -ge 2 ] || { echo "slurm_load_jobs error: timeout" >&2; exit 1; }')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert resume.queued_jobs("synergy", tmp_path, attempts=5, pause=0) == []
    assert calls.read_text().strip() == "3"
    calls.unlink()
    with pytest.raises(RuntimeError, match="squeue failed 2 times"):
        resume.queued_jobs("synergy", tmp_path, attempts=2, pause=0)


def _fake_hub_config(hf_home: Path, hf_id: str, revisions, cfg: dict):
    """A Hugging Face cache holding only config.json of hf_id at the given revisions."""
    repo = hf_home / "hub" / ("models--" + hf_id.replace("/", "--"))
    (repo / "snapshots" / "c0ffee").mkdir(parents=True)
    (repo / "snapshots" / "c0ffee" / "config.json").write_text(json.dumps(cfg))
    (repo / "refs").mkdir()
    for rev in revisions:
        (repo / "refs" / rev).write_text("c0ffee")


def test_paper_configuration_resources_are_the_readme_s(tmp_path):
    """README, "Narval": per job 11 GB and 10 min per extraction, 90 min for the ablation, 10 min
    per PhiID chunk, once Pythia-1B's config.json is cached; without it, the fallback."""
    import yaml

    from synergy_core.config import validate_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    model = "pythia-1b-step143000"
    unknown = sizing.gpu_job_resources(config, model, "ablation")
    assert unknown == dict(mem_mb=sizing.UNKNOWN_MEM_MB, runtime=sizing.UNKNOWN_RUNTIME,
                           gpu_mem_mb=None)
    revisions = config["models"]["pythia-1b-step0"]["revision"], "step143000"
    _fake_hub_config(tmp_path, "EleutherAI/pythia-1b", revisions, PYTHIA_1B)
    config["hf_home"] = str(tmp_path)
    extraction = sizing.gpu_job_resources(config, model, "extraction")
    ablation = sizing.gpu_job_resources(config, model, "ablation")
    assert extraction == dict(mem_mb=11000, runtime=10, gpu_mem_mb=7000)
    assert ablation == dict(mem_mb=11000, runtime=90, gpu_mem_mb=7000)
    n_models = len(config["models"])  # 12 checkpoints + the random twin
    assert n_models == 13
    # the README's 3.7 GPU-hours: the extraction group's summed time plus the ablation
    assert (n_models * extraction["runtime"] + ablation["runtime"]) / 60 == pytest.approx(3.67, abs=0.01)
    # bfloat16 ablation: a third of the time or less
    config["ablation"]["dtype"] = "bfloat16"
    assert sizing.gpu_job_resources(config, model, "ablation")["runtime"] <= 30
    # split over parts: each part's share
    config["ablation"]["dtype"] = None
    config["ablation"]["n_parts"] = 4
    assert sizing.gpu_job_resources(config, model, "ablation")["runtime"] <= 40

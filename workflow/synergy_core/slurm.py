"""SLURM helpers of the workflow's main process (no torch): the sacct wrapper that makes the SLURM
executor plugin see jobs that SLURM ended from outside, and the jobs a killed run left behind.

* :func:`path_with_sacct_wrapper`: ``workflow/slurm-bin/sacct`` first on PATH (README, "SLURM:
  cancelled, preempted or failed jobs");
* :func:`previous_run_jobs` / :func:`parse_squeue`: the queued or running jobs of this project
  that no Snakemake process is waiting for any more, used by ``python -m synergy_core.resume``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SACCT_WRAPPER_DIR = Path(__file__).resolve().parents[1] / "slurm-bin"
WRAPPER_SWITCH = "SYNERGY_CORE_SACCT_SHIM"


def path_with_sacct_wrapper(environ: dict | None = None) -> str | None:
    """The PATH with the sacct wrapper's directory first, or None to leave PATH alone: when
    there is no real ``sacct`` (no SLURM here, or squeue-only clusters: the plugin must then
    see no sacct), when the wrapper is already first, or when ``SYNERGY_CORE_SACCT_SHIM=0``."""
    environ = os.environ if environ is None else environ
    if environ.get(WRAPPER_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    path = environ.get("PATH", "")
    parts = [p for p in path.split(os.pathsep) if p]
    wrapper = str(SACCT_WRAPPER_DIR)
    others = [p for p in parts if Path(p).resolve() != SACCT_WRAPPER_DIR]
    if shutil.which("sacct", path=os.pathsep.join(others)) is None:
        return None
    if parts and Path(parts[0]).resolve() == SACCT_WRAPPER_DIR:
        return None
    return os.pathsep.join([wrapper, *others])


def use_sacct_wrapper() -> bool:
    """Put the sacct wrapper first on this process's PATH (inherited by the SLURM plugin's
    queries) where :func:`path_with_sacct_wrapper` says so; True if PATH changed."""
    path = path_with_sacct_wrapper()
    if path is None:
        return False
    os.environ["PATH"] = path
    return True


# ------------------------------------------------------------------ jobs left by a killed run
SQUEUE_FORMAT = "%i|%j|%T|%Z|%k"  # job id, name, state, working directory, comment
#: States of a job SLURM has ended; any other state (PENDING, RUNNING, COMPLETING, REQUEUED,
#: SUSPENDED, one a newer SLURM adds, ...) counts as queued or running.
ENDED_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                          "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"})


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    name: str
    state: str
    workdir: str
    comment: str


def parse_squeue(text: str) -> list[QueuedJob]:
    """Rows of ``squeue --noheader --format=%i|%j|%T|%Z|%k`` (the comment may contain '|')."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 4)
        if len(fields) < 5:
            raise ValueError(f"unexpected squeue line (want {SQUEUE_FORMAT}): {line!r}")
        jobs.append(QueuedJob(*(f.strip() for f in fields)))
    return jobs


def previous_run_jobs(jobs: list[QueuedJob], workdir: str | Path, prefix: str) -> list[QueuedJob]:
    """The jobs a Snakemake run of this working directory submitted (name ``<prefix>_<run
    uuid>``, as the profiles' ``slurm-jobname-prefix`` sets it) that are still queued or
    running."""
    root = Path(workdir).resolve()
    return [j for j in jobs
            if j.name.startswith(f"{prefix}_") and j.state.split()[0] not in ENDED_STATES
            and Path(j.workdir).resolve() == root]

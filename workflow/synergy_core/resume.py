"""Resume a SLURM run whose Snakemake process was killed, without duplicate jobs.

    python -m synergy_core.resume [--cancel] [--poll SECONDS] -- --profile profiles/narval [...]

A killed Snakemake leaves its submitted jobs queued or running, and its lock. Rerunning at once
would resubmit every job whose output is not there yet, including those still running (two GPU
jobs writing the same file). This command, run from the project directory:

1. refuses while a Snakemake process of this directory is still alive on this machine (its lock is
   real then; resuming would unlock a live run);
2. lists the queued or running jobs of earlier runs of this directory (``squeue --me``: job name
   ``<prefix>_<run uuid>`` with the profiles' ``slurm-jobname-prefix`` (``synergy``) and working
   directory = here) and waits until SLURM has ended all of them, or with ``--cancel`` cancels them
   first (their work is lost; it is redone);
3. runs ``snakemake --unlock ARGS`` and then ``snakemake ARGS``: outputs the old jobs finished are
   complete and are not redone; outputs they left incomplete are rerun (the profiles set
   ``rerun-incomplete``).

Outputs an old job finished after its Snakemake died have no provenance record (Snakemake writes
it in the main process); Snakemake says so at the start ("N jobs have missing provenance/metadata")
and a later change of settings or code does not rerun them by itself. ``--cancel`` redoes them
instead; the command lists the jobs it waited for so that their outputs can be named.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .slurm import SQUEUE_FORMAT, parse_squeue, previous_run_jobs


def queued_jobs(prefix: str, workdir: Path, attempts: int = 5, pause: float = 30.0):
    """The earlier runs' jobs still queued or running; a failing squeue (a busy controller) is
    asked again ``attempts`` times, ``pause`` seconds apart, before giving up."""
    for attempt in range(attempts):
        proc = subprocess.run(["squeue", "--me", "--noheader", f"--format={SQUEUE_FORMAT}"],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return previous_run_jobs(parse_squeue(proc.stdout), workdir, prefix)
        print(f"resume: squeue failed ({proc.stderr.strip()[:200]}); asking again", flush=True)
        time.sleep(pause if attempt + 1 < attempts else 0)
    raise RuntimeError(f"squeue failed {attempts} times; is SLURM reachable from here?")


def live_snakemake(workdir: Path) -> list[int]:
    """PIDs of other Snakemake processes on this machine running in ``workdir`` (Linux /proc),
    not counting the Snakemake inside a SLURM job running here."""
    found, me = [], os.getpid()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(proc.name)
            if pid in (me, os.getppid()):
                continue
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if not any(Path(a.decode(errors="replace")).name == "snakemake" or a == b"snakemake"
                       for a in cmdline[:3]):
                continue
            if Path(os.readlink(proc / "cwd")).resolve() != workdir:
                continue
            # the Snakemake inside a SLURM job (its one job: --target-jobs), when this machine is
            # also a compute node; a Snakemake started by hand in an salloc session still counts
            if b"--target-jobs" in cmdline:
                continue
            found.append(pid)
        except (OSError, ValueError):
            continue
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synergy_core.resume",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cancel", action="store_true",
                        help="cancel the earlier run's jobs instead of waiting for them")
    parser.add_argument("--poll", type=float, default=60.0,
                        help="seconds between squeue queries while waiting (default 60)")
    parser.add_argument("--prefix", default="synergy",
                        help="the profile's slurm-jobname-prefix (default synergy)")
    parser.add_argument("--snakemake", default="snakemake", help="the snakemake executable")
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                        help="after --: the arguments of the run to resume")
    args = parser.parse_args(argv)
    rest = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    workdir = Path.cwd().resolve()

    alive = live_snakemake(workdir)
    if alive:
        print(f"resume: Snakemake is still running in {workdir} (PIDs {alive}); let it finish "
              "or stop it first", file=sys.stderr)
        return 2
    jobs = queued_jobs(args.prefix, workdir)
    if jobs and args.cancel:
        print(f"resume: cancelling {len(jobs)} job(s) of the earlier run: "
              + " ".join(j.job_id for j in jobs), flush=True)
        subprocess.run(["scancel", *[j.job_id for j in jobs]], check=True)
    waited = {}
    while jobs:
        waited.update({j.job_id: j.comment for j in jobs})
        print(f"resume: waiting for {len(jobs)} job(s) of the earlier run to end: "
              + ", ".join(f"{j.job_id} {j.state} {j.comment}" for j in jobs[:10]), flush=True)
        time.sleep(args.poll)
        jobs = queued_jobs(args.prefix, workdir)
    if waited and not args.cancel:
        print("resume: outputs these jobs finished are kept without a provenance record (a later "
              "change of settings will not rerun them by itself; delete them to redo them): "
              + ", ".join(f"{i} {c}" for i, c in sorted(waited.items())), flush=True)
    print("resume: no job of an earlier run is queued or running; unlocking and resuming",
          flush=True)
    subprocess.run([args.snakemake, "--unlock", *rest], check=True)
    return subprocess.run([args.snakemake, *rest]).returncode


if __name__ == "__main__":
    sys.exit(main())

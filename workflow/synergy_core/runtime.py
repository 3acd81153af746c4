"""What every rule script does first: log to the rule's log file, cap threads, keep the hub offline.

Thread policy: a job may use exactly the ``threads`` Snakemake gave it. torch's intra-op pool and
every BLAS/OpenMP pool (through threadpoolctl) are capped to that number, and the usual
environment variables (OMP_NUM_THREADS, MKL_NUM_THREADS, OPENBLAS_NUM_THREADS, ...) are set for any
child process. Without this, numpy on a 64-core node starts 64 BLAS threads per worker process.
"""

from __future__ import annotations

import logging
import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_limits = None  # keeps the threadpoolctl limiter alive for the life of the process


def limit_threads(n: int, uses_torch: bool = False) -> None:
    """Cap BLAS and OpenMP thread pools of this process (and its children), and torch's
    when ``uses_torch``, to ``n``."""
    global _limits
    n = max(1, int(n))
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        _limits = threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    if uses_torch or "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)


def _is_user_error(exc: BaseException) -> bool:
    """The workflow's own errors (ConfigError, CorruptOutputError, ModelUnavailableError, ...),
    whose messages are written for the user, the fix included. Told by their module, so that
    this module imports none of them: every rule's code hash covers runtime.py, and importing
    models.py here would make every rule reach torch."""
    return type(exc).__module__.split(".")[0] == "synergy_core"


def console_message(snakemake, exc: BaseException) -> str:
    """What the console shows of a failed job: the rule, its wildcards and the cause (the
    message of the workflow's own errors whole, of others the first line), and where the full
    traceback is."""
    lines = [line for line in str(exc).splitlines() if line.strip()] or ["(no message)"]
    if not _is_user_error(exc):
        lines = lines[:1]
    wildcards = ", ".join(f"{k}={v}" for k, v in dict(snakemake.wildcards).items())
    where = f" ({wildcards})" if wildcards else ""
    text = f"synergy-core: rule {snakemake.rule}{where} failed: {type(exc).__name__}: " + "\n".join(lines)
    if snakemake.log:
        text += f"\n  full traceback: {snakemake.log[0]}"
    return text


def _console_excepthook(snakemake):
    """The traceback goes to the job's log (stderr is the log), followed by
    :func:`console_message`, its last lines; the message also goes to the job's own stderr,
    which is Snakemake's console for a local job (a SLURM job's is its output file). Ctrl-C
    adds nothing: Snakemake reports the interruption itself."""
    def hook(exc_type, exc, tb):
        sys.__excepthook__(exc_type, exc, tb)          # to sys.stderr: the log
        if isinstance(exc, KeyboardInterrupt):
            return
        try:
            message = console_message(snakemake, exc)
            sys.stderr.write(message + "\n")
            if sys.stderr is not sys.__stderr__:
                sys.__stderr__.write(message + "\n")
                sys.__stderr__.flush()
        except Exception:  # pragma: no cover - a closed stream must not hide the error
            pass
    return hook


def start_rule(snakemake, uses_torch: bool = False, offline: bool = True) -> logging.Logger:
    """Set up a rule script: logging (and stderr) to the rule's log, threads, hub offline."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if snakemake.log:
        stream = open(snakemake.log[0], "a", buffering=1, encoding="utf-8")
        sys.stderr = stream
        handler = logging.StreamHandler(stream)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    limit_threads(snakemake.threads, uses_torch)
    sys.excepthook = _console_excepthook(snakemake)
    log = logging.getLogger(f"synergy_core.rule.{snakemake.rule}")
    log.info("rule %s, wildcards %s, threads %d", snakemake.rule, dict(snakemake.wildcards),
             snakemake.threads)
    return log

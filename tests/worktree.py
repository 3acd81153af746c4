"""Copy the project for tests that run Snakemake in a scratch directory.

From a git checkout: the tracked files and the untracked ones git does not ignore. Elsewhere (an
unpacked release archive, a copied tree): every file except results, caches, virtual
environments and Snakemake's metadata.
"""
import shutil
import subprocess
from pathlib import Path

SKIP = {".git", ".venv", "venv", ".snakemake", "results", ".pytest_cache", ".ruff_cache",
        "__pycache__", "build", "dist"}


def _skipped(name: str) -> bool:
    parts = Path(name).parts
    return bool(SKIP & set(parts)) or any(p.endswith(".egg-info") for p in parts)


def project_files(src: Path) -> list[str]:
    names = []
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=src, capture_output=True,
                             text=True, check=True).stdout.strip()
        if Path(top).resolve() == Path(src).resolve():  # not a subdirectory of another repository
            listing = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=src,
                                     capture_output=True, check=True).stdout
            names = [f for f in listing.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout, or no git
        pass
    if not names:
        names = [str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()]
    return [n for n in names if not _skipped(n)]


def copy_worktree(src: Path, dst: Path) -> Path:
    """Copy the project at ``src`` into ``dst`` (without results/) and return ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in project_files(src):
        path = src / name
        if path.is_file() and not name.startswith("results/"):  # deleted tracked files are listed
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / name)
    return dst

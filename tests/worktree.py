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


def project_files(src: Path) -> list[str]:
    try:
        listing = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=src,
                                 capture_output=True, check=True).stdout
        names = [f for f in listing.decode().split("\0") if f]
        if names:
            return names
    except (OSError, subprocess.CalledProcessError):  # not a git checkout, or no git
        pass
    return [str(p.relative_to(src)) for p in src.rglob("*")
            if p.is_file() and not SKIP & set(p.relative_to(src).parts)
            and not p.name.endswith(".egg-info") and ".egg-info" not in str(p)]


def copy_worktree(src: Path, dst: Path) -> Path:
    """Copy the project at ``src`` into ``dst`` (without results/) and return ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in project_files(src):
        path = src / name
        if path.is_file() and not name.startswith("results/"):  # deleted tracked files are listed
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / name)
    return dst

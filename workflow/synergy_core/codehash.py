"""Code hashes derived from imports: what makes a rule stale when the code it runs changes.

Snakemake reruns a job when its ``params`` change, but it does not follow what a rule's script
imports. Each rule therefore carries ``code=code_of("<script>")``: a hash of the script and of
every module of this package that the script imports, transitively, found by reading the
import statements (``ast``, nothing is imported or executed, so planning a run never loads
torch). Importing ``synergy_core.a.b`` runs ``synergy_core/__init__.py`` and
``synergy_core/a/__init__.py`` too, so those count as well.

The hash is of each file's syntax tree (``ast.dump``), so comments, blank lines and layout are
not part of it: editing a comment or reformatting reruns nothing. Any other change to a module
(code, names, values, docstrings) reruns every rule whose script reaches it. Imports inside
functions count like top-level ones (over-approximation is safe). A new Python version may dump
trees differently and so rerun everything once, which is also when numbers may change.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

PACKAGE = "synergy_core"


_DISK_CACHE: dict = {}
_DISK_PATH: Path | None = None


def use_disk_cache(path: str | Path) -> None:
    """Remember parse results in ``path`` (JSON, keyed by the SHA-256 of each file's text), so
    that planning a run parses only files that changed since the last one. Call
    :func:`save_disk_cache` once every hash is computed."""
    global _DISK_PATH
    _DISK_PATH = Path(path)
    try:
        _DISK_CACHE.update(json.loads(_DISK_PATH.read_text()))
    except (OSError, ValueError):
        pass  # no cache yet, or a damaged one: parse everything


def save_disk_cache() -> None:
    if _DISK_PATH is None:
        return
    try:
        _DISK_PATH.parent.mkdir(parents=True, exist_ok=True)
        tmp = _DISK_PATH.with_name(f".{_DISK_PATH.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_DISK_CACHE))
        os.replace(tmp, _DISK_PATH)
    except OSError:
        pass  # a read-only checkout: hashes are still right, only slower next time


def _parse(text: str) -> tuple[str, tuple]:
    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _DISK_CACHE:
        digest, imports = _parse_text(text)
        _DISK_CACHE[key] = [digest, [list(i) for i in imports]]
    digest, imports = _DISK_CACHE[key]
    return digest, tuple((lvl, mod, tuple(names)) for lvl, mod, names in imports)


@lru_cache(maxsize=None)
def _parse_text(text: str) -> tuple[str, tuple]:
    """One parse per file version: (digest of its syntax tree, its import statements).

    The digest is of ``ast.dump`` (no line numbers): comments, blank lines and layout do not
    count; names, values, docstrings and structure do. The import statements are
    ``(level, module, names)`` tuples, ``level`` None for ``import a.b``.
    """
    tree = ast.parse(text)
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.extend((None, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module, tuple(a.name for a in node.names)))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest(), tuple(imports)


def source_digest(path: Path) -> str:
    """Digest of a file's code, comments and layout excluded (see :func:`_parse`)."""
    return _parse(Path(path).read_text(encoding="utf-8"))[0]


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted_package(root: Path, path: Path) -> str | None:
    """Dotted name of the package a module file belongs to (None outside ``root``)."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return ".".join(rel.parent.parts)


def _imported(root: Path, path: Path) -> tuple[str, ...]:
    """Dotted names of the package modules ``path`` imports (and the packages they run)."""
    here = _dotted_package(root, path)
    found: set[str] = set()

    def add(dotted: str) -> None:
        parts = dotted.split(".")
        if parts[0] != PACKAGE:
            return
        for k in range(1, len(parts) + 1):  # a.b.c runs a, a.b and a.b.c
            if _module_file(root, ".".join(parts[:k])):
                found.add(".".join(parts[:k]))

    for level, module, names in _parse(path.read_text(encoding="utf-8"))[1]:
        if level is None:
            add(module)
            continue
        if level:
            if here is None:
                continue
            base = here.split(".")
            base = base[: len(base) - (level - 1)]
            full = ".".join(base + ([module] if module else []))
        else:
            full = module or ""
        add(full)
        for name in names:  # `from pkg import module` imports a module
            if _module_file(root, f"{full}.{name}"):
                add(f"{full}.{name}")
    return tuple(sorted(found))


def module_closure(script: str | Path, root: str | Path) -> list[Path]:
    """Every package module ``script`` imports, transitively, as file paths.

    ``root`` is the directory that holds the ``synergy_core`` package (``workflow/``).
    """
    root = Path(root)
    seen: dict[str, Path] = {}
    todo = list(_imported(root, Path(script)))
    while todo:
        dotted = todo.pop()
        if dotted in seen:
            continue
        seen[dotted] = _module_file(root, dotted)
        todo.extend(_imported(root, seen[dotted]))
    return [seen[k] for k in sorted(seen)]


def code_hash(script: str | Path, root: str | Path) -> str:
    """Hash of a rule script and its package imports (comments and blank lines excluded)."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in [Path(script), *module_closure(script, root)]:
        name = path.name if path == Path(script) else str(path.relative_to(root))
        digest.update(name.encode() + b"\0" + source_digest(path).encode() + b"\0")
    return digest.hexdigest()[:12]

"""All file I/O of the workflow: atomic writes, loading with integrity checks, provenance.

Array files are ``.npz`` (uncompressed numpy archives) with a ``provenance`` entry holding a JSON
document. Every write goes to a temporary name in the same directory and is renamed into place,
so a job killed mid-write never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path

import numpy as np


class CorruptOutputError(RuntimeError):
    """A result file is unreadable, truncated, or lacks what it should hold."""


def stable_hash(obj) -> str:
    """Short SHA-256 of a JSON-serialisable object (keys sorted), for config provenance."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return os.fdopen(fd, "wb"), Path(tmp)


def _commit(handle, tmp: Path, path: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(tmp, path)


def save_arrays(path: str | os.PathLike, provenance: dict, **arrays) -> None:
    """Write named arrays and a provenance dict to ``path`` (.npz) atomically."""
    path = Path(path)
    handle, tmp = _atomic_target(path)
    try:
        np.savez(handle, provenance=np.array(json.dumps(provenance, sort_keys=True, default=str)),
                 **{k: np.asarray(v) for k, v in arrays.items()})
        _commit(handle, tmp, path)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise


def load_arrays(path: str | os.PathLike, required: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Read an .npz written by :func:`save_arrays`: ``(arrays, provenance)``.

    Raises :class:`CorruptOutputError` naming the file when it is truncated, not an archive, or
    misses any of ``required``; deleting the file and rerunning the workflow regenerates it.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CorruptOutputError(f"{path}: unreadable or truncated ({err}); delete it and rerun "
                                 "the workflow to regenerate it") from err
    missing = [k for k in ("provenance", *required) if k not in arrays]
    if missing:
        raise CorruptOutputError(f"{path}: missing entries {missing}; delete it and rerun")
    provenance = json.loads(str(arrays.pop("provenance")))
    return arrays, provenance


#: What every activations file holds (written by the extraction stage).
ACTIVATION_KEYS = ("acts", "head_labels", "prompt_ids", "categories", "layer", "head")


def load_activations(path: str | os.PathLike, required: tuple[str, ...] = ACTIVATION_KEYS
                     ) -> tuple[dict, dict]:
    """Read an activations file (``acts`` float [prompts, heads, steps] and its labels), checking
    that ``acts`` agrees with the head labels: ``(arrays, provenance)``."""
    arrays, prov = load_arrays(path, tuple(dict.fromkeys(ACTIVATION_KEYS + tuple(required))))
    acts = arrays["acts"]
    if acts.ndim != 3 or acts.shape[1] != len(arrays["head_labels"]):
        raise CorruptOutputError(f"{path}: acts has shape {acts.shape}, inconsistent with "
                                 f"{len(arrays['head_labels'])} head labels")
    return arrays, prov


def load_phiid(phiid_path, acts_path, required: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Read a merged PhiID file and check it was made from the activations at ``acts_path``
    (a file from another model or older activations is named and refused)."""
    arrays, prov = load_arrays(phiid_path, required)
    _, acts_prov = load_arrays(acts_path)
    if prov.get("activations_hash") != acts_prov.get("config_hash"):
        raise CorruptOutputError(
            f"{phiid_path}: made from activations {prov.get('activations_hash')!r}, but "
            f"{acts_path} holds {acts_prov.get('config_hash')!r} (another model or older "
            "activations); delete it and rerun")
    return arrays, prov


def head_layout(layer, head) -> tuple[int, int]:
    """``(n_layers, n_heads)`` (heads per layer) of layer-major per-head ``layer``/``head``
    index arrays, as stored in activation and PhiID files."""
    layer, head = np.asarray(layer), np.asarray(head)
    n_layers, n_heads = int(layer.max()) + 1, int(head.max()) + 1
    if layer.size != n_layers * n_heads:
        raise CorruptOutputError(f"{layer.size} heads do not form {n_layers} layers x "
                                 f"{n_heads} heads")
    return n_layers, n_heads


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    path = Path(path)
    handle, tmp = _atomic_target(path)
    try:
        handle.write(text.encode())
        _commit(handle, tmp, path)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise


def write_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Save a matplotlib figure atomically; the format is the file's suffix (png, pdf, ...)."""
    path = Path(path)
    handle, tmp = _atomic_target(path)
    try:
        fig.savefig(handle, format=path.suffix.lstrip(".") or None, **savefig_kwargs)
        _commit(handle, tmp, path)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise


def write_table(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as a tab-separated file atomically (floats at full precision)."""
    write_text(path, frame.to_csv(sep="\t", index=False, float_format="%.17g"))


def read_table(path: str | os.PathLike, required: tuple[str, ...] = ()):
    """Read a tab-separated table written by :func:`write_table` as a pandas DataFrame.

    Raises :class:`CorruptOutputError` naming the file when it cannot be parsed or lacks any of
    the ``required`` columns.
    """
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise CorruptOutputError(f"{path}: unreadable table ({err}); delete it and rerun") from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CorruptOutputError(f"{path}: missing columns {missing}; delete it and rerun")
    return frame


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON document written by :func:`write_json` (errors name the file)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CorruptOutputError(f"{path}: unreadable JSON ({err}); delete it and rerun") from err


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def software_versions() -> dict:
    """Versions that can change numbers: Python, numpy, torch, transformers (when importable)."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "transformers", "scipy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return versions

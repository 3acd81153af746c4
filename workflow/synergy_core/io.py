"""All file I/O of the workflow: atomic writes, and reads that verify a chain of records.

Every file the workflow writes carries a *record*: the digest of its content, the path it was
written to, and the digests of the files it was made from. Array files (``.npz``, uncompressed
numpy archives) hold it in their ``provenance`` JSON entry; tables and JSON documents get a
sidecar ``<file>.meta.json`` written with them. Every read checks, before the file is used:

* its content against its own digest (a truncated, edited or damaged file is refused); for array
  files the digest covers the provenance too;
* the path it was written to against the path it is read from, below the results directory
  (``<model>/ranking/heads.tsv``: another model's file is refused; a renamed results directory
  or a different working directory is not);
* every file it was made from against the digest recorded when it was made (a file made from
  other or older data is refused, and so is one whose inputs are gone: it cannot be verified).
  The check goes one level up; deeper levels were checked when each input was read.

``verify=False`` on a reader skips these checks, for inspecting a file outside its results tree.

Each refusal is a :class:`CorruptOutputError` naming the file and what to do. Writes go to a
temporary name in the same directory, are flushed, given the permissions the umask allows and
renamed into place, so a job killed mid-write never leaves a file that looks complete; on any
error (a full disk included) the temporary files are removed.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path

import numpy as np


class CorruptOutputError(RuntimeError):
    """A result file is unreadable, truncated, foreign, or made from other data."""


#: The version of the record format; a file without a record is refused.
RECORD_FORMAT = "synergy_core-record-1"
SIDECAR_SUFFIX = ".meta.json"
_FIX = "delete it and rerun the workflow to regenerate it"


def stable_hash(obj) -> str:
    """Short SHA-256 of a JSON-serialisable object (keys sorted), for config provenance."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --- atomic writes -------------------------------------------------------------------------

def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    """The mode a new file gets under the current umask (mkstemp alone would give 0600)."""
    return 0o666 & ~_umask()


def _atomic_write(targets: list[tuple[Path, object]]) -> None:
    """Write each ``(path, content)`` (bytes, or a callable writing to a binary handle) to a
    temporary file beside it, then rename them all into place, in order. On any error every
    temporary file left is removed (also when closing fails, e.g. ENOSPC on the final flush);
    one left by a writer killed outright (SIGKILL) is removed by the next write of the same
    file (one job writes each output, so no other writer can own it)."""
    temps: list[Path] = []
    path = targets[0][0]
    try:
        for path, content in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            # left by a writer killed with SIGKILL (mkstemp's names: 8 random characters)
            for stale in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):
                try:
                    stale.unlink()
                except OSError:
                    pass
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append(Path(tmp))
            with os.fdopen(fd, "wb") as handle:
                if callable(content):
                    content(handle)
                else:
                    handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        mode = _file_mode()
        for (path, _), tmp in zip(targets, temps):
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        path = None
    except BaseException as err:
        for tmp in temps:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(err, OSError) and err.errno is not None and path is not None:
            # name the output (a full disk or a read-only directory otherwise names a temp file)
            raise type(err)(err.errno, f"cannot write {path}: {err.strerror}") from err
        raise


# --- records -------------------------------------------------------------------------------

def _rel(path: str | os.PathLike, start: str | os.PathLike | None = None) -> str:
    return os.path.relpath(os.path.abspath(path), None if start is None else os.path.abspath(start))


#: The environment variable naming the results directory (set by the workflow for every job):
#: files under it record their path relative to it.
RESULTS_ENV = "SYNERGY_CORE_RESULTS"


def _recorded_path(path: Path) -> tuple[str, bool]:
    """``(path as recorded, whether it is relative to the results directory)``."""
    root = os.environ.get(RESULTS_ENV)
    if root:
        rel = _rel(path, root)
        if not rel.startswith(os.pardir):
            return rel, True
    return _rel(path), False


def _written_here(path: Path, recorded: str, below_results: bool) -> bool:
    """Whether ``path`` is the file recorded as ``recorded``: its path below the results
    directory (``m/ranking/heads.tsv``) must be the tail of this one, so a renamed results
    directory, a moved project or another working directory still match, and another model's
    file does not. A path recorded relative to the working directory (outside a workflow run)
    is matched below its first directory."""
    tail = list(Path(recorded).parts)
    while tail and tail[0] in ("..", "."):
        tail.pop(0)
    if len(tail) > 1 and not below_results:
        tail.pop(0)
    parts = Path(os.path.abspath(path)).parts
    return bool(tail) and list(parts[-len(tail):]) == tail


def _sources(path: Path, record: dict) -> dict:
    """``{absolute path: digest}`` of the files a record says ``path`` was made from (stored
    relative to the file's own directory, so they resolve from any working directory)."""
    return {os.path.normpath(os.path.join(os.path.abspath(path.parent), rel)): digest
            for rel, digest in record.get("made_from", {}).items()}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def arrays_digest(arrays: dict, provenance: dict | None = None) -> str:
    """SHA-256 of named arrays (each name, dtype, shape and its bytes, names sorted) and of a
    provenance dict without its record (the settings later checks rely on)."""
    h = hashlib.sha256()
    if provenance is not None:
        rest = {k: v for k, v in provenance.items() if k != "record"}
        h.update(json.dumps(rest, sort_keys=True, default=str).encode())
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        if a.size:
            h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def recorded_digest(path: str | os.PathLike) -> str:
    """The digest a file is known by: an array file's or table's own recorded digest (cheap;
    the content itself is checked whenever the file is read), or for a file the workflow did
    not write (the prompt table) the SHA-256 of its bytes."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                prov = json.loads(str(z["provenance"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            raise CorruptOutputError(f"{path}: unreadable or truncated ({err}); {_FIX}") from err
        return _valid_record(path, prov.get("record") if isinstance(prov, dict) else None)["digest"]
    if _sidecar(path).is_file():
        return _valid_record(path, _read_sidecar(path))["digest"]
    try:
        return _sha256(path.read_bytes())
    except OSError as err:
        raise CorruptOutputError(f"{path}: unreadable ({err})") from err


def _valid_record(path: Path, record) -> dict:
    """``record`` if it has the shape of a record, else the refusal naming ``path``."""
    if (isinstance(record, dict) and record.get("format") == RECORD_FORMAT
            and isinstance(record.get("digest"), str) and isinstance(record.get("path"), str)
            and isinstance(record.get("made_from"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in record["made_from"].items())):
        return record
    raise CorruptOutputError(f"{path}: has no record of how it was made (written by another "
                             f"program or an older version of this workflow); {_FIX}")


def _record(path: Path, digest: str, made_from, **extra) -> dict:
    recorded, below_results = _recorded_path(path)
    return dict(format=RECORD_FORMAT, digest=digest, path=recorded, below_results=below_results,
                made_from={_rel(p, path.parent): recorded_digest(p) for p in (made_from or ())},
                **extra)


def _check_record(path: Path, record, digest: str) -> None:
    """Content, location and freshness of the inputs (see the module docstring)."""
    record = _valid_record(path, record)
    if record["digest"] != digest:
        raise CorruptOutputError(f"{path}: its content does not match its record (damaged, "
                                 f"truncated or edited after it was written); {_FIX}")
    if not _written_here(path, record["path"], bool(record.get("below_results"))):
        raise CorruptOutputError(f"{path}: this file was written as {record['path']} (another "
                                 f"model's file, or copied from elsewhere; read it with "
                                 f"verify=False to inspect it anyway); {_FIX}")
    for source, made_with in _sources(path, record).items():
        if not os.path.exists(source):
            raise CorruptOutputError(f"{path}: made from {_rel(source)}, which is gone, so it "
                                     f"cannot be verified; {_FIX}")
        now = recorded_digest(source)
        if now != made_with:
            raise CorruptOutputError(f"{path}: made from a different {_rel(source)} than the one "
                                     f"there now (digest {made_with[:12]} then, {now[:12]} now: "
                                     f"older or other data); {_FIX}")


# --- array files ---------------------------------------------------------------------------

def save_arrays(path: str | os.PathLike, provenance: dict, made_from=(), **arrays) -> None:
    """Write named arrays and a provenance dict to ``path`` (.npz) atomically.

    ``made_from``: the files these arrays were computed from; their digests go into the
    record (``provenance["record"]``) that every later read checks.
    """
    path = Path(path)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    provenance = json.loads(json.dumps(provenance, default=str))   # as a reader will see it
    provenance["record"] = _record(path, arrays_digest(arrays, provenance), made_from)
    blob = np.array(json.dumps(provenance, sort_keys=True, default=str))
    _atomic_write([(path, lambda handle: np.savez(handle, provenance=blob, **arrays))])


def load_arrays(path: str | os.PathLike, required: tuple[str, ...] = (),
                verify: bool = True) -> tuple[dict, dict]:
    """Read and verify an .npz written by :func:`save_arrays`: ``(arrays, provenance)``.

    Raises :class:`CorruptOutputError` naming the file when it is truncated, not an archive,
    misses any of ``required``, or (unless ``verify`` is false) fails its record: content,
    location, inputs.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CorruptOutputError(f"{path}: unreadable or truncated ({err}); {_FIX}") from err
    missing = [k for k in ("provenance", *required) if k not in arrays]
    if missing:
        raise CorruptOutputError(f"{path}: missing entries {missing}; {_FIX}")
    try:
        provenance = json.loads(str(arrays.pop("provenance")))
    except ValueError as err:
        raise CorruptOutputError(f"{path}: unreadable provenance ({err}); {_FIX}") from err
    if not isinstance(provenance, dict):
        raise CorruptOutputError(f"{path}: its provenance is not a JSON object; {_FIX}")
    if verify:
        _check_record(path, provenance.get("record"), arrays_digest(arrays, provenance))
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


def check_made_from(path, prov: dict, source) -> None:
    """Refuse a file whose record does not list ``source`` (as it is now) among its inputs:
    e.g. a merged PhiID file that was not made from this model's activations."""
    made_from = _sources(Path(path), prov.get("record", {}))
    if made_from.get(os.path.abspath(source)) != recorded_digest(source):
        raise CorruptOutputError(f"{path}: not made from {source} as it is now (another model's "
                                 f"file, or older activations); {_FIX}")


def load_phiid(phiid_path, acts_path, required: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Read a merged PhiID file and check it was made from the activations at ``acts_path``
    (a file from another model or older activations is named and refused)."""
    arrays, prov = load_arrays(phiid_path, required)
    check_made_from(phiid_path, prov, acts_path)
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


# --- tables, JSON documents, text, figures -------------------------------------------------

def _write_recorded(path: Path, data: bytes, made_from, **extra) -> None:
    record = _record(path, _sha256(data), made_from, bytes=len(data), **extra)
    sidecar = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    # the record first, then the file Snakemake waits for (on a shared filesystem the record
    # is then older than the file a consumer sees); an interruption between the two renames
    # leaves a mismatch, which the next read refuses
    _atomic_write([(_sidecar(path), sidecar), (path, data)])


def _read_sidecar(path: Path) -> dict:
    sidecar = _sidecar(path)
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptOutputError(f"{path}: has no record {sidecar.name} beside it (written by "
                                 f"another program, or its record was deleted); {_FIX}") from None
    except (OSError, ValueError) as err:
        raise CorruptOutputError(f"{sidecar}: unreadable record ({err}); delete {path} and "
                                 "rerun") from err


def _read_verified(path: Path, verify: bool = True) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorruptOutputError(f"{path}: unreadable ({err}); {_FIX}") from err
    if verify:
        _check_record(path, _read_sidecar(path), _sha256(data))
    return data


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (no record: for logs and other files nothing reads back)."""
    _atomic_write([(Path(path), text.encode())])


def write_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Save a matplotlib figure atomically; the format is the file's suffix (png, pdf, ...)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or None
    _atomic_write([(path, lambda handle: fig.savefig(handle, format=fmt, **savefig_kwargs))])


def write_table(path: str | os.PathLike, frame, made_from=()) -> None:
    """Write a pandas DataFrame as a tab-separated file (floats at full precision) with its
    record, atomically; ``made_from`` as in :func:`save_arrays`."""
    data = frame.to_csv(sep="\t", index=False, float_format="%.17g").encode()
    _write_recorded(Path(path), data, made_from, rows=len(frame), columns=list(frame.columns))


def read_table(path: str | os.PathLike, required: tuple[str, ...] = (), verify: bool = True,
               text_columns: tuple[str, ...] = ()):
    """Read and verify a table written by :func:`write_table` as a pandas DataFrame.

    ``text_columns`` are read as the strings written ("01" stays "01", "NA" and "" stay
    themselves); the table must then have no empty cell elsewhere (none becomes NaN).
    Raises :class:`CorruptOutputError` naming the file when it fails its record (unless
    ``verify`` is false), cannot be parsed, or lacks any of the ``required`` columns.
    """
    import pandas as pd

    path = Path(path)
    data = _read_verified(path, verify)
    text = dict(dtype={c: str for c in text_columns}, keep_default_na=False) if text_columns else {}
    try:
        frame = pd.read_csv(io.BytesIO(data), sep="\t", **text)
    except (ValueError, pd.errors.ParserError) as err:
        raise CorruptOutputError(f"{path}: unreadable table ({err}); {_FIX}") from err
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CorruptOutputError(f"{path}: missing columns {missing}; {_FIX}")
    return frame


def write_json(path: str | os.PathLike, obj, made_from=()) -> None:
    """Write a JSON document with its record, atomically; ``made_from`` as in :func:`save_arrays`."""
    data = (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()
    _write_recorded(Path(path), data, made_from)


def read_json(path: str | os.PathLike, verify: bool = True) -> dict:
    """Read and verify (unless ``verify`` is false) a JSON document written by
    :func:`write_json` (errors name the file)."""
    path = Path(path)
    data = _read_verified(path, verify)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as err:
        raise CorruptOutputError(f"{path}: unreadable JSON ({err}); {_FIX}") from err


def software_versions() -> dict:
    """Versions that can change numbers: Python, numpy, torch, transformers (when importable)."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "transformers", "scipy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return versions

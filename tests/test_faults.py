"""The fault matrix: bad inputs, damaged files and failing environments, each with its exact outcome.

Every row states what must happen: refused before any job with a message naming the key or the
file (and the line where there is one), a counted NaN, or nothing left behind. The messages are
the ones README "When things go wrong" lists (a test checks that it lists each of them).

Sections:
* the verified chain: a small results tree is built with the stage functions (two models,
  chunks, merge, ranking, statistics, an ablation table and its statistics, a paired
  comparison, the summary); each row damages one file or swaps in a foreign one and runs the
  stage that consumes it;
* writes: disk full, permission denied, interrupted writes, the umask;
* numbers: dead heads, non-finite activations and KL values become counted NaN;
* config and prompt table: refused at parse time, naming key, file and line;
* environment: hub offline, remote code, pickled weights, secrets, the Snakemake lock.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shlex
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic import kl_long, save_activations

from synergy_core.io import (
    CorruptOutputError,
    load_arrays,
    read_json,
    read_table,
    save_arrays,
    write_figure,
    write_table,
)
from synergy_core.models import ModelUnavailableError, download_commands, load_model, load_tokenizer
from synergy_core.stages.ablation_stats import ablation_statistics
from synergy_core.stages.compare import compare_models
from synergy_core.stages.phiid import compute_phiid_chunk, merge_phiid_chunks
from synergy_core.stages.rank import rank_model
from synergy_core.stages.stats import model_statistics
from synergy_core.stages.summary import build_summary

PHIID = dict(tau=1, redundancy="MMI", aggregation="per_prompt", backend="closed_form", n_chunks=2,
             block_pairs=8192)
STATS = dict(n_boot=10, ci=0.9, n_splits=3, n_surrogates=0, graph_fraction=0.25, n_boot_graph=2,
             n_null_graph=3, n_layer_perm=19, surrogate_trim=0.25, seed=0)
ABL_STATS = dict(n_boot=20, seed=0, ci=0.95)
CMP = dict(n_permutations=19, seed=0, ci=0.95)
MODELS = ("a", "b")
N_LAYERS, N_HEADS_PER_LAYER, N_PROMPTS, N_STEPS = 3, 4, 6, 30   # builtin:tiny-llama's shape
N_HEADS = N_LAYERS * N_HEADS_PER_LAYER


# ------------------------------------------------------------------ the chain, built once
def _paths(m: str) -> dict:
    d = Path("results") / m
    return dict(
        acts=d / "activations.npz", phiid=d / "phiid" / "phiid.npz",
        chunks=[d / "phiid" / "chunks" / "n2" / f"chunk_{k}.npz" for k in range(2)],
        heads=d / "ranking" / "heads.tsv", profile=d / "ranking" / "layer_profile.tsv",
        diagnostics=d / "ranking" / "diagnostics.json",
        stats={k: d / "stats" / f"{k}.tsv" for k in ("scores", "layers", "categories", "graphs")}
        | {"json": d / "stats" / "stats.json"},
        kl_long=d / "ablation" / "kl_long.tsv", auc_ci=d / "ablation" / "auc_ci.tsv",
        auc_json=d / "ablation" / "auc_ci.json", compare=d / "comparisons" / "vs_b.tsv")


def _activations(m: str, seed: int) -> None:
    save_activations(_paths(m)["acts"], seed, N_LAYERS, N_HEADS_PER_LAYER, N_PROMPTS, N_STEPS,
                     made_from=[Path("prompts.tsv")], tokens=True)


def _kl_long(seed: int) -> pd.DataFrame:
    return kl_long(seed, N_PROMPTS, N_HEADS)


def _rank(m: str, out_dir: Path | None = None) -> None:
    p = _paths(m)
    outs = ((out_dir / "h.tsv", out_dir / "p.tsv", out_dir / "d.json") if out_dir else
            (p["heads"], p["profile"], p["diagnostics"]))
    rank_model(p["phiid"], p["acts"], *outs)


def _stats(m: str, out_dir: Path | None = None) -> None:
    p = _paths(m)
    outs = {k: out_dir / Path(v).name for k, v in p["stats"].items()} if out_dir else p["stats"]
    model_statistics(p["phiid"], p["acts"], outs, STATS, tau=1)


def _merge(m: str, out: Path | None = None) -> None:
    p = _paths(m)
    merge_phiid_chunks(p["acts"], p["chunks"], out or p["phiid"], PHIID)


def _ablation_stats(out_dir: Path | None = None) -> None:
    p = _paths("a")
    outs = (out_dir / "t.tsv", out_dir / "t.json") if out_dir else (p["auc_ci"], p["auc_json"])
    ablation_statistics(p["kl_long"], *outs, ABL_STATS)


def _compare(out: Path | None = None) -> None:
    compare_models(_paths("a")["phiid"], _paths("b")["phiid"], out or _paths("a")["compare"], CMP)


def _summary(out: Path = Path("results/summary.tsv")) -> None:
    models = {}
    for m in MODELS:
        p = _paths(m)
        models[m] = dict(spec={"hf_id": "x/y", "init": "pretrained"}, diagnostics=p["diagnostics"],
                         scores=p["stats"]["scores"], stats=p["stats"]["json"],
                         graphs=p["stats"]["graphs"])
    models["a"].update(ablation=_paths("a")["auc_ci"], ablation_json=_paths("a")["auc_json"],
                       comparisons={"random": dict(other="b", path=_paths("a")["compare"])})
    build_summary(models, out)


def _build_chain() -> None:
    """The whole chain, with the working directory at its root (paths are recorded relative)."""
    Path("prompts.tsv").write_text("prompt_id\tcategory\ttext\np0\tx\thello\n")
    for seed, m in enumerate(MODELS):
        p = _paths(m)
        _activations(m, seed)
        for k, chunk in enumerate(p["chunks"]):
            compute_phiid_chunk(p["acts"], chunk, k, PHIID)
        _merge(m)
        _rank(m)
        _stats(m)
    write_table(_paths("a")["kl_long"], _kl_long(0), [_paths("a")["acts"], _paths("a")["heads"]])
    _ablation_stats()
    _compare()
    _summary()


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        _build_chain()
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def work(chain, tmp_path, monkeypatch):
    """A private copy of the chain, the working directory at its root."""
    root = Path(shutil.copytree(chain, tmp_path / "chain"))
    monkeypatch.chdir(root)
    return root


# --------------------------------------------------------------------------- damages
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _cut_mid_line(path: Path) -> None:
    """Cut a table in the middle of a line, as a killed writer without atomic renames would."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    keep = len(lines) * 2 // 3
    path.write_text("".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2])


def _drop_row(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2] + lines[3:]))


def _edit_number(path: Path) -> None:
    frame = pd.read_csv(path, sep="\t")
    col = frame.select_dtypes("number").columns[-1]
    frame.loc[0, col] = frame.loc[0, col] * 1.5 + 1
    frame.to_csv(path, sep="\t", index=False)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _resave_without_record(path: Path) -> None:
    """Re-save an array file with numpy alone: same arrays, no record (a foreign writer)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    prov = json.loads(str(arrays["provenance"]))
    prov.pop("record")
    arrays["provenance"] = np.array(json.dumps(prov))
    np.savez(path, **arrays)


def _edit_array(path: Path) -> None:
    """Change one value of an array but keep the old record: edited after it was written."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    key = next(k for k in ("acts", "atoms") if k in arrays)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[np.flatnonzero(np.isfinite(arrays[key]))[0]] += 1
    np.savez(path, **arrays)


def _pickled(path: Path) -> None:
    np.savez(path, provenance=np.array("{}"), acts=np.array([{"evil": 1}], dtype=object))


def _foreign_table(path: Path) -> None:
    """A table written by another program (pandas, a spreadsheet): the sidecar record is gone."""
    frame = pd.read_csv(path, sep="\t")
    path.with_name(path.name + ".meta.json").unlink()
    frame.to_csv(path, sep="\t", index=False)


def _garbage_record(path: Path) -> None:
    path.with_name(path.name + ".meta.json").write_text("{not json")


def _from_model_b(path: Path) -> None:
    """Copy model b's file (and its record) over model a's: another model's result."""
    other = Path(str(path).replace("results/a/", "results/b/"))
    shutil.copy(other, path)
    if other.with_name(other.name + ".meta.json").exists():
        shutil.copy(other.with_name(other.name + ".meta.json"), path.with_name(path.name + ".meta.json"))


def _reextract_a(_path: Path) -> None:
    """Model a's activations re-extracted from other data (same config): everything made from
    the old ones is stale."""
    _activations("a", seed=7)


def _rechunk_from_other_activations(path: Path) -> None:
    """Chunk 0 recomputed from other activations with the same config, then the activations
    restored: the chunk check must compare the data, not the config hash."""
    acts = _paths("a")["acts"]
    saved = acts.read_bytes()
    _activations("a", seed=7)
    compute_phiid_chunk(acts, path, 0, PHIID)
    acts.write_bytes(saved)


def _rerank_a(_path: Path) -> None:
    """heads.tsv rewritten from another PhiID file: the ablation table made from it is stale."""
    p = _paths("a")
    table = read_table(p["heads"])
    table["syn_red"] = table["syn_red"][::-1].to_numpy()
    write_table(p["heads"], table, [p["phiid"], p["acts"]])


def _remerge_a(_path: Path) -> None:
    """Model a's PhiID rewritten (a valid file, other numbers): what was made from it is stale."""
    p = _paths("a")
    arrays, prov = load_arrays(p["phiid"])
    arrays["atoms"] = np.nan_to_num(arrays["atoms"]) * 1.01
    save_arrays(p["phiid"], prov, made_from=[p["acts"]], **arrays)


# The messages' stems (README "When things go wrong" lists each).
UNREADABLE = "unreadable or truncated"
NO_RECORD = "has no record of how it was made"
CONTENT = "its content does not match its record"
WRITTEN_AS = "this file was written as"
MADE_FROM = "made from a different"
A, B = "results/a/", "results/b/"

# (id, file damaged, damage, consumer, message regex). `file` is a key of _paths("a") (or
# "chunks.<k>", "stats.<k>"); the consumer writes into a scratch directory.
CHAIN = [
    # activations -> PhiID chunk
    ("acts truncated", "acts", _truncate, "chunk", f"activations.npz: {UNREADABLE}"),
    ("acts byte flipped", "acts", _flip_byte, "chunk", f"activations.npz: {UNREADABLE}"),
    ("acts without record", "acts", _resave_without_record, "chunk", f"activations.npz: {NO_RECORD}"),
    ("acts value edited", "acts", _edit_array, "chunk", f"activations.npz: {CONTENT}"),
    ("acts pickled objects", "acts", _pickled, "chunk", f"activations.npz: {UNREADABLE} .*allow_pickle=False"),
    ("acts of another model", "acts", _from_model_b, "chunk",
     f"{A}activations.npz: {WRITTEN_AS} {B}activations.npz"),
    # chunks -> merge
    ("chunk truncated", "chunks.1", _truncate, "merge", f"chunk_1.npz: {UNREADABLE}"),
    ("chunk from other activations, same config", "chunks.0", _rechunk_from_other_activations, "merge",
     f"chunk_0.npz: {MADE_FROM} {A}activations.npz than the one there now"),
    ("chunk after re-extraction", "acts", _reextract_a, "merge", f"chunk_0.npz: {MADE_FROM} {A}activations.npz"),
    ("chunk of another model", "chunks.0", _from_model_b, "merge",
     f"{A}phiid/chunks/n2/chunk_0.npz: {WRITTEN_AS} {B}"),
    ("chunk value edited", "chunks.1", _edit_array, "merge", f"chunk_1.npz: {CONTENT}"),
    ("chunk missing", "chunks.1", lambda p: p.unlink(), "merge", f"chunk_1.npz: {UNREADABLE} .*No such file"),
    # merged PhiID -> ranking, statistics, comparison
    ("phiid truncated", "phiid", _truncate, "rank", f"phiid.npz: {UNREADABLE}"),
    ("phiid of another model", "phiid", _from_model_b, "rank", f"{A}phiid/phiid.npz: {WRITTEN_AS} {B}phiid/phiid.npz"),
    ("phiid from older activations", "acts", _reextract_a, "rank", f"phiid.npz: {MADE_FROM} {A}activations.npz"),
    ("phiid value edited", "phiid", _edit_array, "stats", f"phiid.npz: {CONTENT}"),
    ("phiid from older activations (stats)", "acts", _reextract_a, "stats",
     f"phiid.npz: {MADE_FROM} {A}activations.npz"),
    ("phiid of another model (comparison)", "phiid", _from_model_b, "compare", f"{A}phiid/phiid.npz: {WRITTEN_AS} {B}"),
    # ranking -> ablation table -> ablation statistics
    ("kl_long cut mid-line", "kl_long", _cut_mid_line, "ablation_stats", f"kl_long.tsv: {CONTENT}"),
    ("kl_long row deleted", "kl_long", _drop_row, "ablation_stats", f"kl_long.tsv: {CONTENT}"),
    ("kl_long value edited", "kl_long", _edit_number, "ablation_stats", f"kl_long.tsv: {CONTENT}"),
    ("kl_long written by another program", "kl_long", _foreign_table, "ablation_stats",
     "kl_long.tsv: has no record kl_long.tsv.meta.json beside it"),
    ("kl_long record unreadable", "kl_long", _garbage_record, "ablation_stats",
     "kl_long.tsv.meta.json: unreadable record"),
    ("kl_long made from an older ranking", "heads", _rerank_a, "ablation_stats",
     f"kl_long.tsv: {MADE_FROM} {A}ranking/heads.tsv"),
    ("kl_long after re-extraction", "acts", _reextract_a, "ablation_stats",
     f"kl_long.tsv: {MADE_FROM} {A}activations.npz"),
    # ranking -> ablation (refused before the model is loaded), ranking -> figures
    ("heads.tsv truncated (ablation)", "heads", _cut_mid_line, "ablate", f"heads.tsv: {CONTENT}"),
    ("heads.tsv made from an older PhiID (ablation)", "phiid", _remerge_a, "ablate",
     f"heads.tsv: {MADE_FROM} {A}phiid/phiid.npz"),
    ("heads.tsv of another model (figures)", "heads", _from_model_b, "plots", f"{A}ranking/heads.tsv: {WRITTEN_AS} "),
    ("ranking made from an older PhiID (figures)", "phiid", _remerge_a, "plots",
     f"heads.tsv: {MADE_FROM} {A}phiid/phiid.npz"),
    ("an input of the ranking is gone", "acts", lambda p: p.unlink(), "plots",
     f"phiid.npz: made from {A}activations.npz, which is gone"),
    # tables and documents -> summary
    ("auc_ci truncated", "auc_ci", _truncate, "summary", f"auc_ci.tsv: {CONTENT}"),
    ("auc_ci.json edited", "auc_json", lambda p: p.write_text(p.read_text().replace("0", "1", 1)), "summary",
     f"auc_ci.json: {CONTENT}"),
    ("stats.json truncated", "stats.json", _truncate, "summary", f"stats.json: {CONTENT}"),
    ("profile scores of another model", "stats.scores", _from_model_b, "summary",
     f"{A}stats/scores.tsv: {WRITTEN_AS} {B}stats/scores.tsv"),
    ("ranking made from an older PhiID", "phiid", _remerge_a, "summary",
     f"{A}ranking/diagnostics.json: {MADE_FROM} {A}phiid/phiid.npz"),
    ("diagnostics record deleted", "diagnostics", lambda p: p.with_name(p.name + ".meta.json").unlink(), "summary",
     "diagnostics.json: has no record diagnostics.json.meta.json"),
    ("comparison cut mid-line", "compare", _cut_mid_line, "summary", f"vs_b.tsv: {CONTENT}"),
]


def _file(key: str) -> Path:
    p = _paths("a")
    if "." in key and key.split(".")[0] in ("chunks", "stats"):
        group, sub = key.split(".")
        return p[group][int(sub)] if group == "chunks" else p[group][sub]
    return p[key]


def _consume(name: str, scratch: Path) -> None:
    scratch.mkdir(exist_ok=True)
    if name == "chunk":
        compute_phiid_chunk(_paths("a")["acts"], scratch / "c.npz", 0, PHIID)
    elif name == "merge":
        _merge("a", scratch / "m.npz")
    elif name == "rank":
        _rank("a", scratch)
    elif name == "stats":
        _stats("a", scratch)
    elif name == "compare":
        _compare(scratch / "c.tsv")
    elif name == "ablation_stats":
        _ablation_stats(scratch)
    elif name == "summary":
        _summary(scratch / "summary.tsv")
    elif name == "ablate":
        from synergy_core.stages.ablate import run_ablation

        p = _paths("a")
        cfg = dict(max_fraction=0.5, step=1, random_grid=3, n_random_orders=2, seed=0,
                   prompt_batch=6, mask_group=4, cross_validate=False)
        run_ablation(p["acts"], p["heads"], scratch / "kl.tsv", scratch / "s.tsv", scratch / "auc.tsv",
                     {"hf_id": "builtin:tiny-llama", "name": "a", "seed": 0}, cfg, "cpu")
    elif name == "plots":
        from synergy_core.stages.plots import plot_model

        p = _paths("a")
        keys = ("fig2a", "fig2b", "scatter", "nan")
        outputs = {k: scratch / f"{k}.png" for k in keys} | {f"{k}_pdf": scratch / f"{k}.pdf" for k in keys}
        plot_model(p["phiid"], p["heads"], p["diagnostics"], outputs, "a")
    else:
        raise AssertionError(name)


@pytest.mark.parametrize("key,damage,consumer,message", [c[1:] for c in CHAIN], ids=[c[0] for c in CHAIN])
def test_chain_refuses_damaged_or_foreign_files(work, key, damage, consumer, message):
    damage(_file(key))
    scratch = work / "scratch"
    with pytest.raises(CorruptOutputError, match=message):
        _consume(consumer, scratch)
    assert not [p for p in scratch.iterdir()], "a refused input must leave no output"


@pytest.mark.parametrize("consumer", ["chunk", "merge", "rank", "stats", "compare", "ablation_stats", "summary",
                                      "ablate", "plots"])
def test_chain_accepts_its_own_files(work, consumer):
    """The undamaged chain passes every check (the refusals above are not false alarms)."""
    _consume(consumer, work / "scratch")
    assert list((work / "scratch").iterdir())


def test_records_survive_moving_the_project(chain, tmp_path, monkeypatch):
    """Paths are recorded relative to the working directory: a moved project stays valid."""
    moved = Path(shutil.copytree(chain, tmp_path / "elsewhere" / "deeper"))
    monkeypatch.chdir(moved)
    _consume("summary", moved / "scratch")


def test_records_survive_a_renamed_results_directory_and_another_working_directory(work, monkeypatch):
    """A results directory kept under another name, read from a notebook somewhere else."""
    (work / "results").rename(work / "results_run1")
    monkeypatch.chdir("/")
    run = work / "results_run1"
    read_table(run / "a" / "ablation" / "kl_long.tsv")
    load_arrays(run / "a" / "phiid" / "phiid.npz")
    read_json(run / "a" / "stats" / "stats.json")


def test_verify_false_reads_a_file_outside_its_results_tree(work, tmp_path):
    """A table copied on its own (another model's name, no inputs) is refused, unless asked."""
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy("results/a/ranking/heads.tsv", flat / "heads.tsv")
    shutil.copy("results/a/ranking/heads.tsv.meta.json", flat / "heads.tsv.meta.json")
    with pytest.raises(CorruptOutputError, match=f"{WRITTEN_AS} results/a/ranking/heads.tsv .*verify=False"):
        read_table(flat / "heads.tsv")
    assert len(read_table(flat / "heads.tsv", verify=False)) == N_HEADS


def test_edited_provenance_is_refused(work):
    """The provenance (settings the merge relies on) is part of an array file's digest."""
    path = _paths("a")["chunks"][0]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    prov = json.loads(str(arrays["provenance"]))
    prov["settings"]["tau"] = 2
    arrays["provenance"] = np.array(json.dumps(prov))
    np.savez(path, **arrays)
    with pytest.raises(CorruptOutputError, match=f"chunk_0.npz: {CONTENT}"):
        _consume("merge", work / "scratch")


@pytest.mark.parametrize("record", ["{}", "[]", '{"format": "synergy_core-record-1", "digest": 1}'])
def test_malformed_records_are_refused_by_name(work, record):
    path = _paths("a")["kl_long"]
    path.with_name(path.name + ".meta.json").write_text(record)
    with pytest.raises(CorruptOutputError, match=f"kl_long.tsv: {NO_RECORD}"):
        _consume("ablation_stats", work / "scratch")


def test_every_output_of_the_chain_has_a_record(chain, monkeypatch):
    monkeypatch.chdir(chain)
    for path in Path("results").rglob("*"):
        if path.suffix in (".tsv", ".json") and not path.name.endswith(".meta.json"):
            record = json.loads(path.with_name(path.name + ".meta.json").read_text())
            assert record["path"] == str(path) and record["bytes"] == path.stat().st_size
            if path.suffix == ".tsv":
                assert record["rows"] == len(read_table(path))
            else:
                read_json(path)
        elif path.suffix == ".npz":
            _, prov = load_arrays(path)
            assert prov["record"]["path"] == str(path)
    record = json.loads(Path("results/a/ablation/kl_long.tsv.meta.json").read_text())
    assert set(record["made_from"]) == {"../activations.npz", "../ranking/heads.tsv"}  # from its directory


# ---------------------------------------------------------------------------- writes
class _Boom(Exception):
    pass


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _write_arrays(path):
    save_arrays(path, {}, a=np.arange(1000.0))


def _write_table(path):
    write_table(path, pd.DataFrame({"x": range(100)}))


def _write_figure(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    try:
        write_figure(fig, path)
    finally:
        plt.close(fig)


def _full_disk_handle(fail_on: str):
    """An ``os.fdopen`` whose handles raise ENOSPC on ``write`` or on ``close`` (after closing)."""
    real_fdopen = os.fdopen

    class Handle:
        def __init__(self, fd, mode):
            self._h = real_fdopen(fd, mode)

        def __getattr__(self, name):
            return getattr(self._h, name)

        def write(self, data):
            if fail_on == "write":
                _enospc()
            return self._h.write(data)

        def close(self):
            self._h.close()
            if fail_on == "close":
                _enospc()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    return Handle


WRITERS = {"arrays": (_write_arrays, "x.npz"), "table": (_write_table, "x.tsv"),
           "figure": (_write_figure, "x.png")}
# (id, what fails, how): every write fault leaves the directory as it was, with no temp file
WRITE_FAULTS = [
    ("ENOSPC on fsync", "os.fsync", _enospc),
    ("ENOSPC on write", "os.write", None),
    ("permission denied creating the temp file", "tempfile.mkstemp",
     lambda *a, **k: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied"))),
    ("rename fails", "os.replace", lambda *a, **k: (_ for _ in ()).throw(_Boom())),
]


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("target,fail", [f[1:] for f in WRITE_FAULTS], ids=[f[0] for f in WRITE_FAULTS])
def test_write_faults_leave_nothing_behind(tmp_path, monkeypatch, writer, target, fail):
    write, name = WRITERS[writer]
    module, attr = target.rsplit(".", 1)
    if target == "os.write":
        monkeypatch.setattr(os, "fdopen", _full_disk_handle(fail_on="write"))
    else:
        monkeypatch.setattr(__import__(module), attr, fail)
    with pytest.raises((OSError, _Boom)) as err:
        write(tmp_path / name)
    if isinstance(err.value, OSError):
        # the file being written when it failed: a table's record is written first
        assert re.search(f"cannot write {re.escape(str(tmp_path / name))}(.meta.json)?: ", str(err.value))
    assert list(tmp_path.iterdir()) == []


def test_enospc_on_close_leaves_no_temp_file(tmp_path, monkeypatch):
    """The case found by the adversarial run: the second ENOSPC comes from close() itself."""
    monkeypatch.setattr(os, "fdopen", _full_disk_handle(fail_on="close"))
    with pytest.raises(OSError, match="No space left"):
        _write_arrays(tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_exception_while_computing_an_array_leaves_nothing(tmp_path):
    class Exploding:
        def __array__(self, *a, **k):
            raise _Boom

    with pytest.raises(_Boom):
        save_arrays(tmp_path / "x.npz", {}, a=np.zeros(3), b=Exploding())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        for writer, name in WRITERS.values():
            writer(tmp_path / name)
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == mode, path


def test_a_table_whose_record_was_not_renamed_is_refused(tmp_path, monkeypatch):
    """Killed between the two renames: the new record beside the old table is refused."""
    path = tmp_path / "x.tsv"
    write_table(path, pd.DataFrame({"x": [1, 2]}))
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".tsv"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write_table(path, pd.DataFrame({"x": [3, 4, 5]}))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tsv", "x.tsv.meta.json"]
    with pytest.raises(CorruptOutputError, match="x.tsv: its content does not match its record"):
        read_table(path)


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """SIGKILL leaves no chance to clean up: the rerun's write of the same file removes it."""
    (tmp_path / ".x.npz.abc12345.tmp").write_bytes(b"half")
    (tmp_path / ".other.npz.abc12345.tmp").write_bytes(b"not ours")
    (tmp_path / ".x.npz.meta.json.abc12345.tmp").write_bytes(b"another file's")
    _write_arrays(tmp_path / "x.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.npz.abc12345.tmp", ".x.npz.meta.json.abc12345.tmp", "x.npz"]


# ---------------------------------------------------------------------------- numbers
def _spoil_inf(acts):
    acts[1, 2, 7] = np.inf        # e.g. float16 overflow in one step of one prompt


def _spoil_nan(acts):
    acts[0, 4, 3] = np.nan


def _spoil_both(acts):
    _spoil_inf(acts)
    _spoil_nan(acts)


def _dead_head(acts):
    acts[:, 5] = 1.0              # a constant head: every window is degenerate


def _identical_heads(acts):
    acts[:, 1] = acts[:, 0]       # a singular 4x4 correlation for pair (0, 1)


def _dead_in_one_prompt(acts):
    acts[2, 3] = 0.0


# (id, spoil the [3 prompts, 6 heads, 25 steps] activations, NaN cells per head, unranked heads)
NUMERIC = [
    ("inf activation", _spoil_inf, [1, 1, 5, 1, 1, 1], 0),
    ("NaN activation", _spoil_nan, [1, 1, 1, 1, 5, 1], 0),
    ("inf and NaN in two heads", _spoil_both, [2, 2, 6, 2, 6, 2], 0),
    ("dead head", _dead_head, [3, 3, 3, 3, 3, 15], 1),
    ("identical heads", _identical_heads, [3, 3, 0, 0, 0, 0], 0),
    ("head dead in one prompt", _dead_in_one_prompt, [1, 1, 1, 5, 1, 1], 0),
]


@pytest.mark.parametrize("spoil,per_head,unranked", [c[1:] for c in NUMERIC], ids=[c[0] for c in NUMERIC])
def test_degenerate_input_becomes_counted_nan(tmp_path, monkeypatch, spoil, per_head, unranked):
    """Each degenerate (pair, prompt) cell is NaN and counted per head; a head with no valid
    cell is left unranked (NaN), never given a 0."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    acts = np.exp(0.3 * rng.standard_normal((3, 6, 25)).cumsum(-1)).astype(np.float32)
    spoil(acts)
    Path("prompts.tsv").write_text("x")
    save_arrays("acts.npz", {}, made_from=["prompts.tsv"], acts=acts,
                head_labels=np.array([f"L{h // 2}H{h % 2}" for h in range(6)]),
                prompt_ids=np.array(["a", "b", "c"]), categories=np.array(["x", "y", "x"]),
                layer=np.arange(6) // 2, head=np.arange(6) % 2)
    for k in range(2):
        compute_phiid_chunk("acts.npz", f"c{k}.npz", k, PHIID)
    merge_phiid_chunks("acts.npz", ["c0.npz", "c1.npz"], "m.npz", PHIID)
    merged = load_arrays("m.npz")[0]
    np.testing.assert_array_equal(merged["per_head_nan"], per_head)
    assert merged["nan_count"].sum() == sum(per_head) // 2
    rank_model("m.npz", "acts.npz", "h.tsv", "p.tsv", "d.json")
    heads, diag = read_table("h.tsv"), read_json("d.json")
    assert diag["unranked_heads"] == unranked == heads.syn_red.isna().sum()
    assert diag["nan_cells"] == sum(per_head) // 2
    assert list(heads.nan_cells) == per_head
    assert not (heads.syn_red[heads.nan_cells == 15] == 0).any()


def _kl_with(work, change) -> tuple[dict, pd.Series]:
    """Rewrite model a's ablation table as ``change(table)``, rerun its statistics and the
    summary; return the statistics' JSON and model a's summary row."""
    p = _paths("a")
    write_table(p["kl_long"], change(_kl_long(0)), [p["acts"], p["heads"]])
    _ablation_stats()
    _summary()
    return read_json(p["auc_json"]), read_table("results/summary.tsv").set_index("model").loc["a"]


def _set_kl(where, values):
    def change(long):
        long = long.copy()
        rows = long.index[where(long)]
        long.loc[rows, "kl"] = np.resize(values, len(rows))
        return long
    return change


def test_nonfinite_kl_is_counted_and_its_prompts_left_out_of_every_curve(work):
    spoiled = [("synergistic_first", "p1"), ("random", "p4")]
    stats, row = _kl_with(work, _set_kl(
        lambda t: (t.n_removed == 3) & pd.Series(list(zip(t.order, t.prompt))).isin(spoiled).to_numpy()
        & (t.seed <= 0), [np.inf, np.nan]))
    assert stats["n_nonfinite_kl"] == 2 and stats["n_prompts_excluded"] == 2
    assert stats["prompts_excluded"] == ["p1", "p4"] and stats["n_prompts"] == N_PROMPTS - 2
    assert row.ablation_n_nonfinite_kl == 2 and row.ablation_n_prompts_excluded == 2
    assert np.isfinite(row.ratio_synergistic_random)
    # the same numbers as the table without those prompts
    kept, _ = _kl_with(work, lambda t: t[~t.prompt.isin(["p1", "p4"])])
    assert kept["quantities"] == stats["quantities"]


def test_all_prompts_nonfinite_is_a_clear_error(work):
    with pytest.raises(ValueError, match=r"every prompt \(6\) has a non-finite KL value"):
        _kl_with(work, _set_kl(lambda t: t.n_removed == 1, [np.inf]))


def test_empty_ablation_table_is_a_clear_error(work):
    with pytest.raises(ValueError, match="ablation long table is empty"):
        _kl_with(work, lambda t: t.iloc[:0])


def test_zero_random_auc_gives_nan_ratios_in_both_tables(work):
    from synergy_core.ablation_curves import auc_table

    zero_random = _set_kl(lambda t: t.order == "random", [0.0])
    stats, row = _kl_with(work, zero_random)
    assert np.isnan(row.ratio_synergistic_random) and np.isnan(row.ratio_synergistic_random_ci_low)
    assert stats["quantities"]["ratio_synergistic_random"]["estimate"] is None   # NaN -> null
    assert np.isnan(auc_table(zero_random(_kl_long(0))).set_index("order").ratio_to_random["synergistic_first"])

# ----------------------------------------------------------------------- environment
@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    attempts = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_missing_hub_model_fails_fast_without_network(no_network, tmp_path, init):
    spec = {"hf_id": "EleutherAI/pythia-1b", "revision": "step1000", "init": init}
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as err:
        load_model(spec)
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "EleutherAI/pythia-1b (revision step1000)" in msg
    assert "snakemake download_models" in msg and "--revision step1000" in msg
    with pytest.raises(ModelUnavailableError):
        load_tokenizer(spec)
    assert no_network == []


def test_unknown_hub_id_fails_fast(no_network, tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="model no-such-org/no-such-model: it is not in the local cache"):
        load_model({"hf_id": "no-such-org/no-such-model"})
    assert time.perf_counter() - start < 10


def test_local_path_that_is_not_a_causal_lm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    with pytest.raises(ModelUnavailableError, match=f"local_path '{tmp_path}' is not a loadable"):
        load_model({"hf_id": "x/y", "local_path": str(tmp_path)})


def _command_line(msg: str, program: str) -> list[str]:
    """The one line of an error message that runs ``program``, split as a shell would."""
    lines = [line for line in msg.splitlines() if program in line]
    assert len(lines) == 1, msg
    return shlex.split(lines[0])


@pytest.mark.parametrize("load", [load_model, load_tokenizer])
def test_missing_model_hint_is_quoted_and_names_the_hf_cli(no_network, monkeypatch, load):
    hub_id, revision = "org/evil model;touch pwned", "step 1;rm -rf x"
    monkeypatch.setenv("HF_HOME", "/tmp/hf home;ls")
    with pytest.raises(ModelUnavailableError) as err:
        load({"hf_id": hub_id, "revision": revision})
    msg = str(err.value)
    first = msg.splitlines()[0]
    assert first.startswith(f"model {hub_id} (revision {revision}): it is not in the local cache")
    assert len(first) < 120
    assert "huggingface-cli" not in msg
    # the workflow rule is suggested first, the hf CLI second
    assert msg.index("snakemake download_models --cores 1") < msg.index("hf download")
    assert _command_line(msg, "snakemake download_models") == [
        "snakemake", "download_models", "--cores", "1"]
    assert _command_line(msg, "hf download") == [
        "HF_HOME=/tmp/hf home;ls", "hf", "download", hub_id, "--revision", revision]
    # the original error in one line, and no chained traceback burying the message
    assert msg.splitlines()[-1].startswith("  cause: ")
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert no_network == []


def test_download_commands_without_revision_or_hf_home(monkeypatch):
    monkeypatch.delenv("HF_HOME", raising=False)
    snake, hf = download_commands({"hf_id": "a/b c"})
    assert snake == "snakemake download_models --cores 1"
    assert shlex.split(hf) == ["hf", "download", "a/b c"]


def test_builtin_models_never_touch_the_network(no_network):
    spec = {"hf_id": "builtin:tiny-llama", "revision": "step2", "seed": 0}
    load_model(spec)
    load_tokenizer(spec)
    assert no_network == []


def test_hf_token_never_reaches_outputs_or_logs(tmp_path, monkeypatch, repo):
    from synergy_core.extract import extract_activations
    from synergy_core.prompts import load_prompts

    secret = "hf_SECRETTOKEN1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    prompts = load_prompts(repo / "config/prompts.tsv")[:2]
    spec = {"hf_id": "builtin:tiny-gpt-neox", "name": "t", "seed": 0}
    arrays, prov = extract_activations(spec, prompts, num_tokens=6, device="cpu")
    save_arrays(tmp_path / "a.npz", prov, **arrays)
    assert secret.encode() not in (tmp_path / "a.npz").read_bytes()
    assert secret not in json.dumps(prov)


def test_model_needing_remote_code_is_refused_without_running_it(tmp_path, monkeypatch):
    """A model directory that ships its own Python code: refused, the code never runs, and no
    prompt waits on a terminal for an answer."""
    marker = tmp_path / "ran"
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "evil-net", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "modeling_evil.EvilConfig",
                     "AutoModelForCausalLM": "modeling_evil.EvilModel"}}))
    (tmp_path / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("asked on the terminal"))
    with pytest.raises(ModelUnavailableError, match="it needs its own code .*never runs"):
        load_model({"hf_id": "x/y", "local_path": str(tmp_path)})
    assert not marker.exists()


def test_pickled_weights_holding_code_are_refused_without_running_it(tmp_path):
    from transformers import GPTNeoXConfig

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    GPTNeoXConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  vocab_size=300).save_pretrained(tmp_path)
    with open(tmp_path / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"gpt_neox.embed_in.weight": Evil()}, fh, protocol=2)
    with pytest.raises(ModelUnavailableError, match="its weights are a pickle holding more than tensors"):
        load_model({"hf_id": "x/y", "local_path": str(tmp_path)})
    assert not marker.exists()



def test_max_fraction_that_removes_no_head_is_refused_by_the_ablation_too():
    """For a hub model whose head count is unknown at parse time the ablation job refuses it."""
    from synergy_core.ablation_curves import ablation_grids

    with pytest.raises(ValueError, match=r"max_fraction: 0.01 of 24 heads removes no head; use at least 0.0417"):
        ablation_grids(24, 0.01, 1, 11)


# ---------------------------------------------- config, prompt table, YAML: before any job
# Every row of the config, prompt-table and YAML checks, with its exact message, is in
# tests/test_config.py (BAD, YAML_BAD, PROMPTS_BAD). Here the adversarial run's cases go
# through Snakemake itself: refused at parse time, before any job, naming key, file and line.
TAB_TABLE = "prompt_id\tcategory\ttext\na\tx\tone\nb\tx\ttwo\there\nc\ty\tthree\n"
CONFIG_FAULTS = [
    ("num_tokens 20.0", {"generation": {"num_tokens": 20.0}},
     r"config key generation.num_tokens: 20.0 is not of type 'integer' \(write 20, without a decimal point\)"),
    ("tau 1.0", {"phiid": {"tau": 1.0}}, r"config key phiid.tau: 1.0 is not of type 'integer'"),
    ("n_chunks 3.0", {"phiid": {"n_chunks": 3.0}}, r"config key phiid.n_chunks: 3.0 is not of type 'integer'"),
    ("one prompt", {"prompts": {"first_k": 1}}, r"config key prompts.first_k: the selection keeps 1 prompt"),
    ("family escaping results/", {"models": {"m": {"hf_id": "builtin:tiny-llama", "family": "../../../x"}}},
     r"config key models.m.family: '../../../x' does not match"),
    ("family breaking the job graph", {"models": {"m": {"hf_id": "builtin:tiny-llama", "family": "a(b"}}},
     r"config key models.m.family: 'a\(b' does not match"),
    ("max_fraction below one head", {"ablation": {"max_fraction": 0.01}},
     r"config key ablation.max_fraction: 0.01 of the 12 heads of model m is less than one head"),
    ("tab inside a prompt", {"prompts": {"file": "TAB_TABLE"}},
     r"config key prompts.file: \S*tabs.tsv line 3: 4 fields, expected 3 \(a tab inside a prompt\?"),
]


@pytest.mark.slow
@pytest.mark.parametrize("change,message", [c[1:] for c in CONFIG_FAULTS], ids=[c[0] for c in CONFIG_FAULTS])
def test_bad_config_is_refused_by_snakemake_before_any_job(repo, tmp_path, change, message):
    import subprocess

    import yaml

    (tmp_path / "tabs.tsv").write_text(TAB_TABLE)
    config = {"models": {"m": {"hf_id": "builtin:tiny-llama"}},
              "prompts": {"file": str(repo / "config" / "prompts.tsv")}}
    for section, value in change.items():
        config[section] = {**config.get(section, {}), **value} if section != "models" else value
    if config["prompts"]["file"] == "TAB_TABLE":
        config["prompts"]["file"] = str(tmp_path / "tabs.tsv")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run(["snakemake", "-n", "--directory", str(tmp_path), "--snakefile",
                          str(repo / "Snakefile"), "--configfile", str(tmp_path / "bad.yaml")],
                         cwd=repo, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert re.search(message, out.stdout + out.stderr), (out.stdout + out.stderr)[-2000:]
    assert not (tmp_path / "results").exists()


def test_readme_lists_every_message(repo):
    """README "When things go wrong" names each outcome this module (and test_config) asserts."""
    text = (repo / "README.md").read_text()
    section = text[text.index("## When things go wrong"):]
    stems = [UNREADABLE, CONTENT, NO_RECORD, WRITTEN_AS, MADE_FROM, "not made from",
             "has no record <file>.meta.json beside it", "unreadable record", "made for settings",
             "cannot write <file>: No space left on device", "Permission denied", "which is gone",
             "non-finite KL value(s)", "every prompt (N) has a non-finite KL value",
             "ablation long table is empty", "the median random AUC is 0.0",
             "it is not in the local cache and this step never downloads", "hf download",
             "it needs its own code (trust_remote_code)", "its weights are a pickle holding more than tensors",
             "is not a loadable Hugging Face causal LM directory", "LockException", "snakemake --unlock",
             "is not of type 'integer' (write 20, without a decimal point)", "the selection keeps 1 prompt",
             "is less than one head", "removes no head", "too few for the surrogate test",
             "4 fields, expected 3 (a tab inside a prompt?", "is not UTF-8", "appears twice in the same mapping",
             "invalid YAML", "python -m synergy_core.config", "are left unranked", "non-finite activations"]
    missing = [s for s in stems if s not in section]
    assert not missing, missing


# ---------------------------------------------- preflight and the console of a failed job
def _run_snakemake(repo, workdir, config: dict, *args, timeout=300):
    import subprocess

    import yaml

    config = {"prompts": {"file": str(repo / "config" / "prompts.tsv"), "per_category": 1},
              "generation": {"num_tokens": 12, "device": "cpu"},
              "stats": {"n_boot": 10, "n_splits": 2, "n_surrogates": 0, "n_boot_graph": 0, "n_null_graph": 0,
                        "n_layer_perm": 19}, **config}
    (workdir / "c.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, HF_HOME=str(workdir / "empty-hf-cache"))
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run(["snakemake", *args, "--directory", str(workdir), "--snakefile",
                           str(repo / "Snakefile"), "--configfile", str(workdir / "c.yaml")],
                          cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)


UNCACHED = {"models": {"tiny": {"hf_id": "builtin:tiny-llama"},
                       "p1": {"hf_id": "EleutherAI/pythia-14m"},
                       "p2": {"hf_id": "EleutherAI/pythia-14m", "init": "random"}},
            "ablation": {"models": ["tiny"]}}


@pytest.mark.slow
def test_preflight_lists_every_missing_model_before_any_job(repo, tmp_path):
    dry = _run_snakemake(repo, tmp_path, UNCACHED, "-n")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0
    assert f"2 model(s) are missing from the Hugging Face cache {tmp_path / 'empty-hf-cache' / 'hub'}" in out
    assert "p1: EleutherAI/pythia-14m (missing: config.json, weights, tokenizer)" in out
    assert "p2: EleutherAI/pythia-14m (missing: config.json, tokenizer)" in out   # random init: no weights
    assert "snakemake download_models --cores 1 --configfile c.yaml" in out
    run = _run_snakemake(repo, tmp_path, UNCACHED, "--cores", "1")
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "stopped before any job ran" in out and "p1:" in out and "p2:" in out
    assert not (tmp_path / "results").exists()                     # no job ran
    # a run that needs none of them (one target of the built-in model) is not stopped
    ok = _run_snakemake(repo, tmp_path, UNCACHED, "--cores", "1", "results/tiny/activations.npz")
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-3000:]


@pytest.mark.slow
def test_failed_job_prints_one_clear_cause_and_a_finished_run_names_summary_and_report(repo, tmp_path):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    bad = _run_snakemake(repo, tmp_path, {"models": {"m": {"hf_id": "x/y", "local_path": str(not_a_model)}}},
                         "--cores", "1", "results/m/activations.npz")
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert re.search(r"synergy-core: rule extract_activations \(model=m\) failed: ModelUnavailableError: "
                     r"model \S*not-a-model: local_path .* is not a loadable", out), out[-3000:]
    assert "full traceback: results/logs/extract_activations/m.log" in out
    assert "Traceback" not in out                                   # it is in the log
    assert "Traceback" in (tmp_path / "results/logs/extract_activations/m.log").read_text()
    good = _run_snakemake(repo, tmp_path, {"models": {"m": {"hf_id": "builtin:tiny-llama"}},
                                           "results_dir": "out/run1"},
                          "--cores", "2")
    out = good.stdout + good.stderr
    assert good.returncode == 0, out[-3000:]
    assert "The verdict table: out/run1/summary.tsv" in out
    assert "snakemake --report out/run1/report.html --configfile c.yaml" in out
    assert (tmp_path / "out/run1/summary.tsv").is_file() and not (tmp_path / "results/summary.tsv").exists()
    # the outputs record their paths below results_dir: a renamed results directory reads
    (tmp_path / "out/run1").rename(tmp_path / "out/kept")
    read_table(tmp_path / "out/kept/m/ablation/kl_long.tsv")

"""Task data of the perturbation stage: problems with reference answers, scored with math-verify.

A *task* is a list of problems ``{"id": str, "problem": str, "answer": str}``. The config's
``perturbation.task`` names one of:

* ``builtin:arithmetic``: one-digit additions generated here (:mod:`.builtin`), the offline demo's
  task, learnt by ``builtin:tiny-llama-arith``;
* ``math500``: MATH-500 (HuggingFaceH4/MATH-500, the 500 test problems of Lightman et al. 2023
  drawn from MATH, Hendrycks et al. 2021), stored as ``<data_dir>/math500.jsonl`` by the
  ``download_datasets`` rule (on a login node: it needs the network and the ``datasets``
  library); every other job reads that local copy;
* a path to the user's own JSONL file: one JSON object per line with ``problem`` and ``answer``
  strings and optionally ``id`` (else ``unique_id``, else ``line-<n>``).

The ``prepare_task`` rule reads the task once, keeps the first ``n_problems``, drops (and
counts, by id) problems whose reference answer math-verify cannot parse, since every answer to
them would be scored wrong, and writes ``<results>/task/problems.json``, which every
perturbation job reads through the verified chain of :mod:`.io`.

Scoring (:func:`score_answer`) is math-verify's: the reference parsed as LaTeX math, the model's
output parsed with math-verify's default extraction (the ``\\boxed{}`` answer first, then other
LaTeX or plain expressions), equivalence by its ``verify`` (symbolic and numeric, with units,
intervals and sets normalised). No string rules are written here.
"""

from __future__ import annotations

import json
from pathlib import Path

from .builtin import BUILTIN_TASKS, arithmetic_problems
from .prompts import read_utf8

#: Tasks the ``download_datasets`` rule can fetch: name -> (hub dataset, split, id field).
DOWNLOADABLE_TASKS = {"math500": ("HuggingFaceH4/MATH-500", "test", "unique_id")}
#: The paper's MATH prompt suffix as used by published reproductions (the paper gives none).
DEFAULT_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."


class TaskError(ValueError):
    """A task file is missing, damaged or not a list of problems; the message names the file."""


def task_source(task: str, data_dir: str) -> str | None:
    """The file a task is read from: None for a built-in task, the downloaded copy for a
    downloadable one, else the path itself."""
    if task in BUILTIN_TASKS:
        return None
    if task in DOWNLOADABLE_TASKS:
        return str(Path(data_dir) / f"{task}.jsonl")
    return task


def read_task_file(path: str | Path) -> list[dict]:
    """Problems of a JSONL task file, in file order. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist (perturbation.task; for math500 run "
                        "`snakemake download_datasets --cores 1` where the network is)")
    text = read_utf8(path, f"task file {path}", "the task file")
    problems, seen = [], set()
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"task file {path} line {n}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise TaskError(f"{where}: not a JSON object ({err})") from None
        if not isinstance(row, dict):
            raise TaskError(f"{where}: not a JSON object")
        for key in ("problem", "answer"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise TaskError(f"{where}: needs a non-empty string '{key}'")
        pid = row.get("id", row.get("unique_id", f"line-{n}"))
        if not isinstance(pid, (str, int)) or not str(pid).strip():
            raise TaskError(f"{where}: 'id' must be a non-empty string or integer")
        pid = str(pid)
        if pid in seen:
            raise TaskError(f"{where}: duplicate id {pid!r}")
        seen.add(pid)
        problems.append(dict(id=pid, problem=row["problem"], answer=row["answer"]))
    if not problems:
        raise TaskError(f"task file {path} holds no problems")
    return problems


def load_task(task: str, data_dir: str) -> list[dict]:
    """The problems of a task (see the module docstring)."""
    if task == "builtin:arithmetic":
        return arithmetic_problems()
    return read_task_file(task_source(task, data_dir))


def prepare_task(problems: list[dict], n_problems: int | None) -> tuple[list[dict], list[str]]:
    """The first ``n_problems`` problems (all when None) whose reference answer math-verify can
    parse, and the ids of those it cannot (dropped: every answer to them would score 0)."""
    kept, unparsable = [], []
    for p in problems[:n_problems]:
        if parse_reference(p["answer"]):
            kept.append(p)
        else:
            unparsable.append(p["id"])
    return kept, unparsable


def format_prompt(template: str, problem: str) -> str:
    """The prompt text: ``template`` with ``{problem}`` replaced (no other braces are fields, so
    ``\\boxed{}`` in a template stays as written)."""
    return template.replace("{problem}", problem)


def parse_reference(answer: str):
    """A reference answer parsed by math-verify as LaTeX math ([] when it cannot parse it)."""
    from math_verify import parse

    return parse(f"${answer}$")


def score_answer(reference, output: str) -> tuple[bool, str]:
    """``(correct, extracted)``: whether math-verify finds the model ``output`` equivalent to
    the parsed ``reference`` (:func:`parse_reference`), and the answer it extracted ("" if none)."""
    from math_verify import parse, verify

    predicted = parse(output)
    extracted = str(predicted[-1]) if predicted else ""
    return bool(predicted) and bool(verify(reference, predicted)), extracted


def download_task(task: str, out_path: str | Path) -> int:
    """Fetch a downloadable task with the ``datasets`` library (network needed) and store it as
    JSONL at ``out_path``; returns the number of problems."""
    from datasets import load_dataset  # only here: the download rule, on a login node

    from .io import write_text

    repo, split, id_field = DOWNLOADABLE_TASKS[task]
    rows = load_dataset(repo, split=split)
    lines = [json.dumps(dict(id=str(r[id_field]), problem=r["problem"], answer=r["answer"],
                             **{k: r[k] for k in ("subject", "level") if k in r}), ensure_ascii=False)
             for r in rows]
    write_text(out_path, "\n".join(lines) + "\n")
    read_task_file(out_path)  # what every job will read must read
    return len(lines)

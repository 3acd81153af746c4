"""Task data of the perturbation stage: problems with reference answers (scoring: :mod:`.scoring`).

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

The ``prepare_task`` rule reads the task once, keeps the first ``n_problems`` and writes
``<results>/task/problems.json``, which every perturbation job reads through the verified chain
of :mod:`.io`. No torch and no math-verify here: the GPU jobs' code hash covers this module
(problems whose reference math-verify cannot parse are dropped by the merge,
:func:`.scoring.usable_problems`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .builtin import BUILTIN_TASKS, arithmetic_problems
from .prompts import read_utf8

#: Tasks the ``download_datasets`` rule can fetch: name -> (hub dataset, split, id field). MATH's
#: train split (7,500 problems, the paper's GRPO data) gives no answer field: the reference is the
#: last ``\\boxed{}`` of its worked solution (:func:`last_boxed`).
DOWNLOADABLE_TASKS = {"math500": ("HuggingFaceH4/MATH-500", "test", "unique_id"),
                      "math_train": ("DigitalLearningGmbH/MATH-lighteval", "train", None)}
#: Worked solutions for SFT the ``download_datasets`` rule can fetch: name -> (hub dataset, split,
#: problem field, solution field, examples kept). OpenMathInstruct-2 (Toshniwal et al. 2024) has
#: 14M examples; the first SFT_DOWNLOAD_EXAMPLES of its 1M-example split are stored (the paper
#: names the data set, not the subset; 5,000 steps of 16 examples read 80,000).
SFT_DOWNLOAD_EXAMPLES = 200_000
DOWNLOADABLE_SFT = {"openmathinstruct2": ("nvidia/OpenMathInstruct-2", "train_1M", "problem",
                                          "generated_solution", SFT_DOWNLOAD_EXAMPLES)}
#: Built-in worked solutions: the built-in arithmetic problems answered as ``\\boxed{a+b}``.
BUILTIN_SFT = ("builtin:arithmetic",)
#: The paper's MATH prompt suffix as used by published reproductions (the paper gives none).
DEFAULT_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."


class TaskError(ValueError):
    """A task file is missing, damaged or not a list of problems; the message names the file."""


def task_source(task: str, data_dir: str) -> str | None:
    """The file a task (or SFT data) is read from: None for a built-in one, the downloaded copy
    for a downloadable one, else the path itself."""
    if task in BUILTIN_TASKS:
        return None
    if task in DOWNLOADABLE_TASKS or task in DOWNLOADABLE_SFT:
        return str(Path(data_dir) / f"{task}.jsonl")
    return task


def _jsonl_objects(path: Path, what: str, missing: str):
    """``(line number, object, "<what> <path> line <n>")`` for each non-blank line of a JSONL
    file; a missing file (``missing``: how to get it), a line that is not a JSON object or a
    file that is not UTF-8 is refused, naming the file and line."""
    if not path.is_file():
        raise TaskError(f"{what} {path} does not exist ({missing})")
    text = read_utf8(path, f"{what} {path}", f"the {what}")
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{what} {path} line {n}"
        try:
            row = json.loads(line)
        except ValueError as err:
            raise TaskError(f"{where}: not a JSON object ({err})") from None
        if not isinstance(row, dict):
            raise TaskError(f"{where}: not a JSON object")
        yield n, row, where


def read_task_file(path: str | Path) -> list[dict]:
    """Problems of a JSONL task file, in file order. Errors name the file and line."""
    path = Path(path)
    problems, seen = [], set()
    for n, row, where in _jsonl_objects(path, "task file", "perturbation.task; for math500 run "
                                        "`snakemake download_datasets --cores 1` where the network is"):
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


def load_task(task: str, source: str | Path | None) -> list[dict]:
    """The problems of a task (see the module docstring), read from ``source``
    (:func:`task_source`; None for a built-in task)."""
    if task == "builtin:arithmetic":
        return arithmetic_problems()
    return read_task_file(source)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) of ``text``, braces matched,
    or None when there is none or it is not closed."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i]
        i += 1
    return None


def read_sft_file(path: str | Path) -> list[dict]:
    """Worked solutions of a JSONL file, ``{"id", "problem", "solution"}`` per line (``solution``
    may be named ``generated_solution``, OpenMathInstruct-2's field). Errors name file and line."""
    path = Path(path)
    examples = []
    for n, row, where in _jsonl_objects(path, "SFT data file", "finetune.sft_data; for openmathinstruct2 run "
                                        "`snakemake download_datasets --cores 1` where the network is"):
        solution = row.get("solution", row.get("generated_solution"))
        if not isinstance(row.get("problem"), str) or not isinstance(solution, str) \
                or not row["problem"].strip() or not solution.strip():
            raise TaskError(f"{where}: needs non-empty strings 'problem' and 'solution'")
        examples.append(dict(id=str(row.get("id", f"line-{n}")), problem=row["problem"], solution=solution))
    if not examples:
        raise TaskError(f"SFT data file {path} holds no examples")
    return examples


def load_sft(data: str, source: str | Path | None) -> list[dict]:
    """Worked solutions for SFT: the built-in arithmetic answers, or a JSONL file (:func:`read_sft_file`)."""
    if data == "builtin:arithmetic":
        return [dict(id=p["id"], problem=p["problem"], solution=f"\\boxed{{{p['answer']}}}")
                for p in arithmetic_problems()]
    return read_sft_file(source)


def format_prompt(template: str, problem: str) -> str:
    """The prompt text: ``template`` with ``{problem}`` replaced (no other braces are fields, so
    ``\\boxed{}`` in a template stays as written)."""
    return template.replace("{problem}", problem)


def task_rows(rows, id_field: str | None) -> list[dict]:
    """Problems of a downloaded split: with no answer field the reference is the last
    ``\\boxed{}`` of the solution; rows without one are skipped."""
    out = []
    for n, r in enumerate(rows):
        answer = r["answer"] if "answer" in r else last_boxed(r.get("solution", ""))
        if not answer or not answer.strip():
            continue
        out.append(dict(id=str(r[id_field]) if id_field else f"{n}", problem=r["problem"], answer=answer,
                        **{k: r[k] for k in ("subject", "level", "type") if k in r}))
    return out


def download_task(task: str, out_path: str | Path) -> int:
    """Fetch a downloadable task or SFT data set with the ``datasets`` library (network needed)
    and store it as JSONL at ``out_path``; returns the number of rows."""
    from datasets import load_dataset  # only here: the download rule, on a login node

    from .io import write_text

    if task in DOWNLOADABLE_SFT:
        repo, split, problem, solution, keep = DOWNLOADABLE_SFT[task]
        stream = load_dataset(repo, split=split, streaming=True)
        lines = [json.dumps(dict(id=str(n), problem=r[problem], solution=r[solution]), ensure_ascii=False)
                 for n, r in zip(range(keep), stream)]
        write_text(out_path, "\n".join(lines) + "\n")
        read_sft_file(out_path)
        return len(lines)
    repo, split, id_field = DOWNLOADABLE_TASKS[task]
    lines = [json.dumps(row, ensure_ascii=False) for row in task_rows(load_dataset(repo, split=split), id_field)]
    write_text(out_path, "\n".join(lines) + "\n")
    read_task_file(out_path)  # what every job will read must read
    return len(lines)

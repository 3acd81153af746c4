"""The prompt set: the paper's Appendix A (60 prompts, 6 categories x 10), and selections of it."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("prompt_id", "category", "text")


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    category: str
    text: str


def read_utf8(path: Path, where: str, what: str) -> str:
    """A text file (the prompt table, a config file) as text: UTF-8, a leading byte-order mark
    dropped (as spreadsheets write it). Other encodings are refused with a ValueError
    ``<where> line L: byte 0x.. at column C is not UTF-8; save <what> as UTF-8``."""
    raw = Path(path).read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(f"{where} line {line}: byte 0x{raw[err.start]:02x} at column {column} is "
                         f"not UTF-8; save {what} as UTF-8") from None


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read a prompt table (TSV with header ``prompt_id, category, text``), in file order.

    Fields are separated by tabs and never quoted, so a prompt cannot contain a tab or a line
    break. Every row must have as many fields as the header (a tab inside a prompt would
    otherwise cut it silently); blank lines are skipped. Errors name the file and the line.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_utf8(path, f"prompts.file: {path}", "the table"), newline=""), delimiter="\t",
                        quoting=csv.QUOTE_NONE)
    header = next(reader, [])
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"prompts.file: {path} lacks columns {sorted(missing)} (line 1 must be the "
                         f"tab-separated header {', '.join(COLUMNS)})")
    col = {c: header.index(c) for c in COLUMNS}
    prompts, line_of = [], {}
    for row in reader:
        line = reader.line_num
        if not row:                 # a blank line (e.g. at the end of the file)
            continue
        if len(row) != len(header):
            hint = ("a tab inside a prompt? prompts cannot contain tabs" if len(row) > len(header)
                    else "fields are separated by tabs")
            raise ValueError(f"prompts.file: {path} line {line}: {len(row)} fields, expected "
                             f"{len(header)} ({hint})")
        p = Prompt(*(row[col[c]] for c in COLUMNS))
        for c in COLUMNS:
            if not getattr(p, c).strip():
                raise ValueError(f"prompts.file: {path} line {line}: empty {c}")
        if p.prompt_id in line_of:
            raise ValueError(f"prompts.file: {path} line {line}: duplicate prompt id "
                             f"{p.prompt_id!r} (first on line {line_of[p.prompt_id]})")
        line_of[p.prompt_id] = line
        prompts.append(p)
    return prompts


def select_prompts(prompts: list[Prompt], categories="all", per_category: int | None = None,
                   first_k: int | None = None) -> list[Prompt]:
    """Keep the chosen categories (``"all"`` or a list of names), then the first ``per_category``
    of each, then the first ``first_k`` overall; order is the table's. Raises on an empty result."""
    known = sorted({p.category for p in prompts})
    if categories != "all":
        unknown = sorted(set(categories) - set(known))
        if unknown:
            raise ValueError(f"prompts.categories: unknown categories {unknown}; known: {known}")
        prompts = [p for p in prompts if p.category in categories]
    if per_category is not None:
        seen: dict[str, int] = {}
        kept = []
        for p in prompts:
            seen[p.category] = seen.get(p.category, 0) + 1
            if seen[p.category] <= per_category:
                kept.append(p)
        prompts = kept
    if first_k is not None:
        prompts = prompts[:first_k]
    if not prompts:
        raise ValueError("prompts.categories: the selection is empty (check prompts.categories, "
                         "prompts.per_category and prompts.first_k)")
    return prompts

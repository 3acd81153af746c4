"""The prompt set: the paper's Appendix A (60 prompts, 6 categories x 10), and selections of it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    category: str
    text: str


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read a prompt table (TSV with header ``prompt_id, category, text``), in file order."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"prompt_id", "category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"prompts.file: {path} lacks columns {sorted(missing)}")
        prompts = [Prompt(r["prompt_id"], r["category"], r["text"]) for r in reader]
    ids = [p.prompt_id for p in prompts]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"prompts.file: {path} has duplicate prompt ids {dupes}")
    empty = [p.prompt_id for p in prompts if not p.text.strip()]
    if empty:
        raise ValueError(f"prompts.file: {path} has empty prompt text for {empty}")
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

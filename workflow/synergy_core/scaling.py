"""The scaling figure's data: each verdict's number against model size, read from the summary.

Every number comes from ``summary.tsv`` (one row per model, :mod:`synergy_core.stages.summary`),
so the figure needs no computation of its own: the x position is ``n_parameters`` (the parameter
count the extraction recorded), and each panel of :data:`PANELS` takes a verdict's estimate, its
interval (``<estimate>_ci_low``, ``_ci_high``), its p-value with that p-value's floor, and the
verdict. A model or panel that cannot be drawn is never dropped silently: :func:`scaling_points`
returns it in its notes, with the reason, for the figure's titles and the job's log.
"""

from __future__ import annotations

import math

import pandas as pd

#: The panels: the summary columns each draws, the value of "no effect" (a reference line) and,
#: for a missing estimate, the config key that decides whether the test ran at all.
PANELS = {
    "inverted_u": dict(estimate="mid_minus_outer", p="mid_minus_outer_p_layer_perm",
                       verdict="verdict_inverted_u", reference=0.0, stage_key=None),
    "ablation": dict(estimate="ratio_synergistic_random", p="ratio_synergistic_random_p",
                     verdict="verdict_ablation", reference=1.0, stage_key="ablation.models"),
}
#: Columns of the points table :func:`scaling_points` returns.
POINT_COLUMNS = ("model", "kind", "panel", "n_parameters", "estimate", "ci_low", "ci_high", "p",
                 "p_floor", "verdict")


def _number(value) -> float:
    """A summary cell as a float (NaN when empty or not a number)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def scaling_points(summary: pd.DataFrame, models: list[str]) -> tuple[pd.DataFrame, dict]:
    """The points of the scaling figure and what was left out.

    ``summary``: the summary table (``model``, ``init``, ``n_parameters`` and the columns of
    :data:`PANELS`); ``models``: the models to draw (``scaling.models``), each a row of it.
    Returns ``(points, notes)``: ``points`` has one row per drawn (model, panel) with
    :data:`POINT_COLUMNS` (``kind``: ``trained``, or ``random`` for ``init: random``), sorted by
    panel, kind and size; ``notes`` maps ``"all"`` (models left out of every panel) and each
    panel to its lines ``"<reason>: <models>"`` (``every random-init twin`` when a reason applies
    to exactly the random-init models that have a parameter count, two or more). Reasons: no
    parameter count (activations extracted before it was recorded), the test not run (an empty
    verdict: e.g. a model not in ``ablation.models``), an empty estimate where the test ran, or
    (the point still drawn, with both bounds NaN) an interval with an empty bound (the summary
    writes an infinite bound, e.g. of a ratio with too few random orders, as empty). A point
    whose verdict cell is empty is
    ``inconclusive``. Raises ``ValueError`` naming a model the summary has no row for."""
    rows = summary.drop_duplicates("model").set_index("model")
    absent = [m for m in models if m not in rows.index]
    if absent:
        raise ValueError(f"scaling.models: {absent} have no row in the summary (its models: "
                         f"{list(rows.index)}); rerun the summary with these models configured")
    points, notes, twins = [], {"all": {}, **{panel: {} for panel in PANELS}}, []

    def note(where, reason, model):
        notes[where].setdefault(reason, []).append(model)

    for model in models:
        row = rows.loc[model]
        x = _number(row.get("n_parameters"))
        if math.isnan(x):
            note("all", "not drawn, no parameter count (n_parameters empty: rerun its "
                 "extraction)", model)
            continue
        kind = "random" if _text(row.get("init")) == "random" else "trained"
        if kind == "random":
            twins.append(model)
        for panel, spec in PANELS.items():
            estimate = _number(row.get(spec["estimate"]))
            verdict = _text(row.get(spec["verdict"]))
            if math.isnan(estimate):
                ran = verdict or not spec["stage_key"]
                note(panel, f"not drawn, {spec['estimate']} empty" if ran else
                     f"not drawn, not run ({spec['stage_key']})", model)
                continue
            lo = _number(row.get(f"{spec['estimate']}_ci_low"))
            hi = _number(row.get(f"{spec['estimate']}_ci_high"))
            if math.isnan(lo) or math.isnan(hi):   # no half intervals: e.g. [0, inf] is empty
                note(panel, "drawn without an interval (a bound empty or infinite)", model)
                lo = hi = math.nan
            points.append(dict(model=model, kind=kind, panel=panel, n_parameters=int(x),
                               estimate=estimate, ci_low=lo, ci_high=hi,
                               p=_number(row.get(spec["p"])),
                               p_floor=_number(row.get(f"{spec['p']}_floor")),
                               verdict=verdict or "inconclusive"))
    frame = pd.DataFrame(points, columns=list(POINT_COLUMNS))
    frame = frame.sort_values(["panel", "kind", "n_parameters"], kind="stable", ignore_index=True)
    return frame, {where: [f"{reason}: "
                           + ("every random-init twin" if len(twins) > 1
                              and sorted(who) == sorted(twins) else ", ".join(who))
                           for reason, who in reasons.items()]
                   for where, reasons in notes.items()}

"""Answer scoring of the perturbation stage with math-verify (no torch).

The protocol of published MATH evaluations: the model's answer is its **last** ``\\boxed{...}``.
The output is cut at its last ``\\boxed`` and only a boxed answer is extracted
(math-verify's LaTeX extraction without its fall-back to any expression in the text), so an
answer cut off before its ``\\boxed{}`` closes, or given without one, scores 0, never credit
for a stray number. Equivalence is math-verify's ``verify`` (symbolic and numeric, units,
intervals, sets normalised); the reference is parsed as LaTeX math.

A parsing or verification error (math-verify raises one for malformed LaTeX, or on its
5-second timeout) scores 0 *and is counted*: the merged table has a ``scoring_error`` column.
"""

from __future__ import annotations

BOXED = "\\boxed"


def _extraction():
    from math_verify import LatexExtractionConfig

    return [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)]


def parse_reference(answer: str):
    """A reference answer parsed by math-verify as LaTeX math ([] when it cannot parse it)."""
    from math_verify import parse

    return parse(f"${answer}$")


def score_answer(reference, output: str) -> tuple[bool, str, bool]:
    """``(correct, extracted, error)`` of a model ``output`` against a parsed ``reference``
    (:func:`parse_reference`): the last ``\\boxed{}`` answer, "" if there is none, and whether
    math-verify failed on it (then ``correct`` is False)."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException  # a BaseException, not an Exception

    at = output.rfind(BOXED)
    if at < 0:
        return False, "", False
    try:
        predicted = parse(output[at:], extraction_config=_extraction(), raise_on_error=True)
        if not predicted:
            return False, "", False
        return bool(verify(reference, predicted, raise_on_error=True)), str(predicted[-1]), False
    except (Exception, TimeoutException):  # noqa: BLE001 - math-verify raises many types; counted
        return False, "", True


def usable_problems(problems: list[dict]) -> tuple[list[dict], list[str]]:
    """The problems whose reference answer math-verify can parse, and the ids of those it
    cannot (dropped by the merge: every answer to them would score 0)."""
    kept, unparsable = [], []
    for p in problems:
        if parse_reference(p["answer"]):
            kept.append(p)
        else:
            unparsable.append(p["id"])
    return kept, unparsable

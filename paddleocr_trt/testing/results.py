"""Field-by-field comparison of two ``PaddleOCR.predict`` result lists.

The fast path is judged against stock PaddleOCR on the same inputs: same texts, boxes, scores,
orientation and word boxes. Results are reduced to plain JSON first so that a result computed in
another process (a fresh interpreter) compares the same way as one from this process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: compared exactly
EXACT_FIELDS = ("input_path", "page_index", "rec_texts", "textline_orientation_angles", "text_word")
#: pixel coordinates, compared within ``box_tolerance``
BOX_FIELDS = ("dt_polys", "rec_polys", "rec_boxes", "text_word_region", "text_word_boxes")
#: probabilities, compared within ``score_tolerance``
SCORE_FIELDS = ("rec_scores",)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def result_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """The compared fields of one OCR result as plain JSON (absent fields are left out)."""
    out: dict[str, Any] = {}
    for name in EXACT_FIELDS + BOX_FIELDS + SCORE_FIELDS:
        try:
            value = result[name]
        except (KeyError, TypeError):
            continue
        out[name] = _plain(value)
    return out


def _numeric_diff(a: Any, b: Any) -> float | None:
    """Max abs difference, or None when the shapes differ (a different number of lines/words)."""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return None
        worst = 0.0
        for x, y in zip(a, b, strict=True):
            d = _numeric_diff(x, y)
            if d is None:
                return None
            worst = max(worst, d)
        return worst
    if isinstance(a, list) or isinstance(b, list):
        return None
    return abs(float(a) - float(b))


def result_differences(
    expected: Sequence[Mapping[str, Any]],
    actual: Sequence[Mapping[str, Any]],
    *,
    box_tolerance: float = 1.0,
    score_tolerance: float = 1e-3,
) -> list[str]:
    """Every field where ``actual`` departs from ``expected``; empty when they agree."""
    problems: list[str] = []
    if len(expected) != len(actual):
        return [f"{len(actual)} results, expected {len(expected)}"]
    for index, (exp, act) in enumerate(zip(expected, actual, strict=True)):
        e, a = result_fields(exp), result_fields(act)
        where = f"result {index} ({e.get('input_path')})"
        if set(e) != set(a):
            problems.append(f"{where}: fields {sorted(set(e) ^ set(a))} present on one side only")
        for name in sorted(set(e) & set(a)):
            if name in EXACT_FIELDS:
                if e[name] != a[name]:
                    problems.append(f"{where}: {name} {a[name]!r} != expected {e[name]!r}")
                continue
            tolerance = box_tolerance if name in BOX_FIELDS else score_tolerance
            diff = _numeric_diff(e[name], a[name])
            if diff is None:
                problems.append(f"{where}: {name} differs in shape")
            elif diff > tolerance:
                problems.append(f"{where}: {name} differs by {diff:g} > {tolerance:g}")
    return problems

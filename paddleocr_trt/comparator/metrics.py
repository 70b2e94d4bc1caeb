"""Task-level agreement metrics: what "accuracy retained" means for each OCR model type.

Raw tensor differences say little about OCR quality (a det map can move by 0.05 everywhere and
give the same boxes; a rec logit can move by 1e-3 and flip a character), so validation judges
candidates the way the pipeline uses their outputs: boxes, text and labels.
"""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance (insert, delete, substitute all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, 1):
        current = [i]
        for j, item_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b))
            )
        previous = current
    return previous[-1]


def character_error_rate(reference: str, hypothesis: str, *, ignore_spaces: bool = False) -> float:
    """Edit distance over the reference length; 0.0 for two empty strings, 1.0 for "" vs text."""
    if ignore_spaces:
        reference = "".join(reference.split())
        hypothesis = "".join(hypothesis.split())
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return edit_distance(reference, hypothesis) / len(reference)

"""Engine outputs cut back into each caller's rows, and calls made of consecutive chunks.

Everything here relies on one property (NOTES.md section 7): a row's numbers do not depend on
the other rows of its call, so calls can be merged and cut freely.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def split_rows(outputs: list[Any], counts: list[int]) -> list[list[Any]]:
    """Batch-major outputs of one call -> one list per consecutive part of ``counts`` (arrays
    are sliced; a resident map gives views of its rows, ``postprocess.resident``)."""
    from ..postprocess.resident import take_rows

    parts, start = [], 0
    for n in counts:
        parts.append([take_rows(out, start, n) for out in outputs])
        start += n
    return parts


def split_like_paddlex(pred: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per instance, as ``BasePredictor.apply`` (paddlex 3.7.2) splits a dict of lists:
    list values are indexed, anything else (a numpy array too) is given whole to every item."""
    first = next(iter(pred.values()), None)
    n = len(first) if isinstance(first, list) else 1
    return [
        {k: v[idx] if isinstance(v, list) and idx < len(v) else v for k, v in pred.items()}
        for idx in range(n)
    ]


def join_rows(parts: list[list[Any]]) -> list[Any]:
    """One chunk's outputs from the calls its rows went to (one call: as it came; several, only
    on a CPU: numpy arrays, joined along the batch axis)."""
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]


def calls_of(chunks: list[tuple[Any, Any, list[np.ndarray]]], most: int) -> list[list[Any]]:
    """Consecutive chunks, at most ``most`` a call, one input dtype a call: a chunk that took
    PaddleX's stock steps (float, for crops the fused graph does not take) never shares a call
    with uint8 chunks."""
    calls: list[list[Any]] = []
    for chunk in chunks:
        last = calls[-1] if calls else None
        if last and len(last) < most and last[0][2][0].dtype == chunk[2][0].dtype:
            last.append(chunk)
        else:
            calls.append([chunk])
    return calls

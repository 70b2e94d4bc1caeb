"""Batch back-off: when a batch does not fit in GPU memory, run it in smaller pieces.

TensorRT has no automatic back-off, and dropping images is never acceptable, so on
OutOfMemoryError the batch is halved until it fits (down to ``min_batch``) and the pieces'
outputs are concatenated in the original order (resident maps are joined, not copied).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ...errors import OutOfMemoryError
from ...log import get_logger
from .concat import concat_outputs

logger = get_logger("cuda.oom")


def run_with_backoff(
    batch: Sequence[np.ndarray] | np.ndarray,
    fn: Callable[[np.ndarray], list[np.ndarray]],
    *,
    what: str,
    min_batch: int = 1,
) -> list[np.ndarray]:
    """Call ``fn`` on the whole batch (axis 0); on OutOfMemoryError retry in halves.

    A sequence is stacked into one array (one item per image). ``fn`` returns one array per
    model output, each with the batch on axis 0. Once a piece size fits, the rest of the batch
    is run at that size. Re-raises OutOfMemoryError when even ``min_batch`` items fail.
    """
    if min_batch < 1:
        raise ValueError(f"min_batch must be >= 1, got {min_batch}")
    arr = batch if isinstance(batch, np.ndarray) else np.stack(list(batch))
    total = int(arr.shape[0])
    if total == 0:
        return fn(arr)
    size = total
    pieces: list[list[np.ndarray]] = []
    start = 0
    while start < total:
        chunk = arr[start : start + size]
        try:
            outs = fn(chunk)
        except OutOfMemoryError as exc:
            if len(chunk) <= min_batch:
                raise OutOfMemoryError(
                    f"{what}: out of GPU memory even at batch {len(chunk)} "
                    f"(min_batch={min_batch}): {exc}"
                ) from exc
            new_size = max(min_batch, (len(chunk) + 1) // 2)
            logger.warning(
                "%s: out of GPU memory at batch %d; retrying in batches of %d (%s)",
                what,
                len(chunk),
                new_size,
                exc,
            )
            size = new_size
            continue
        pieces.append(list(outs))
        start += len(chunk)
    if len(pieces) == 1:
        return pieces[0]
    n_out = len(pieces[0])
    return [concat_outputs([p[i] for p in pieces]) for i in range(n_out)]

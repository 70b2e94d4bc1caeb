"""Producers that write their batch straight into the engine's pinned input buffers.

Why a scope: a view leased from :meth:`TensorRTRunner.input_views` must be consumed by the very
next call of the runner (``input_views.py`` in ``engines/tensorrt``), so producers only ask for one
while the code that calls the runner right after them has opened :func:`input_view_scope`
(PaddleX's ``process`` through our hook; the pipelined path around each engine call). Outside a
scope, or when the runner has no views to give (ONNX Runtime, native Paddle, a fallback, shapes
TensorRT would split or cannot run, a busy profile), producers build plain arrays exactly as
before. Leases not consumed by the end of the scope are released there.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

_SCOPE: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "paddleocr_trt_input_view_scope", default=None
)


@contextlib.contextmanager
def input_view_scope() -> Iterator[None]:
    """Producers inside may lease engine input views; the runner call consuming them must be
    inside too. Every lease taken in the scope is released on exit (a no-op once consumed)."""
    leases: list[Any] = []
    token = _SCOPE.set(leases)
    try:
        yield
    finally:
        _SCOPE.reset(token)
        for lease in leases:
            lease.release()


def leased_views(
    runner: Any, shapes: Sequence[Sequence[int]], dtypes: Sequence[np.dtype | type]
) -> list[np.ndarray] | None:
    """Views of ``runner``'s input buffers at ``shapes`` with exactly ``dtypes``, or None (build
    plain arrays). Only inside :func:`input_view_scope`."""
    leases = _SCOPE.get()
    if leases is None or runner is None:
        return None
    ask = getattr(runner, "input_views", None)
    if not callable(ask):
        return None
    lease = ask([tuple(int(d) for d in s) for s in shapes])
    if lease is None:
        return None
    views = list(lease.views)
    if [v.dtype for v in views] != [np.dtype(d) for d in dtypes]:
        lease.release()  # the engine takes another dtype: a cast is a copy anyway
        return None
    leases.append(lease)
    return views


def concat_into_views(runner: Any, parts: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """``[np.concatenate([p[k] for p in parts]) for k]`` written into leased views when the
    runner gives them (same values either way), else plain arrays."""
    n_in = len(parts[0])
    cols = [[p[k] for p in parts] for k in range(n_in)]
    shapes = [(sum(a.shape[0] for a in col), *col[0].shape[1:]) for col in cols]
    same = all(a.shape[1:] == col[0].shape[1:] for col in cols for a in col)
    dtypes = [np.result_type(*col) for col in cols]
    views = leased_views(runner, shapes, dtypes) if same else None
    if views is None:
        return [np.concatenate(col, axis=0) for col in cols]
    for col, view in zip(cols, views, strict=True):
        np.concatenate(col, axis=0, out=view)
    return views

"""Engine outputs recorded once and replayed: what a pipeline's host side costs on its own.

For benchmarks only (it is labelled "replayed" wherever its numbers appear): wrap a
predictor's runner, run a workload once to record, then switch to replay and every model call
is answered from the recording, so the pipeline runs at the speed of its host code, as if the
model cost nothing. Recording is per batch row (keyed by a cheap fingerprint of the row), so a
replayed run may batch rows differently from the recorded one (stock batches per image, the
pipelined path merges images).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

_SAMPLES = 4096  # values hashed per row: cheap, and enough to tell rows of a workload apart


def row_key(row: np.ndarray) -> tuple:
    flat = np.ascontiguousarray(row).reshape(-1)
    sample = np.ascontiguousarray(flat[:: max(1, flat.size // _SAMPLES)])
    return row.shape, row.dtype.str, hashlib.blake2b(sample.tobytes(), digest_size=16).digest()


class ReplayRunner:
    """Wraps a PaddleX runner (ours): ``mode`` is "pass", "record" or "replay"."""

    __paddleocr_trt_runner__ = True  # still counts as our engine for the pipelined path

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.mode = "pass"
        self._rows: dict[tuple, list[np.ndarray]] = {}
        self.misses = 0

    @property
    def backend(self) -> str:
        return getattr(self.inner, "backend", "unknown")

    def __call__(self, x: Sequence[np.ndarray] | None = None, **kwargs: Any) -> list[np.ndarray]:
        inputs = list(x) if x is not None else list(kwargs.values())
        if self.mode == "replay":
            keys = [row_key(row) for row in inputs[0]]
            if all(k in self._rows for k in keys):
                rows = [self._rows[k] for k in keys]
                return [np.stack([r[i] for r in rows]) for i in range(len(rows[0]))]
            self.misses += 1  # not recorded: run the engine (counted, reported)
        outputs = list(self.inner(x=inputs))
        if self.mode == "record":
            for n, row in enumerate(inputs[0]):
                self._rows[row_key(row)] = [_row(out, n) for out in outputs]
        return outputs

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _row(output: Any, n: int) -> np.ndarray:
    """Row ``n`` of an engine output as an array (a resident map is read whole: replayed, it
    comes back as an array, which the adapted steps accept)."""
    if isinstance(output, np.ndarray):
        return output[n].copy()
    _, channels, h, w = output.shape
    return np.stack([output.window(n, c, 0, h, 0, w) for c in range(channels)])


def wrap_pipeline(pipeline: Any) -> list[ReplayRunner]:
    """Put a :class:`ReplayRunner` around det, rec and (if present) orientation runners."""
    wrapped = []
    for attr in ("text_det_model", "text_rec_model", "textline_orientation_model"):
        predictor = getattr(pipeline, attr, None)
        if predictor is not None and not isinstance(predictor.runner, ReplayRunner):
            predictor.runner = ReplayRunner(predictor.runner)
        if predictor is not None:
            wrapped.append(predictor.runner)
    return wrapped


def set_mode(runners: list[ReplayRunner], mode: str) -> None:
    if mode not in ("pass", "record", "replay"):
        raise ValueError(f"mode={mode!r}: use pass, record or replay")
    for runner in runners:
        runner.mode = mode

"""Joining one output's batch pieces (a split batch, OOM halves): arrays are concatenated,
resident maps are joined as one map that reads each image from its piece (no copy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ...postprocess.resident import MaskedWindow, check_masked_window, check_window


class BatchConcatMap:
    """Maps of consecutive batch slices read as one (N, C, H, W) map: a split batch's outputs.

    Windows go to the part that holds image ``b``; nothing is copied to join them.
    """

    nbytes = 0

    def __init__(self, parts: Sequence[Any]) -> None:
        if not parts:
            raise ValueError("no resident maps to join")
        self.parts = list(parts)
        first = self.parts[0]
        tail = tuple(first.shape[1:])
        for p in self.parts:
            if tuple(p.shape[1:]) != tail or p.dtype != first.dtype:
                raise ValueError(f"cannot join resident maps {p.shape} and {first.shape}")
        self.shape = (sum(int(p.shape[0]) for p in self.parts), *tail)
        self.dtype = first.dtype

    @property
    def fetched_bytes(self) -> int:
        return sum(p.fetched_bytes for p in self.parts)

    @property
    def on_fetch(self) -> Any:
        return self.parts[0].on_fetch

    @on_fetch.setter
    def on_fetch(self, callback: Any) -> None:  # every piece reports to the same counter
        for p in self.parts:
            p.on_fetch = callback

    def _locate(self, b: int) -> tuple[Any, int]:
        if not 0 <= b < self.shape[0]:
            raise ValueError(f"batch index {b} outside the resident map of shape {self.shape}")
        for p in self.parts:
            n = int(p.shape[0])
            if b < n:
                return p, b
            b -= n
        raise AssertionError("unreachable")

    def window(self, b: int, c: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        check_window(self.shape, b, c, y0, y1, x0, x1)
        part, local = self._locate(b)
        return part.window(local, c, y0, y1, x0, x1)

    def windows(self, boxes: Sequence[tuple[int, int, int, int, int, int]]) -> list[np.ndarray]:
        """Each piece reads its boxes in one batch when it can (see DeviceResidentMap)."""
        groups: dict[int, list[tuple[int, tuple]]] = {}
        for k, (b, c, y0, y1, x0, x1) in enumerate(boxes):
            check_window(self.shape, b, c, y0, y1, x0, x1)
            part, local = self._locate(b)
            groups.setdefault(id(part), []).append((k, (local, c, y0, y1, x0, x1)))
        out: list[Any] = [None] * len(boxes)
        for part in self.parts:
            items = groups.get(id(part), [])
            if not items:
                continue
            batch = getattr(part, "windows", None)
            local_boxes = [box for _, box in items]
            arrays = batch(local_boxes) if batch else [part.window(*b) for b in local_boxes]
            for (k, _), array in zip(items, arrays, strict=True):
                out[k] = array
        return out

    def masked_sums(self, windows: Sequence[MaskedWindow]) -> np.ndarray:
        """Each piece sums its windows (image index made local) in one call; results in the
        order asked. Every window is checked before any piece is asked."""
        groups: dict[int, list[tuple[int, MaskedWindow]]] = {}
        for k, win in enumerate(windows):
            check_masked_window(self.shape, win)
            part, local = self._locate(win.b)
            groups.setdefault(id(part), []).append((k, replace(win, b=local)))
        parts = {id(p): p for p in self.parts}
        out = np.zeros(len(windows), np.float64)
        for key, items in groups.items():
            out[[k for k, _ in items]] = parts[key].masked_sums([win for _, win in items])
        return out

    def to_numpy(self) -> np.ndarray:
        return np.concatenate([p.to_numpy() for p in self.parts], axis=0)

    def release(self) -> None:
        for p in self.parts:
            p.release()


def concat_outputs(parts: Sequence[Any]) -> Any:
    """Join one output's batch pieces: arrays are concatenated, resident maps joined."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts, axis=0)
    if any(isinstance(p, np.ndarray) for p in parts):
        raise TypeError("cannot join arrays with resident maps of the same output")
    return BatchConcatMap(parts)

"""An ONNX Runtime output kept inside ONNX Runtime; DB box scores are summed there too.

Why: ``InferenceSession.run`` copies every output into a new numpy array. det's probability
map (5.6 MB for a 1000x1400 page, 48 MB for 3000x4000) is needed only for the mean inside each
candidate box, so the det runner asks for its outputs as ``OrtValue`` s
(``run_with_ort_values``), keeps the map's, and answers
:meth:`~paddleocr_trt.postprocess.resident.ResidentMap.masked_sums` with a second, tiny graph
run over that same ``OrtValue`` (no copy): Gather the masked pixels, Cast to float64 and
CumSum along each row. CumSum adds one value at a time in order, so each sum is
:func:`~paddleocr_trt.postprocess.resident.masked_sum_of`'s bit for bit (tested), which is
what ``cv2.mean`` accumulates. 8 bytes per box come back instead of the box's window.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...postprocess.resident import (
    SUM_BYTES,
    MaskedWindow,
    OnFetch,
    check_masked_window,
    check_window,
)

#: a group of windows is padded to its longest mask; at most this share of it is padding
MAX_PADDING = 0.5


def masked_sum_graph() -> bytes:
    """The serialized ONNX graph ``sums[k] = cumsum(float64(where(valid, map[index], 0)))[-1]``
    over the flattened map: ``index`` (K, L) int64, ``valid`` (K, L) bool -> ``sums`` (K,)."""
    from onnx import TensorProto, helper

    def const(name: str, dtype: int, dims: list[int], values: list) -> Any:
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, dtype, dims, values)
        )

    nodes = [
        const("flat_shape", TensorProto.INT64, [1], [-1]),
        const("zero", TensorProto.FLOAT, [], [0.0]),
        const("row_axis", TensorProto.INT64, [], [1]),
        const("last", TensorProto.INT64, [], [-1]),
        helper.make_node("Reshape", ["map", "flat_shape"], ["flat"]),
        helper.make_node("Gather", ["flat", "index"], ["values"], axis=0),
        helper.make_node("Where", ["valid", "values", "zero"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["kept64"], to=TensorProto.DOUBLE),
        helper.make_node("CumSum", ["kept64", "row_axis"], ["running"]),
        helper.make_node("Gather", ["running", "last"], ["last_sums"], axis=1),
        # cv2 starts from +0.0: masked values all -0.0 sum to +0.0 there, not -0.0
        const("zero64", TensorProto.DOUBLE, [], [0.0]),
        helper.make_node("Add", ["last_sums", "zero64"], ["sums"]),
    ]
    graph = helper.make_graph(
        nodes,
        "paddleocr_trt_masked_sums",
        [
            helper.make_tensor_value_info("map", TensorProto.FLOAT, ["N", "C", "H", "W"]),
            helper.make_tensor_value_info("index", TensorProto.INT64, ["K", "L"]),
            helper.make_tensor_value_info("valid", TensorProto.BOOL, ["K", "L"]),
        ],
        [helper.make_tensor_value_info("sums", TensorProto.DOUBLE, ["K"])],
    )
    return _model_bytes(graph)


def _model_bytes(graph: Any) -> bytes:
    """A checked opset-17 model of ``graph``, serialized (IR 8: readable by every ONNX Runtime
    this package supports)."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def window_graph() -> bytes:
    """The serialized ONNX graph ``window = map[starts:ends]`` (a Slice over all 4 axes)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Slice", ["map", "starts", "ends"], ["window"])],
        "paddleocr_trt_map_window",
        [
            helper.make_tensor_value_info("map", TensorProto.FLOAT, ["N", "C", "H", "W"]),
            helper.make_tensor_value_info("starts", TensorProto.INT64, [4]),
            helper.make_tensor_value_info("ends", TensorProto.INT64, [4]),
        ],
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["n", "c", "h", "w"])],
    )
    return _model_bytes(graph)


class MaskedSumSession:
    """The masked-sum and window graphs on ONNX Runtime's CPU provider; made once per det
    runner (the window one on first use: only the first score's check needs it)."""

    def __init__(self, threads: int | None = None) -> None:
        import onnxruntime as ort

        from .session import session_options

        self._ort = ort
        self._options = session_options(threads)
        self.session = self._session(masked_sum_graph())
        self._window: Any = None

    def _session(self, model: bytes) -> Any:
        return self._ort.InferenceSession(model, self._options, providers=["CPUExecutionProvider"])

    def _run(self, session: Any, output: str, map_value: Any, **arrays: np.ndarray) -> np.ndarray:
        """``output`` of ``session`` over the kept map and host ``arrays`` (wrapped, no copy)."""
        feed = {"map": map_value}
        feed.update({k: self._ort.OrtValue.ortvalue_from_numpy(a) for k, a in arrays.items()})
        return session.run_with_ort_values([output], feed)[0].numpy()

    def window(self, map_value: Any, starts: Sequence[int], ends: Sequence[int]) -> np.ndarray:
        if self._window is None:
            self._window = self._session(window_graph())
        return self._run(
            self._window,
            "window",
            map_value,
            starts=np.array(starts, np.int64),
            ends=np.array(ends, np.int64),
        )

    def run(self, map_value: Any, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self._run(self.session, "sums", map_value, index=index, valid=valid)


def padded_groups(counts: Sequence[int]) -> list[list[int]]:
    """Window indices grouped so each group, padded to its longest mask, is at most
    :data:`MAX_PADDING` padding (one graph run per group; longest first)."""
    order = sorted(range(len(counts)), key=lambda k: -counts[k])
    groups: list[list[int]] = []
    for k in order:
        if groups:
            group = groups[-1]
            longest = counts[group[0]]
            filled = sum(counts[j] for j in group) + counts[k]
            if (len(group) + 1) * longest * (1 - MAX_PADDING) <= filled:
                group.append(k)
                continue
        groups.append([k])
    return groups


class OrtResidentMap:
    """:class:`~paddleocr_trt.postprocess.resident.ResidentMap` over an ONNX Runtime
    ``OrtValue`` (CPU): box sums and windows are computed in ONNX Runtime; ``to_numpy`` copies
    the whole map out (counted) for a caller that needs it all."""

    nbytes = 0  # what crossed the engine boundary when the output was returned

    def __init__(self, value: Any, sums: MaskedSumSession, on_fetch: OnFetch | None = None) -> None:
        shape = tuple(int(d) for d in value.shape())
        if len(shape) != 4:
            raise ValueError(f"a resident map is (N, C, H, W), got shape {shape}")
        self.shape = shape
        self.dtype = np.dtype(np.float32)
        if value.data_type() != "tensor(float)":
            raise TypeError(f"a resident map from ONNX Runtime is float32, got {value.data_type()}")
        self.fetched_bytes = 0
        self.on_fetch = on_fetch
        self._value: Any = value
        self._sums = sums
        self._lock = threading.Lock()

    def _live(self) -> Any:
        value = self._value
        if value is None:
            raise RuntimeError("resident map read after release()")
        return value

    def _count(self, nbytes: int) -> None:
        with self._lock:
            self.fetched_bytes += nbytes
        if self.on_fetch is not None:
            self.on_fetch(nbytes)

    def masked_sums(self, windows: Sequence[MaskedWindow]) -> np.ndarray:
        value = self._live()
        for win in windows:
            check_masked_window(self.shape, win)
        out = np.zeros(len(windows), np.float64)
        if not windows:
            return out
        _, channels, h, w = self.shape
        flat: list[np.ndarray] = []
        for win in windows:
            wh, ww = win.mask.shape
            base = (win.b * channels + win.c) * h * w
            rows = base + (win.y0 + np.arange(wh, dtype=np.int64)) * w + win.x0
            # boolean indexing walks row-major: cv2.mean's order
            flat.append((rows[:, None] + np.arange(ww, dtype=np.int64))[win.mask != 0])
        counts = [f.size for f in flat]
        for group in padded_groups(counts):
            longest = max(counts[group[0]], 1)
            index = np.zeros((len(group), longest), np.int64)
            valid = np.zeros((len(group), longest), np.bool_)
            for row, k in enumerate(group):
                index[row, : counts[k]] = flat[k]
                valid[row, : counts[k]] = True
            out[group] = self._sums.run(value, index, valid)
        self._count(SUM_BYTES * len(windows))
        return out

    def window(self, b: int, c: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """One window, sliced inside ONNX Runtime (only its bytes come out)."""
        check_window(self.shape, b, c, y0, y1, x0, x1)
        out = self._sums.window(self._live(), (b, c, y0, x0), (b + 1, c + 1, y1, x1))[0, 0]
        self._count(out.nbytes)
        return out

    def to_numpy(self) -> np.ndarray:
        """The whole map, copied out of ONNX Runtime (counted)."""
        copied = self._live().numpy()
        self._count(copied.nbytes)
        return copied

    def release(self) -> None:
        self._value = None

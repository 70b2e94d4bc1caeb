"""Estimate an execution context's activation memory from the ONNX graph, without a GPU.

A TensorRT context needs device memory for the intermediate tensors of its profile's largest
shapes (plus tactic scratch, bounded by the builder's workspace). ONNX shape inference at the
profile's ``max`` shapes gives every intermediate tensor's size; walking the nodes in graph
order and freeing each tensor after its last reader gives the peak of live tensors, which is
what a memory planner that reuses buffers needs at least (``peak_bytes``); the plain sum
(``total_bytes``) is the no-reuse upper bound. TensorRT fuses layers and may need less than the
peak, or more for scratch, so the numbers are for budgets and profile design, not promises;
``pytest -m tensorrt`` prints the real ``get_device_memory_size_for_profile_v2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
GIB = 1 << 30


@dataclass(frozen=True)
class ActivationEstimate:
    """Activation memory of one context at ``shapes`` (float tensors at ``float_bytes``)."""

    shapes: dict[str, tuple[int, ...]]
    float_bytes: int
    peak_bytes: int
    total_bytes: int
    io_bytes: int
    unknown_tensors: int

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB


def _elem_bytes(elem: int, float_bytes: int) -> int:
    if elem in FLOAT_TYPES:
        return float_bytes
    return onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize if elem else 4


def _with_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    names = {i.name for i in fixed.graph.input}
    unknown = set(shapes) - names
    if unknown:
        raise ValueError(f"no graph inputs {sorted(unknown)}; the graph has {sorted(names)}")
    for value in fixed.graph.input:
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shapes[value.name]):
            raise ValueError(f"{value.name}: rank {len(dims)} != shape {shapes[value.name]}")
        for dim, size in zip(dims, shapes[value.name], strict=True):
            dim.ClearField("dim_param")
            dim.dim_value = int(size)
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed, data_prop=True)


def estimate_activation_memory(
    model: onnx.ModelProto | str | Path,
    shapes: Mapping[str, Sequence[int]],
    *,
    float_bytes: int = 4,
) -> ActivationEstimate:
    """Peak live and total bytes of the intermediate tensors at ``shapes`` (graph I/O apart)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inferred = _with_shapes(model, shapes).graph
    sizes: dict[str, int] = {}
    unknown = 0
    for info in inferred.value_info:
        tt = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        if any(d < 0 for d in dims) or not tt.HasField("shape"):
            unknown += 1
            continue
        sizes[info.name] = math.prod(dims) * _elem_bytes(tt.elem_type, float_bytes)
    io = {v.name for v in (*inferred.input, *inferred.output)}
    io_bytes = 0
    for value in (*inferred.input, *inferred.output):
        tt = value.type.tensor_type
        dims = [d.dim_value for d in tt.shape.dim]
        io_bytes += math.prod(dims) * _elem_bytes(tt.elem_type, 4)
    last_use: dict[str, int] = {}
    for idx, node in enumerate(inferred.node):
        for name in node.input:
            last_use[name] = idx
    live = peak = total = 0
    for idx, node in enumerate(inferred.node):
        for name in node.output:
            if name in sizes and name not in io:
                live += sizes[name]
                total += sizes[name]
        peak = max(peak, live)
        for name in {*node.input, *node.output}:
            if name in sizes and name not in io and last_use.get(name, idx) <= idx:
                live -= sizes[name]
                sizes.pop(name)
    return ActivationEstimate(
        shapes={k: tuple(int(d) for d in v) for k, v in shapes.items()},
        float_bytes=float_bytes,
        peak_bytes=peak,
        total_bytes=total,
        io_bytes=io_bytes,
        unknown_tensors=unknown,
    )


def estimate_profiles(
    model: onnx.ModelProto | str | Path,
    profiles: Sequence[Mapping[str, object]],
    *,
    float_bytes: int = 4,
) -> list[ActivationEstimate]:
    """One estimate per profile, at its ``max`` shapes (what its context must hold)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return [
        estimate_activation_memory(
            model,
            {n: sp.max for n, sp in prof.items()},
            float_bytes=float_bytes,  # type: ignore[attr-defined]
        )
        for prof in profiles
    ]
